"""An ordinary user after root's apply: show, plan and doctor read, as a real unprivileged
process (setpriv to nobody inside the namespace); what needs root says so."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from multihome.lab import scenarios
from multihome.lab.description import Topology
from multihome.lab.topology import Network

from .helpers import PY, multihome

Build = Callable[[Topology], Network]
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture
def shared_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A state directory every user can reach (tmp_path's parents are root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="mh-readonly-"))
    path.chmod(0o755)
    monkeypatch.setenv("MULTIHOME_STATE_DIR", str(path / "state"))
    try:
        yield path
    finally:
        shutil.rmtree(path)


def as_nobody(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *NOBODY, PY, "-m", "multihome", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )


def test_show_plan_doctor_work_for_any_user_after_apply(build: Build, shared_dir: Path) -> None:
    network = build(scenarios.seed(2))  # a shared subnet: apply sets sysctls, recorded
    server = network.ns("server")
    multihome(server, "apply")
    state_files = {p.name: p for p in (shared_dir / "state").iterdir()}
    full = next(p for name, p in state_files.items() if name.endswith(".json") and name.count(".") == 1)
    summary = full.with_name(full.name.removesuffix(".json") + ".summary.json")
    assert stat.S_IMODE(full.stat().st_mode) == 0o600  # the full state stays root's
    assert stat.S_IMODE(summary.stat().st_mode) == 0o644
    data = json.loads(summary.read_text())
    assert set(data) == {
        "version", "applied_at", "sysctl_originals", "nft_table", "rules", "routes", "netns_cookie"
    }, data  # no rule or route text, no config: what show, plan and doctor need

    shown = as_nobody(server, "show")
    assert shown.returncode == 0 and "Tables owned by multihome" in shown.stdout, shown
    planned = as_nobody(server, "plan", "--check")
    assert planned.returncode == 0 and "no changes" in planned.stdout, planned
    doctor = as_nobody(server, "doctor")
    assert doctor.returncode == 0 and "no problems found" in doctor.stdout, doctor
    assert "Traceback" not in shown.stderr + planned.stderr + doctor.stderr

    # the full state is still root's alone
    peek = subprocess.run([*NOBODY, "cat", str(full)], capture_output=True, text=True)
    assert peek.returncode != 0 and "Permission denied" in peek.stderr

    # what needs root says so, in one line and a hint
    applied = as_nobody(server, "apply")
    assert applied.returncode == 2 and "Traceback" not in applied.stderr, applied
    assert "hint: run as root" in applied.stderr, applied.stderr

    # a state file whose summary is missing (written by an older multihome): a clear message
    summary.unlink()
    planned = as_nobody(server, "plan")
    assert planned.returncode == 2, planned
    assert "root's alone" in planned.stderr and "move it away" not in planned.stderr, planned.stderr
    assert "hint: run as root" in planned.stderr


def test_a_config_only_root_may_read_is_a_clear_message(build: Build, shared_dir: Path) -> None:
    network = build(scenarios.seed(2))
    config = shared_dir / "multihome.toml"
    config.write_text("[multihome]\npriority = 1000\n")
    config.chmod(0o600)
    result = as_nobody(network.ns("server"), "-c", str(config), "show")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result
    assert "permission denied" in result.stderr and f"chmod a+r {config}" in result.stderr
    config.chmod(0o644)  # readable by all, written by root alone: accepted
    assert as_nobody(network.ns("server"), "-c", str(config), "show").returncode == 0
