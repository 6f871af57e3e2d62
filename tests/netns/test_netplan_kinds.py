"""`export --format netplan` puts each uplink in the section of its kind (bonds, vlans,
bridges, ethernets), so that the real `netplan generate` takes the file beside the host's own
netplan file, which defines those devices (a definition may not change its device type)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from multihome.core.config import Config
from multihome.core.plan import plan
from multihome.render import Options, netplan

from ..unit.hosts import host
from .helpers import multihome

HOST_NETPLAN = """\
network:
  version: 2
  ethernets:
    d0: {}
    d1: {}
    d2: {}
    d2peer: {}
    eth0peer: {}
    eth0:
      addresses: [198.51.100.2/24]
  bonds:
    bond0:
      interfaces: [d0]
      addresses: [192.0.2.10/27]
  vlans:
    vlan5:
      id: 5
      link: d1
      addresses: [192.0.2.42/27]
  bridges:
    br0:
      interfaces: [d2]
      addresses: [192.0.2.74/27]
"""


def ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True)


def generate(tmp_path: Path, ours: str) -> Path:
    """The real `netplan generate` on the host's netplan file and ours; its output root."""
    root = tmp_path / "root"
    (root / "etc/netplan").mkdir(parents=True)
    for name, content in (("01-host.yaml", HOST_NETPLAN), ("90-multihome.yaml", ours)):
        (root / "etc/netplan" / name).write_text(content)
        (root / "etc/netplan" / name).chmod(0o600)
    done = subprocess.run(
        ["netplan", "generate", "--root-dir", str(root)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr + ours
    return root


def sections(text: str) -> dict[str, list[str]]:
    network = yaml.safe_load(text)["network"]
    return {section: sorted(network[section]) for section in network if section != "version"}


@pytest.fixture
def bridged() -> Iterator[str]:
    """A namespace with two uplinks: a bridge (a veth as its port) and a veth NIC. (This
    kernel builds no bonds or VLANs in a namespace: those are rendered from their kind.)"""
    ns = f"mhpc{os.getpid() % 100000}-np"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        ip(ns, "link", "add", "br0", "type", "bridge")
        ip(ns, "link", "add", "d2", "type", "veth", "peer", "name", "d2peer")
        ip(ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer")
        ip(ns, "link", "set", "d2", "master", "br0")
        for name in ("d2", "d2peer", "eth0", "eth0peer", "br0"):
            ip(ns, "link", "set", name, "up")
        uplinks = {"br0": ("192.0.2.74/27", "192.0.2.65"), "eth0": ("198.51.100.2/24", "198.51.100.1")}
        for metric, (name, (address, gateway)) in enumerate(uplinks.items(), 100):
            ip(ns, "address", "add", address, "dev", name, "nodad")
            ip(ns, "route", "add", "default", "via", gateway, "dev", name, "metric", str(metric))
        yield ns
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)


def test_netplan_export_puts_a_bridge_uplink_under_bridges(bridged: str, tmp_path: Path) -> None:
    assert shutil.which("netplan"), "netplan.io is installed by scripts/test.sh"
    out = tmp_path / "out"
    multihome(bridged, "export", "--format", "netplan", "-o", str(out))
    text = (out / "90-multihome.yaml").read_text()
    assert sections(text) == {"ethernets": ["eth0"], "bridges": ["br0"]}, text
    root = generate(tmp_path, text)
    for name, table in (("br0", "100"), ("eth0", "101")):
        unit = (root / f"run/systemd/network/10-netplan-{name}.network").read_text()
        assert f"Table={table}" in unit and "[RoutingPolicyRule]" in unit, (name, unit)


def test_netplan_generate_takes_bond_vlan_and_bridge_uplinks(tmp_path: Path) -> None:
    links = {"bond0": "192.0.2.10/27", "vlan5": "192.0.2.42/27", "br0": "192.0.2.74/27", "eth0": "198.51.100.2/24"}
    gateways = {"bond0": "192.0.2.1", "vlan5": "192.0.2.33", "br0": "192.0.2.65", "eth0": "198.51.100.1"}
    state = host({n: [a] for n, a in links.items()}, [(n, g, 100 + i) for i, (n, g) in enumerate(gateways.items())])
    kinds = {"bond0": "bond", "vlan5": "vlan", "br0": "bridge", "eth0": ""}
    text = netplan.render(plan(Config(), state), Options(kinds=kinds)).files["90-multihome.yaml"]
    assert sections(text) == {"ethernets": ["eth0"], "bonds": ["bond0"], "vlans": ["vlan5"], "bridges": ["br0"]}
    root = generate(tmp_path, text)
    for name in links:
        unit = (root / f"run/systemd/network/10-netplan-{name}.network").read_text()
        assert f"Gateway={gateways[name]}" in unit and "[RoutingPolicyRule]" in unit, (name, unit)
    # before: every uplink under ethernets, which netplan refuses for a bond it knows
    wrong = netplan.render(plan(Config(), state), Options()).files["90-multihome.yaml"]
    (tmp_path / "root").rename(tmp_path / "first")
    with pytest.raises(AssertionError, match="changes device type"):
        generate(tmp_path, wrong)
