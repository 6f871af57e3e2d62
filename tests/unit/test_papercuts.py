"""Papercuts a new user met (issue "From install to reboot to uninstall"), each fixed and
held here: errors under --json, status --json of a daemon that never ran, export's help,
status's last change, hints that name what ships."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from multihome.cli import daemon
from multihome.cli.persist import FORMATS
from multihome.lab.plot import PLOT_HINT

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def run(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MULTIHOME_STATE_DIR": str(state)}
    return subprocess.run(
        [sys.executable, "-m", "multihome", *args], capture_output=True, text=True, env=env
    )


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["show", "--json", "-c", "/nonexistent/multihome.toml"], 2, "no such file"),
        (["--json", "plan", "--format", "yaml"], 2, "invalid choice"),  # argparse's own
        (["lab", "--json", "--nics", "9"], 2, "--nics must be 2-8"),
        (["counters", "--json", "--count", "2"], 2, "--count"),
    ],
)
def test_every_error_under_json_is_one_json_object_with_the_same_exit_code(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    done = run(*args, state=tmp_path)
    assert done.returncode == code, done
    error = json.loads(done.stderr.strip().splitlines()[-1])
    assert set(error) == {"error", "hint", "exit_code"} and error["exit_code"] == code, error
    assert message in error["error"], error
    # the same error without --json: text, and the same code
    plain = run(*[a for a in args if a != "--json"], state=tmp_path)
    assert plain.returncode == code and plain.stderr.startswith(("multihome: ", "usage:"))


def test_status_json_when_watch_never_ran_is_json_and_exit_3(tmp_path: Path) -> None:
    done = run("status", "--json", state=tmp_path)
    assert done.returncode == daemon.EXIT_NOT_RUNNING, done
    data = json.loads(done.stdout)
    assert data["running"] is False and data["pid"] is None, data
    text = run("status", state=tmp_path)
    assert text.returncode == 3 and "has not run in this namespace" in text.stderr


def test_export_format_has_help_naming_each_format() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "multihome", "export", "--help"], capture_output=True, text=True
    )
    text = "".join(done.stdout.split())  # (argparse wraps the help, also at hyphens)
    for name, what in FORMATS.items():
        assert "".join(f"{name}: {what}".split()) in text, (name, done.stdout)


def test_status_names_the_last_change_after_reconciles_that_changed_nothing() -> None:
    status = {
        "last_reconcile": 1_700_000_010.0,
        "last_result": "periodic: 0 changes",
        "last_change": 1_700_000_000.0,
        "last_change_result": "health: 2 changes",
        "reconciles": 9,
        "errors": 0,
    }
    text = daemon._reconciles_text(status)
    assert re.fullmatch(
        r"last reconcile: \d\d:\d\d:\d\d \(periodic: 0 changes\); last change: \d\d:\d\d:\d\d"
        r" \(health: 2 changes\); 9 in all, 0 failed",
        text,
    ), text
    # the last reconcile was the change: said once
    status["last_reconcile"], status["last_result"] = 1_700_000_000.0, "health: 2 changes"
    assert "last change" not in daemon._reconciles_text(status)


def test_no_message_points_at_a_file_that_does_not_ship() -> None:
    for path in (ROOT / "src").rglob("*.py"):
        assert "DESIGN.md" not in path.read_text(), path  # DESIGN.md is not in the package


def test_the_plot_hint_says_what_the_readme_says() -> None:
    assert "pip install '.[lab]'" in PLOT_HINT and "multihome[lab]" not in PLOT_HINT
    assert "pip install '.[lab]'" in README


def test_debian_rules_builds_with_debians_own_python_first() -> None:
    rules = (ROOT / "debian" / "rules").read_text()
    assert re.search(r"^export PATH := /usr/sbin:/usr/bin:/sbin:/bin:\$\(PATH\)$", rules, re.M)


def test_the_loopback_interface_is_refused_as_an_uplink() -> None:
    from multihome.core.config import parse
    from multihome.errors import ConfigError

    with pytest.raises(ConfigError) as raised:
        parse("[multihome]\npriority = 1000\n\n[uplinks.lo]\n", "x.toml")
    assert raised.value.message.startswith("x.toml:4: uplinks.lo: lo is the loopback interface")
    assert "remove [uplinks.lo]" in raised.value.hint


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        ("`ip -br link` lists the interfaces", "`ip -n ns1 -br link` lists the interfaces"),
        ("ip -4 rule del pref 500 from all lookup 52", "ip -n ns1 -4 rule del pref 500 from all lookup 52"),
        ("sysctl -w net.ipv4.ip_forward=1", "ip netns exec ns1 sysctl -w net.ipv4.ip_forward=1"),
        ("run multihome apply", "run multihome --netns ns1 apply"),
        ("export --format ip and route it", "export --format ip and route it"),  # not a command
    ],
)
def test_hints_under_netns_act_in_that_namespace(hint: str, expected: str) -> None:
    from argparse import Namespace

    from multihome.cli.output import with_user_options

    assert with_user_options(hint, Namespace(netns="ns1", config=None)) == expected


def test_lab_keep_with_a_scenario_name_is_refused_with_the_command_meant(tmp_path: Path) -> None:
    done = run("lab", "--keep", "two-isp", state=tmp_path)
    assert done.returncode == 2, done
    assert "names a scenario" in done.stderr
    assert "hint: to keep the two-isp network: multihome lab two-isp --keep [NAME]" in done.stderr
