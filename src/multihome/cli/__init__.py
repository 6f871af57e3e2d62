"""The `multihome` command: argument parsing and printing only; the work is in operations.py.

Each command group is a module of its own (routing, persist, daemon, counters, and the lab's
command in lab/command.py) that lists its commands with their arguments; this module builds the
parser from those lists and is the one exit point.

Exit codes: 0 ok; 1 changes pending (plan --check) or errors found (doctor); 2 bad input or
failure; 3 (status) the daemon is not running.
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import sys
from collections.abc import Callable, Sequence

from multihome import CONFIG_PATH, __version__
from multihome.cli.output import EXIT_ERROR, with_user_options
from multihome.errors import MultihomeError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any, NoReturn

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

    def __init__(self, *args: Any, json_errors: bool = False, **kwargs: Any) -> None:
        self.arguments: list[argparse.Action] = []
        self.commands: dict[str, Parser] = {}
        self.summaries: dict[str, str] = {}
        self.json_errors = json_errors  # --json on the command line: a usage error is JSON too
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        if not self.json_errors:
            super().error(message)
        hint = f"{self.prog} --help"
        raise SystemExit(_report_json(MultihomeError(message, hint=hint)))

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


def build_parser(only: str | None = None, lazy: bool = False, json_errors: bool = False) -> Parser:
    """The whole parser. `lazy` (a run of the command): only the command `only` gets its
    arguments; the others just their names and summaries, which is all `--help` shows, and
    building every command's arguments costs more than the rest of the start-up.
    `json_errors`: a usage error is reported as JSON (the command line asks for --json)."""
    parser = Parser(
        prog="multihome",
        json_errors=json_errors,
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
        cmd = sub.add_parser(
            command.name,
            help=command.summary,
            description=command.description,
            json_errors=json_errors,
        )
        assert isinstance(cmd, Parser)
        cmd.set_defaults(handler=command.handler)
        parser.commands[command.name] = cmd
        parser.summaries[command.name] = command.summary
        if not lazy or command.name == only:
            _common(cmd, command.netns)
            if command.arguments is not None:
                command.arguments(cmd)
    return parser


class OutputError(MultihomeError):
    """The command's output could not be written (a full disk, a reader that left)."""


class _Output(io.RawIOBase):
    """Standard output, whose write errors are MultihomeErrors: reported as one line and
    exit 2 wherever they happen, with no traceback. After the first error it takes the rest
    in silence (the error is reported once, and the interpreter's last flush does not fail
    again)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd
        self.broken = False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def isatty(self) -> bool:
        return os.isatty(self.fd)

    def write(self, data: Any) -> int:
        if self.broken:
            return len(data)
        try:
            return os.write(self.fd, data)
        except OSError as error:
            self.broken = True
            raise OutputError(f"cannot write the output: {error.strerror or error}") from None


def _checked_stdout() -> None:
    """Standard output through _Output, as buffered as Python makes it."""
    stdout = sys.stdout
    if stdout is None:  # started with the descriptor closed (`>&-`)
        return
    try:
        fd = stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (an embedding)
        return
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(_Output(fd)),
        encoding=stdout.encoding,
        errors=stdout.errors,
        line_buffering=bool(stdout.line_buffering),
    )


def run() -> None:
    """The `multihome` command (and `python -m multihome`): main(), an explicit flush whose
    failure is the command's failure, then the ordinary exit.

    A run on a host with 1,000 source addresses holds thousands of objects; freezing them
    spares the interpreter's teardown the collector's walk over them."""
    _checked_stdout()
    try:
        code = main()
    except SystemExit as done:  # argparse: --help, --version, a usage error
        code = done.code if isinstance(done.code, int) else EXIT_ERROR if done.code else 0
    try:
        if sys.stdout is not None:  # None: started with it closed (`>&-`), print() drops
            sys.stdout.flush()
    except OutputError as error:
        code = _report_json(error) if _wants_json(sys.argv[1:]) else _report_error(error, None)
    except (OSError, ValueError):  # not ours (closed, or no _Output): nothing to add
        code = code or EXIT_ERROR
    gc.freeze()
    raise SystemExit(code)


def _report_error(error: MultihomeError, args: argparse.Namespace | None) -> int:
    """One line on stderr, and a hint; the error's exit code. Under --json, the same as one
    JSON object on one line of stderr."""
    hint = with_user_options(error.hint, args) if args is not None else error.hint
    if args is not None and getattr(args, "json", False):
        return _report_json(error, hint)
    try:
        print(f"multihome: {error.message}", file=sys.stderr)
        if hint:
            print(f"hint: {hint}", file=sys.stderr)
    except OSError:  # stderr is gone too: the exit code says it
        pass
    return error.exit_code


def _report_json(error: MultihomeError, hint: str | None = None) -> int:
    """An error under --json: {"error", "hint", "exit_code"} on one line of stderr (standard
    output stays for the command's own JSON); the exit code, as without --json."""
    import contextlib
    import json

    code = error.exit_code
    data = {"error": error.message, "hint": error.hint if hint is None else hint, "exit_code": code}
    with contextlib.suppress(OSError):  # stderr is gone too: the exit code says it
        print(json.dumps(data), file=sys.stderr)
    return code


def _wants_json(words: Sequence[str]) -> bool:
    """Does the command line ask for --json (before a `--`)? Then its errors are JSON too."""
    words = list(words)
    return "--json" in (words[: words.index("--")] if "--" in words else words)


def main(argv: Sequence[str] | None = None) -> int:
    from multihome.kernel import namespace

    words = sys.argv[1:] if argv is None else argv
    parser = build_parser(only=chosen_command(words), lazy=True, json_errors=_wants_json(words))
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
        return _report_error(error, args)
    except KeyboardInterrupt:
        return _report_error(MultihomeError("interrupted"), args)
    except BrokenPipeError as error:  # main() without run(): stdout is not an _Output
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return _report_error(OutputError(f"cannot write the output: {error.strerror}"), args)
