"""The command line's own behaviour: argument checks that must hold before anything runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from multihome import cli


@pytest.mark.parametrize("name", ["", "  ", "a/b", "..", "."])
def test_a_bad_netns_name_is_an_error_not_the_host(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # `multihome --netns "$NS" apply` with NS unset must never act on the host's own namespace.
    assert cli.main(["--netns", name, "show"]) == 2
    err = capsys.readouterr().err
    assert "invalid network namespace name" in err and "hint:" in err


def test_every_command_has_help_and_a_handler() -> None:
    parser = cli.build_parser()
    for command in cli.commands():
        args = parser.parse_args(
            [command.name] if command.name != "export" else [command.name, "--format", "ip"]
        )
        assert args.handler is command.handler
        assert command.summary and command.description


def test_the_command_loses_no_output(tmp_path: Path) -> None:
    # run() flushes after main() and exits: its output, more than a pipe holds, must all
    # arrive, on both streams, with main()'s exit code
    script = tmp_path / "run.py"
    script.write_text(
        "import sys\n"
        "from multihome import cli\n"
        "def main():\n"
        "    print('o' * 200000)\n"
        "    print('e' * 100000, file=sys.stderr)\n"
        "    return 3\n"
        "cli.main = main\n"
        "cli.run()\n"
        "print('not reached')\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert done.returncode == 3
    assert done.stdout == "o" * 200000 + "\n" and done.stderr == "e" * 100000 + "\n"


def test_the_command_runs_with_its_output_closed(tmp_path: Path) -> None:
    # cron jobs and units may start it with stdout or stderr closed (`>&-`)
    script = tmp_path / "run.py"
    script.write_text(
        "from multihome import cli\n"
        "def main():\n"
        "    print('lost')\n"
        "    return 0\n"
        "cli.main = main\n"
        "cli.run()\n"
    )
    for closed in (">&-", "2>&-", ">&- 2>&-"):
        done = subprocess.run(
            f"{sys.executable} {script} {closed}", shell=True, capture_output=True, text=True
        )
        assert done.returncode == 0 and "Traceback" not in done.stderr, closed
