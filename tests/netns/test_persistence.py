"""Rendered files, run by the real tools, build the same kernel state as `multihome apply`
(up to the protocol number): the ip script, and the real systemd-networkd.

Every test runs with `balance = true`: the ip script builds the balancing route and rule
too; the stacks leave both to multihome-watch.service, and build everything else."""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from multihome.lab import scenarios
from multihome.lab.description import Topology
from multihome.lab.topology import Network

from .helpers import ip_json, multihome, sysctl

Build = Callable[[Topology], Network]
NETWORKD = "/lib/systemd/systemd-networkd"
NEED = {tool: shutil.which(tool) for tool in ("netplan", "ifup")}
RUN_NETWORKD = """
set -e
mount --make-rprivate /
mount -t tmpfs tmpfs /run/systemd
mkdir -p /run/systemd/netif/links /run/systemd/netif/leases /run/systemd/netif/lldp \
    /run/systemd/network
chown -R systemd-network:systemd-network /run/systemd/netif
cp -r "$1"/. /run/systemd/network/
mount -t tmpfs tmpfs /etc/systemd/network
mount -o remount,ro /sys
exec {networkd}
"""


State = tuple[set[tuple[object, ...]], set[tuple[object, ...]]]


def policy_state(ns: str) -> State:
    """multihome's layout as iproute2 shows it, without the protocol numbers."""
    rules: set[tuple[object, ...]] = {
        (family, r["priority"], r["src"], r["table"], r.get("suppress_prefixlen"))
        for family in ("-4", "-6")
        for r in ip_json(ns, family, "rule")
        if 1000 <= r["priority"] <= 1003
    }
    routes: set[tuple[object, ...]] = {
        (
            family,
            r.get("table"),
            r["dst"],
            r.get("gateway"),
            r.get("dev"),
            r.get("prefsrc"),
            r.get("scope"),
            tuple((h.get("gateway"), h.get("dev"), h.get("weight")) for h in r.get("nexthops", [])),
        )
        for family in ("-4", "-6")
        for r in ip_json(ns, family, "route", "show", "table", "all")
        if r.get("table", "main").isdigit() and 100 <= int(r["table"]) <= 199
    }
    return rules, routes


BALANCE = "[multihome]\nbalance = true\n"


def balanced(ns: str, directory: Path) -> str:
    """The config of every test: balancing on (table 199, rule 1003)."""
    path = directory / "multihome.toml"
    path.write_text(BALANCE)
    return str(path)


def expected_state(ns: str, config: str) -> State:
    multihome(ns, "apply", "-c", config)
    expected = policy_state(ns)
    assert len(expected[0]) >= 11 and len(expected[1]) >= 9
    assert [r for r in expected[1] if r[1] == "199" and str(r[7]).count("eth") == 2]
    multihome(ns, "remove", "-c", config)
    assert policy_state(ns) == (set(), set())
    return expected


def without_balancing(state: State) -> State:
    """What a stack builds: everything but the balancing rule and route (watch's job)."""
    rules, routes = state
    return {r for r in rules if r[3] != "199"}, {r for r in routes if r[1] != "199"}


def test_ip_script_builds_what_apply_builds(build: Build, tmp_path: Path) -> None:
    net = build(scenarios.two_isp(nics=2))
    server = net.ns("server")
    config = balanced(server, tmp_path)
    expected = expected_state(server, config)
    out = tmp_path / "export"
    multihome(server, "export", "-c", config, "--format", "ip", "-o", str(out))
    for _ in range(2):  # the script can run again
        subprocess.run(["ip", "netns", "exec", server, "sh", str(out / "multihome.sh")], check=True)
        assert policy_state(server) == expected


def run_networkd(ns: str, directory: Path, expected: State) -> None:
    """Run the real systemd-networkd in the namespace with the .network files of `directory`
    (DESIGN.md's recipe) until the policy state is `expected`, or fail after 15 s."""
    for ifname in ("eth0", "eth1"):  # networkd configures the uplinks from scratch, as at boot
        subprocess.run(["ip", "-n", ns, "addr", "flush", "dev", ifname], check=True)
    daemon = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            ns,
            "unshare",
            "-m",
            "sh",
            "-c",
            RUN_NETWORKD.format(networkd=NETWORKD),
            "run-networkd",
            str(directory),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 15
        while policy_state(ns) != expected and time.monotonic() < deadline:
            assert daemon.poll() is None, daemon.stdout.read() if daemon.stdout else ""
            time.sleep(0.2)
        assert policy_state(ns) == expected
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=10)


