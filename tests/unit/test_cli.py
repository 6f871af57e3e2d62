"""The command line's own behaviour: argument checks that must hold before anything runs."""

from __future__ import annotations

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
