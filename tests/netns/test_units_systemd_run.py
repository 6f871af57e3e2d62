"""The units' sandbox with a real systemd (issue 22, point 5): `systemd-run --wait` with the
[Service] properties of the rendered multihome.service runs `multihome apply` in a throwaway
lab namespace (systemd joins it: NetworkNamespacePath=), and the rules are there after it.
Needs systemd as PID 1; skipped elsewhere (a container's PID 1 is often something else)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from multihome.core.model import Desired, Ownership
from multihome.lab import scenarios
from multihome.lab.description import Topology
from multihome.lab.topology import Network
from multihome.render import Options, systemd

from .helpers import PY, ip_json

Build = Callable[[Topology], Network]
# not for a transient unit: they describe the unit file's own life
NOT_PROPERTIES = {"Type", "RemainAfterExit", "ExecStart", "ExecStop", "Restart", "RestartSec"}


def systemd_is_pid_1() -> bool:
    return Path("/proc/1/comm").read_text().strip() == "systemd"


@pytest.mark.skipif(
    not systemd_is_pid_1() or shutil.which("systemd-run") is None,
    reason="systemd is not PID 1 here: systemd-run cannot start a unit",
)
def test_apply_works_inside_the_units_sandbox(build: Build, tmp_path: Path) -> None:
    net = build(scenarios.seed(nics=2))
    server = net.ns("server")
    text = systemd.render(Desired(Ownership()), Options()).files["multihome.service"]
    service = text.split("[Service]\n", 1)[1].split("\n[Install]", 1)[0]
    properties = [
        line
        for line in service.splitlines()
        if "=" in line and not line.startswith("#") and line.split("=")[0] not in NOT_PROPERTIES
    ]
    state = tmp_path / "state"
    state.mkdir()
    done = subprocess.run(
        [
            "systemd-run",
            "--wait",
            "--quiet",
            "--collect",
            "--service-type=oneshot",
            *(f"--property={p}" for p in properties),
            f"--property=NetworkNamespacePath=/run/netns/{server}",
            f"--property=ReadWritePaths={state}",
            f"--setenv=MULTIHOME_STATE_DIR={state}",
            PY,
            "-m",
            "multihome",
            "apply",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rules = [r for r in ip_json(server, "rule") if r.get("protocol") in (77, "multihome")]
    assert rules, "apply in the sandbox made no rule"