def _network_file(topology: Topology, ifname: str) -> str:
    lines = ["[Match]", f"Name={ifname}", "", "[Network]", "IPv6AcceptRA=no"]
    lines += [f"Address={a}" for a in topology.addresses_of("server", ifname)]
    for host, dst, via, dev, metric in topology.routes:
        if host == "server" and dev == ifname:
            lines += ["", "[Route]", f"Gateway={via}", f"Metric={metric}"]
            assert ipaddress.ip_network(dst).prefixlen == 0
    return "\n".join(lines) + "\n"


@pytest.mark.skipif(not os.access(NETWORKD, os.X_OK), reason="systemd-networkd not installed")
def test_real_networkd_builds_what_apply_builds(build: Build, tmp_path: Path) -> None:
    topology = scenarios.two_isp(nics=2)
    net = build(topology)
    server = net.ns("server")
    config = balanced(server, tmp_path)
    expected = without_balancing(expected_state(server, config))
    tmp_path = tmp_path / "network"  # the state directory is tmp_path itself
    exported = multihome(
        server, "export", "-c", config, "--format", "networkd", "-o", str(tmp_path)
    )
    assert "multihome-watch.service" in exported.stderr + exported.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["10-eth0.network.d", "10-eth1.network.d"]
    for ifname in ("eth0", "eth1"):
        (tmp_path / f"10-{ifname}.network").write_text(_network_file(topology, ifname))
    run_networkd(server, tmp_path, expected)
    # the sysctls are the systemd format's job (sysctl.d); networkd leaves them alone
    assert sysctl(server, "net.ipv4.conf.eth0.arp_ignore") == "0"


NETPLAN_BASE = """network:
  version: 2
  ethernets:
{interfaces}"""


@pytest.mark.skipif(not NEED["netplan"], reason="netplan not installed")
def test_real_netplan_generate_then_networkd(build: Build, tmp_path: Path) -> None:
    """netplan expresses the tables and the off-link source rules (it has no
    suppress_prefixlength): exactly those must come out of the real netplan + networkd."""
    topology = scenarios.two_isp(nics=2)
    net = build(topology)
    server = net.ns("server")
    config = balanced(server, tmp_path)
    rules, routes = without_balancing(expected_state(server, config))
    expected = ({r for r in rules if r[1] == 1002}, routes)
    root = tmp_path / "root"
    multihome(
        server, "export", "-c", config, "--format", "netplan", "-o", str(root / "etc/netplan")
    )
    interfaces = ""
    for ifname in ("eth0", "eth1"):
        addresses = ", ".join(f'"{a}"' for a in topology.addresses_of("server", ifname))
        interfaces += f"    {ifname}:\n      addresses: [{addresses}]\n"
    base = root / "etc/netplan/10-base.yaml"
    base.write_text(NETPLAN_BASE.format(interfaces=interfaces))
    for yaml in (root / "etc/netplan").iterdir():
        yaml.chmod(0o600)
    subprocess.run(["netplan", "generate", "--root-dir", str(root)], check=True)
    generated = root / "run/systemd/network"
    assert sorted(p.name for p in generated.iterdir()) == [
        "10-netplan-eth0.network",
        "10-netplan-eth1.network",
    ]
    run_networkd(server, generated, expected)


@pytest.mark.skipif(not NEED["ifup"], reason="ifupdown not installed")
def test_real_ifup_runs_the_stanzas(build: Build, tmp_path: Path) -> None:
    net = build(scenarios.two_isp(nics=2))
    server = net.ns("server")
    config = balanced(server, tmp_path)
    expected = expected_state(server, config)
    out = tmp_path / "interfaces.d"
    multihome(server, "export", "-c", config, "--format", "ifupdown", "-o", str(out))
    interfaces = tmp_path / "interfaces"
    interfaces.write_text(f"source {out}/multihome\n")
    state = tmp_path / "ifstate"
    state.mkdir()
    ifupdown = ["ip", "netns", "exec", server]
    common = ["-i", str(interfaces), "--state-dir", str(state), "--force", "eth0", "eth1"]
    subprocess.run([*ifupdown, "ifup", *common], check=True, capture_output=True)
    assert policy_state(server) == without_balancing(expected)
    assert sysctl(server, "net.ipv4.fib_multipath_hash_policy") == "1"
    multihome(server, "apply", "-c", config)  # what multihome-watch.service does at start
    assert policy_state(server) == expected
    multihome(server, "remove", "-c", config)
    subprocess.run([*ifupdown, "ifdown", *common], check=True, capture_output=True)
    assert policy_state(server) == (set(), set())
