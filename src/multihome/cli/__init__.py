"""The `multihome` command: argument parsing and printing only; the work is in operations.py.

Each command group is a module of its own (routing, persist, daemon, counters, and the lab's
command in lab/command.py) that lists its commands with their arguments; this module builds the
parser from those lists and is the one exit point.

Exit codes: 0 ok; 1 changes pending (plan --check) or errors found (doctor); 2 bad input or
failure; 3 (status) the daemon is not running.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from multihome import __version__
from multihome.cli.output import EXIT_ERROR, EXIT_OK, with_user_options
from multihome.errors import MultihomeError

Handler = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Command:
    name: str
    handler: Handler
    summary: str  # one line, for `multihome --help`
    description: str  # for `multihome NAME --help`
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    netns: bool = True  # takes --netns (not the lab, which builds namespaces of its own)


def commands() -> tuple[Command, ...]:
    from multihome.cli import counters, daemon, persist, routing
    from multihome.lab import command as lab

    return (
        *routing.COMMANDS,
        *persist.COMMANDS,
        *daemon.COMMANDS,
        *counters.COMMANDS,
        *lab.COMMANDS,
    )


def build_parser() -> argparse.ArgumentParser:
    from multihome.config import DEFAULT_PATH

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--netns",
        metavar="NAME",
        default=argparse.SUPPRESS,
        help="act inside the named network namespace (as `ip netns exec NAME`)",
    )
    without_netns = argparse.ArgumentParser(add_help=False)
    for parent in (common, without_netns):
        parent.add_argument(
            "--json",
            action="store_true",
            default=argparse.SUPPRESS,
            help="print machine-readable JSON",
        )
    common.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help=f"config file (default {DEFAULT_PATH} if it exists, else autodetect)",
    )
    parser = argparse.ArgumentParser(
        prog="multihome",
        parents=[common],
        description="Make a multi-homed Linux host route symmetrically: replies leave "
        "through the interface that owns their source address (source-based policy routing).",
        epilog="Exit codes: 0 ok; 1 changes pending (plan --check) or errors found (doctor); "
        "2 bad input or failure; 3 (status) multihome watch is not running.",
    )
    parser.add_argument("--version", action="version", version=f"multihome {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in commands():
        cmd = sub.add_parser(
            command.name,
            parents=[common if command.netns else without_netns],
            help=command.summary,
            description=command.description,
        )
        cmd.set_defaults(handler=command.handler)
        if command.arguments is not None:
            command.arguments(cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from multihome import namespace

    parser = build_parser()
    args = parser.parse_args(argv)
    for name, default in (("netns", None), ("json", False), ("config", None)):
        if not hasattr(args, name):
            setattr(args, name, default)
    handler: Handler = args.handler
    try:
        if args.netns is not None:
            namespace.enter(args.netns)
        return handler(args)
    except MultihomeError as error:
        print(f"multihome: {error.message}", file=sys.stderr)
        if error.hint:
            print(f"hint: {with_user_options(error.hint, args)}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("multihome: interrupted", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # `multihome doctor | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
