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

from multihome import CONFIG_PATH, __version__
from multihome.cli.output import EXIT_ERROR, EXIT_OK, with_user_options
from multihome.errors import MultihomeError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

Handler = Callable[[argparse.Namespace], int]


class Command:
    """A subcommand: its name, handler, help texts and arguments.

    A plain class, not a record: the parser is built on every run, `--version` and `--help`
    included, which import nothing of records.py or the model.
    """

    __slots__ = ("arguments", "description", "handler", "name", "netns", "summary")

    def __init__(
        self,
        name: str,
        handler: Handler,
        summary: str,  # one line, for `multihome --help`
        description: str,  # for `multihome NAME --help`
        arguments: Callable[[argparse.ArgumentParser], None] | None = None,
        netns: bool = True,  # takes --netns (not the lab, which builds namespaces of its own)
    ) -> None:
        self.name = name
        self.handler = handler
        self.summary = summary
        self.description = description
        self.arguments = arguments
        self.netns = netns


def commands() -> tuple[Command, ...]:
    from multihome.cli import counters, daemon, lab, persist, routing

    return (
        *routing.COMMANDS,
        *persist.COMMANDS,
        *daemon.COMMANDS,
        *counters.COMMANDS,
        *lab.COMMANDS,
    )


def terminal_columns() -> int:
    """The terminal's width as `shutil.get_terminal_size()` finds it (COLUMNS, else the
    terminal of stdout, else 80), without importing shutil, which argparse would import for
    this on every run."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _Formatter(argparse.HelpFormatter):
    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24) -> None:
        # argparse's own default width: the terminal's, less 2
        super().__init__(prog, indent_increment, max_help_position, terminal_columns() - 2)


class Parser(argparse.ArgumentParser):
    """argparse's parser, which also keeps what it was given: its arguments (`arguments`,
    without -h), its commands (`commands`) and their one-line summaries (`summaries`), for
    the man page and the completion (argparse keeps those only in private attributes)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.arguments: list[argparse.Action] = []
        self.commands: dict[str, Parser] = {}
        self.summaries: dict[str, str] = {}
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        if kwargs.get("action") != "help":
            self.arguments.append(action)
        return action


def _common(parser: Parser, netns: bool) -> None:
    """The options every command takes (--netns and --config only where it acts on a
    namespace)."""
    if netns:
        parser.add_argument(
            "--netns",
            metavar="NAME",
            default=argparse.SUPPRESS,
            help="act inside the named network namespace (as `ip netns exec NAME`)",
        )
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print machine-readable JSON",
    )
    if netns:
        parser.add_argument(
            "-c",
            "--config",
            metavar="FILE",
            default=argparse.SUPPRESS,
            help=f"config file (default {CONFIG_PATH} if it exists, else autodetect)",
        )


# The options before the command that take a value: the command is the first word after
# the options and their values.
_VALUED = frozenset({"--netns", "-c", "--config"})


def chosen_command(argv: Sequence[str]) -> str | None:
    """The command a command line names (its first word that is not an option or an
    option's value), or None."""
    words = iter(argv)
    for word in words:
        if word in _VALUED:
            next(words, None)
        elif word == "--":
            return next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def build_parser(only: str | None = None, lazy: bool = False) -> Parser:
    """The whole parser. `lazy` (a run of the command): only the command `only` gets its
    arguments; the others just their names and summaries, which is all `--help` shows, and
    building every command's arguments costs more than the rest of the start-up."""
    parser = Parser(
        prog="multihome",
        description="Make a multi-homed Linux host route symmetrically: replies leave "
        "through the interface that owns their source address (source-based policy routing).",
        epilog="Exit codes: 0 ok; 1 changes pending (plan --check) or errors found (doctor); "
        "2 bad input or failure; 3 (status) multihome watch is not running.",
    )
    _common(parser, netns=True)
    parser.add_argument("--version", action="version", version=f"multihome {__version__}")
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=Parser
    )
    for command in commands():
        cmd = sub.add_parser(command.name, help=command.summary, description=command.description)
        assert isinstance(cmd, Parser)
        cmd.set_defaults(handler=command.handler)
        parser.commands[command.name] = cmd
        parser.summaries[command.name] = command.summary
        if not lazy or command.name == only:
            _common(cmd, command.netns)
            if command.arguments is not None:
                command.arguments(cmd)
    return parser


def run() -> None:
    """The `multihome` command (and `python -m multihome`): main(), then an exit without the
    interpreter's teardown.

    A run on a host with 1,000 source addresses holds thousands of objects and the caches
    that share them; freeing them one by one and tearing down every module costs more than
    planning them (~15 ms of a 90 ms no-op apply). When main() returns everything is done:
    its files are closed by their `with` blocks, children are waited for or detached, the
    only thread (watch's metrics server) is a daemon, and multihome registers no atexit
    handler. Its output is flushed here. An exception main() does not handle still ends
    the ordinary way, with its traceback; so does a run under a profiler or a coverage
    tracer, which write their results at exit."""
    code = main()
    if _observed():
        raise SystemExit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:  # None: started with that descriptor closed (`>&-`)
                stream.flush()
        except (OSError, ValueError):  # the reader left (`| head`), or it was closed
            continue
    os._exit(code)


def _observed() -> bool:
    """Whether a profiler or a coverage tracer runs: they write their results at exit. From
    Python 3.12 they may use sys.monitoring instead of a profile or trace function."""
    if sys.getprofile() is not None or sys.gettrace() is not None:
        return True
    monitoring = getattr(sys, "monitoring", None)
    return monitoring is not None and any(
        monitoring.get_tool(tool) is not None for tool in range(6)
    )


def main(argv: Sequence[str] | None = None) -> int:
    from multihome.kernel import namespace

    words = sys.argv[1:] if argv is None else argv
    parser = build_parser(only=chosen_command(words), lazy=True)
    args = parser.parse_args(words)
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
