"""Hints and fixes pasted as they are printed, under --netns: each acts in that namespace
and works (issue "From install to reboot to uninstall": the missing interface's hint pointed
at a `show` that failed the same way; the doctor's fixes in --json lacked the namespace)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from multihome.lab import scenarios
from multihome.lab.description import Topology
from multihome.lab.topology import Network

from .helpers import multihome

Build = Callable[[Topology], Network]


def test_the_hint_for_a_missing_interface_runs_in_the_namespace(build: Build, tmp_path: Path) -> None:
    network = build(scenarios.seed(2))
    server = network.ns("server")
    config = tmp_path / "eth9.toml"
    config.write_text("[uplinks.eth9]\n")
    config.chmod(0o600)
    result = multihome(server, "-c", str(config), "plan", check=False)
    assert result.returncode == 2 and "no interface named 'eth9'" in result.stderr, result
    hint = re.search(r"^hint: `([^`]+)`", result.stderr, re.M)
    assert hint is not None and hint.group(1) == f"ip -n {server} -br link", result.stderr
    listed = subprocess.run(hint.group(1).split(), capture_output=True, text=True, check=True)
    assert {line.split()[0].split("@")[0] for line in listed.stdout.splitlines()} >= {"eth0", "eth1"}


def test_doctor_fixes_in_json_act_in_the_namespace(build: Build) -> None:
    network = build(scenarios.seed(2))  # ARP flux: the fix names sysctls
    server = network.ns("server")
    result = multihome(server, "doctor", "--json", check=False)
    assert result.returncode == 1, result
    fixes = {f["check"]: f["fix"] for f in json.loads(result.stdout)["findings"]}
    assert f"multihome --netns {server} apply" in fixes["arp-flux"], fixes
    assert f"ip netns exec {server} sysctl -w net.ipv4.conf.eth0.arp_ignore=1" in fixes["arp-flux"]
    assert " sysctl -w" not in fixes["arp-flux"].replace(f"ip netns exec {server} sysctl -w", "")
