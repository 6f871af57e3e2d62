"""Messages and option checks that need no root: what the lab's help offers, its progress
without a terminal, the plot's checks before a run, counters' --count, and hints that repeat
the user's own options."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from multihome import cli
from multihome.cli.lab import ProgressLines, duration_note
from multihome.cli.output import with_user_options

# multihome.lab.run is imported in the tests that need it (state reads MULTIHOME_STATE_DIR
# at each use, so the place of the import does not matter for the state directory).


def test_lab_help_does_not_offer_netns(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["lab", "--help"])
    out = capsys.readouterr().out
    assert "--netns" not in out
    assert "--keep [NAME]" in out and "--json" in out
    with pytest.raises(SystemExit):
        cli.main(["show", "--help"])
    assert "--netns" in capsys.readouterr().out  # every other command keeps it


def test_counters_count_without_watch_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["counters", "--count", "2"]) == 2
    err = capsys.readouterr().err
    assert "--count goes with --watch" in err
    assert "hint: multihome counters --watch 1 --count 2" in err


def test_hints_repeat_the_users_netns_and_config() -> None:
    args = argparse.Namespace(netns="demo-server", config="/etc/mh.toml")
    hint = "run `multihome confirm` to keep it, or wait for it to be reverted"
    assert with_user_options(hint, args) == (
        "run `multihome --netns demo-server -c /etc/mh.toml confirm` to keep it, or wait for it"
        " to be reverted"
    )
    assert with_user_options(hint, argparse.Namespace(netns=None, config=None)) == hint
    odd = argparse.Namespace(netns="a b", config=None)
    assert "`multihome --netns 'a b' confirm`" in with_user_options(hint, odd)


def test_progress_without_a_terminal_is_a_line_every_few_seconds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    now = [100.0]
    progress = ProgressLines(every=5.0, clock=lambda: now[0])
    for done in range(0, 1000, 25):  # a report every 0.5 s
        now[0] += 0.5
        progress("destination", done, 1000)
    now[0] += 0.5
    progress("destination", 1000, 1000)
    assert capsys.readouterr().err.splitlines() == [  # not a line per report
        "lab: destination: 250/1000 requests, 5 s",
        "lab: destination: 500/1000 requests, 10 s",
        "lab: destination: 750/1000 requests, 15 s",
        "lab: destination: 1000/1000 requests done in 20 s",
    ]


def test_two_isp_says_how_long_its_failing_phase_takes() -> None:
    from multihome.lab.run import LabOptions

    note = duration_note(LabOptions(scenario="two-isp", requests=4000, concurrency=40))
    assert note is not None
    assert "2000 of the 4000 requests fail" in note and "about 12 s" in note
    assert duration_note(LabOptions(scenario="seed")) is None


def test_lab_defaults_fewer_requests_for_two_isp() -> None:
    from multihome.cli.lab import lab_options

    parser = cli.build_parser()
    assert lab_options(parser.parse_args(["lab", "two-isp"])).requests == 4000
    assert lab_options(parser.parse_args(["lab"])).requests == 20000
    assert lab_options(parser.parse_args(["lab", "two-isp", "--requests", "9"])).requests == 9


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/nonexistent/dir/p.png", "the directory /nonexistent/dir does not exist"),
        ("p.jpgx", "matplotlib cannot write .jpgx files"),
        ("/", "is a directory"),
    ],
)
def test_plot_path_is_checked_before_the_run(path: str, message: str) -> None:
    from multihome.errors import MultihomeError
    from multihome.lab import plot

    with pytest.raises(MultihomeError, match=message):
        plot.check(path)


def test_plot_check_accepts_a_writable_png(tmp_path: Path) -> None:
    from multihome.lab import plot

    plot.check(str(tmp_path / "p.png"))
    plot.check(str(tmp_path / "p.svg"))
    assert not os.listdir(tmp_path)  # checking writes nothing


def test_bad_plot_path_fails_before_anything_runs(capsys: pytest.CaptureFixture[str]) -> None:
    # as root this would otherwise start building networks; the check comes first either way
    assert cli.main(["lab", "--plot", "/nonexistent/dir/p.png", "--requests", "10"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_load_and_clean_refuse_options_they_would_ignore(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["lab", "load", "demo", "--keep"]) == 2
    assert "--keep does not go with `lab load`" in capsys.readouterr().err
    assert cli.main(["lab", "clean", "--plot", "p.png"]) == 2
    assert "--plot does not go with `lab clean`" in capsys.readouterr().err


def test_license_is_an_spdx_string_that_setuptools_reads_without_warnings() -> None:
    import tomllib

    data = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert data["project"]["license"] == "MIT"  # PEP 639; the table form is deprecated
    # the string form needs setuptools 77 or later to build
    assert "setuptools>=77" in data["build-system"]["requires"]


def test_a_hints_sysctl_runs_in_the_namespace_the_command_ran_in() -> None:
    """Pasted as printed, a fix under --netns must not change the host's own namespace."""
    from types import SimpleNamespace

    from multihome.cli.output import with_user_options

    fix = "multihome apply, or: sysctl -w net.ipv4.conf.eth0.arp_ignore=1"
    assert with_user_options(fix, SimpleNamespace(netns="lab server", config=None)) == (
        "multihome --netns 'lab server' apply, or:"
        " ip netns exec 'lab server' sysctl -w net.ipv4.conf.eth0.arp_ignore=1"
    )
    assert with_user_options(fix, SimpleNamespace(netns=None, config=None)) == fix


def test_a_kernel_without_ipv6_subtrees_is_told_the_config_key_that_avoids_it() -> None:
    """A kernel built without IPV6_SUBTREES refuses every IPv6 route from a prefix with
    EINVAL; apply's error then names `ipv6_source_routes = false`, and only then."""
    import errno
    import ipaddress

    from multihome.core.model import Action, Change, Family, Route
    from multihome.core.records import replace
    from multihome.kernel.transport import Refusal
    from multihome.kernel.writer import _refusal_hint

    route = Route(
        Family.INET6,
        254,
        ipaddress.ip_network("::/0"),
        "eth1",
        gateway=ipaddress.ip_address("fe80::1"),
        protocol=77,
        metric=1024,
        source=ipaddress.ip_network("2001:db8:1::/64"),
    )
    subtrees = Refusal(
        errno.EINVAL, "Specifying source address requires IPV6_SUBTREES to be enabled"
    )
    add = Change(Action.ADD, route)
    assert "ipv6_source_routes = false" in _refusal_hint(add, subtrees)
    assert "ipv6_source_routes = false" in _refusal_hint(add, Refusal(errno.EINVAL))  # no text
    assert _refusal_hint(add, Refusal(errno.EINVAL, "Invalid gateway address")) == ""
    assert _refusal_hint(add, Refusal(errno.ENODEV)) == ""
    assert _refusal_hint(Change(Action.ADD, replace(route, source=None)), subtrees) == ""
    assert _refusal_hint(Change(Action.DELETE, route), subtrees) == ""
