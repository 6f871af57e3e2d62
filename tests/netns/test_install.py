"""`multihome install` / `uninstall` under a scratch root: stack detection, file layout,
backups of replaced files, and exact removal."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from multihome.lab import scenarios
from multihome.lab.description import Topology
from multihome.lab.topology import Network

from .helpers import multihome

Build = Callable[[Topology], Network]


def tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): (os.readlink(p) if p.is_symlink() else p.read_text())
        for p in sorted(root.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


def install(ns: str, root: Path, *args: str) -> dict[str, object]:
    return dict(json.loads(multihome(ns, "install", "--root", str(root), "--json", *args).stdout))


def test_no_stack_gets_the_systemd_unit_and_uninstall_removes_exactly_it(
    build: Build, tmp_path: Path
) -> None:
    net = build(scenarios.seed(nics=2))
    server = net.ns("server")
    root = tmp_path / "root"
    (root / "etc/sysctl.d").mkdir(parents=True)
    theirs = root / "etc/sysctl.d/90-multihome.conf"  # a file someone else put there
    theirs.write_text("# not ours\n")
    (root / "etc/hostname").write_text("server\n")
    before = tree(root)
    done = install(server, root)
    assert done["formats"] == ["systemd"]
    after = tree(root)
    assert "ExecStart=" in after["etc/systemd/system/multihome.service"]
    # the daemon is enabled: it starts before the network (multihome.service, the oneshot
    # apply after network-online.target, is written but not enabled)
    assert after["etc/systemd/system/multi-user.target.wants/multihome-watch.service"] == (
        "../multihome-watch.service"
    )
    assert "etc/systemd/system/multi-user.target.wants/multihome.service" not in after
    assert "net.ipv4.conf.eth1.arp_ignore = 1" in after["etc/sysctl.d/90-multihome.conf"]
    assert after["etc/sysctl.d/90-multihome.conf.multihome-backup"] == "# not ours\n"
    assert after["etc/hostname"] == "server\n"
    # installing again changes nothing but the manifest's time
    install(server, root)
    again = tree(root)
    assert {k: v for k, v in again.items() if "installed.json" not in k} == {
        k: v for k, v in after.items() if "installed.json" not in k
    }
    multihome(server, "uninstall", "--root", str(root))
    assert {k: v for k, v in tree(root).items()} == before


def test_ifupdown_host_gets_interfaces_d_stanzas(build: Build, tmp_path: Path) -> None:
    net = build(scenarios.seed(nics=2))
    server = net.ns("server")
    root = tmp_path / "root"
    (root / "etc/network").mkdir(parents=True)
    (root / "etc/network/interfaces").write_text(
        "source /etc/network/interfaces.d/*\n"
        "iface eth0 inet static\n    address 192.0.2.10/24\n"
        "iface eth1 inet static\n    address 192.0.2.11/24\n"
    )
    done = install(server, root)
    assert done["formats"] == ["ifupdown"]
    stanzas = (root / "etc/network/interfaces.d/multihome").read_text()
    assert "iface eth1 inet manual" in stanzas and "post-up sysctl -qw" in stanzas
    multihome(server, "uninstall", "--root", str(root))
    assert not (root / "etc/network/interfaces.d/multihome").exists()
    assert (root / "etc/network/interfaces").exists()


def test_networkd_host_gets_drop_ins_named_after_its_network_files(
    build: Build, tmp_path: Path
) -> None:
    net = build(scenarios.two_isp(nics=2))
    server = net.ns("server")
    root = tmp_path / "root"
    links = root / "run/systemd/netif/links"
    links.mkdir(parents=True)
    for link in json.loads(
        __import__("subprocess")
        .run(["ip", "-n", server, "-j", "link"], capture_output=True, text=True, check=True)
        .stdout
    ):
        if link["ifname"] in ("eth0", "eth1"):
            network = f"/run/systemd/network/10-netplan-{link['ifname']}.network"
            (links / str(link["ifindex"])).write_text(
                f"ADMIN_STATE=configured\nNETWORK_FILE={network}\n"
            )
    done = install(server, root)
    assert done["formats"] == ["networkd"]
    assert sorted(
        str(p.relative_to(root)) for p in (root / "etc/systemd/network").rglob("*.conf")
    ) == [
        "etc/systemd/network/10-netplan-eth0.network.d/90-multihome.conf",
        "etc/systemd/network/10-netplan-eth1.network.d/90-multihome.conf",
    ]
    # switching format removes the earlier install's files
    done = install(server, root, "--format", "systemd")
    assert isinstance(done["removed"], list) and len(done["removed"]) == 2
    multihome(server, "uninstall", "--root", str(root))
    assert not list((root / "etc").rglob("*.conf"))
