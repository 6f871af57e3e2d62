"""`multihome install` / `uninstall` on a host whose uplinks the real NetworkManager manages
(the daemon runs in the test's namespace: tests/netns/networkmanager.py)."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from multihome.lab import scenarios
from multihome.lab.description import Topology
from multihome.lab.topology import Network

from .helpers import ip_json, multihome, selects
from .networkmanager import NetworkManager, nm_available
from .test_watch import Watch, wait_for

Build = Callable[[Topology], Network]

pytestmark = pytest.mark.skipif(
    not nm_available(), reason="needs NetworkManager, nmcli and dbus-daemon (network-manager)"
)

UPLINKS = {  # the two-ISP lab's server: connection name, device, addresses, gateways, metric
    "up0": ("eth0", "192.0.2.10/27", "192.0.2.1", "2001:db8:0::10/64", "2001:db8:0::1", "100"),
    "up1": ("eth1", "192.0.2.42/27", "192.0.2.33", "2001:db8:1::10/64", "2001:db8:1::1", "200"),
}


def policy(ns: str) -> dict[str, list[dict[str, Any]]]:
    """multihome's rules (priorities 1000-1003) and its tables' routes, both families, as
    `ip -j` shows them, without the protocol (NetworkManager's items carry its own)."""

    def strip(item: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in item.items() if k not in ("protocol", "flags")}

    rules = [
        strip(r)
        for version in ("-4", "-6")
        for r in ip_json(ns, version, "rule")
        if 1000 <= int(r["priority"]) <= 1003
    ]
    routes = [  # the uplinks' tables, and the IPv6 routes from a prefix in main
        strip(r)
        for version in ("-4", "-6")
        for r in ip_json(ns, version, "route", "show", "table", "all")
        if r.get("table") in ("100", "101") or "from" in r
    ]
    key = json.dumps
    return {"rules": sorted(rules, key=key), "routes": sorted(routes, key=key)}


def configuration(keyfile: bytes) -> bytes:
    """A keyfile, byte for byte, but for the time the connection was last activated, which
    NetworkManager writes into [connection] whenever it saves an activated connection."""
    return b"".join(
        line for line in keyfile.splitlines(keepends=True) if not line.startswith(b"timestamp=")
    )


def settles(
    ns: str, expected: dict[str, list[dict[str, Any]]], seconds: float, step: str = ""
) -> None:
    """Wait until multihome's part of the kernel is `expected`; show the difference if not."""
    try:
        NetworkManager.wait(lambda: policy(ns) == expected, seconds)
    except AssertionError:
        now = policy(ns)
        for kind in ("rules", "routes"):
            missing = [json.dumps(i) for i in expected[kind] if i not in now[kind]]
            extra = [json.dumps(i) for i in now[kind] if i not in expected[kind]]
            assert not missing and not extra, f"{step}: {kind}: missing {missing}, extra {extra}"


NM_SRC_RACE = re.compile(
    r"route-sync: failure to add IPv6 route: .* pref-src \S+: Invalid argument"
)


def settles_or_reapply(
    nm: NetworkManager, ns: str, expected: dict[str, list[dict[str, Any]]], step: str, since: int
) -> None:
    """`settles`, allowing for one race of NetworkManager 1.42's own: when it activates a
    connection it may add an IPv6 route with `src` in the instant before the address is
    usable, get EINVAL and not retry (its log says so). Only then, and only once, a
    `nmcli device reapply` (what an admin would do) must complete the layout."""
    try:
        settles(ns, expected, 30, step)
    except AssertionError:
        new = nm.log.read_bytes()[since:].decode(errors="replace")
        if not NM_SRC_RACE.search(new):
            raise
        for dev in ("eth0", "eth1"):
            nm.run("nmcli", "device", "reapply", dev)
        settles(ns, expected, 30, f"{step}, after NetworkManager's IPv6 src race and a reapply")


def wipe(ns: str) -> None:
    """What a reboot does to the kernel's side: no policy routing, no addresses."""
    for version in ("-4", "-6"):
        lines = [
            f"rule del pref {r['priority']}"
            for r in ip_json(ns, version, "rule")
            if 1000 <= int(r["priority"]) <= 1003
        ]
        lines += [f"route flush table {table}" for table in ("100", "101")]
        lines += [  # (IPv6 routes from a prefix in main: a reboot takes them too)
            f"route del {r['dst']} from {r['from']} dev {r['dev']} table main"
            for r in ip_json(ns, version, "route", "show", "table", "main")
            if "from" in r
        ]
        lines += [f"addr flush dev {dev}" for dev in ("eth0", "eth1")]
        batch = "\n".join(lines) + "\n"
        subprocess.run(["ip", "-n", ns, version, "-batch", "-"], input=batch, text=True, check=True)
    assert policy(ns) == {"rules": [], "routes": []}


def add_connections(nm: NetworkManager) -> None:
    for name, (dev, address4, gateway4, address6, gateway6, metric) in UPLINKS.items():
        nm.run(
            "nmcli", "connection", "add", "type", "ethernet", "ifname", dev, "con-name", name,
            "ipv4.method", "manual", "ipv4.addresses", address4, "ipv4.gateway", gateway4,
            "ipv4.route-metric", metric, "ipv6.method", "manual", "ipv6.addresses", address6,
            "ipv6.gateway", gateway6, "ipv6.route-metric", metric,
        )  # fmt: skip
    for _, (dev, *_) in UPLINKS.items():
        nm.wait(lambda d=dev: nm.connected(d), 20)


@contextlib.contextmanager
def managed(build: Build, directory: Path) -> Iterator[tuple[str, NetworkManager]]:
    """The two-ISP lab's server with NetworkManager configuring its uplinks (the lab's own
    addresses flushed, a connection per uplink added and connected): its namespace and
    NetworkManager, stopped afterwards whatever happens."""
    net = build(scenarios.two_isp(nics=2))
    server = net.ns("server")
    for dev in ("eth0", "eth1"):  # NetworkManager configures the uplinks, not the lab
        subprocess.run(["ip", "-n", server, "addr", "flush", "dev", dev], check=True)
    nm = NetworkManager(server, directory)
    try:
        nm.start()
        add_connections(nm)
        yield server, nm
    finally:
        nm.stop()


def boot(nm: NetworkManager, server: str) -> None:
    """A reboot: NetworkManager starts again on a host without any policy routing, and
    connects the uplinks."""
    nm.stop()
    wipe(server)
    nm.start()
    for dev in ("eth0", "eth1"):
        nm.wait(lambda d=dev: nm.connected(d), 20)


def test_install_adds_the_plan_to_the_connections_and_uninstall_takes_exactly_it_out(
    build: Build, tmp_path: Path
) -> None:
    with managed(build, tmp_path / "nm") as (server, nm):
        # what `multihome apply` builds, for comparison
        multihome(server, "apply")
        applied = policy(server)
        assert len(applied["rules"]) == 5 and len(applied["routes"]) == 6
        multihome(server, "remove")
        assert policy(server) == {"rules": [], "routes": []}
        keyfiles = {name: nm.keyfile(name) for name in UPLINKS}

        since = nm.log.stat().st_size
        done = json.loads(nm.multihome("install", "--json"))
        assert done["formats"] == ["networkmanager"]
        assert not any("multihome-nmcli.sh" in path for path in done["written"])
        manifest = json.loads((nm.directory / "var/multihome/networkmanager.json").read_text())
        assert {c["name"] for c in manifest["connections"]} == set(UPLINKS)
        assert sum(len(v) for c in manifest["connections"] for v in c["added"].values()) == 11
        settles_or_reapply(nm, server, applied, "install", since)
        # installing again ends in the same state (it takes its items out and adds them
        # again: its earlier items look like another owner's to the planner)
        since = nm.log.stat().st_size
        nm.multihome("install", "--json")
        settles_or_reapply(nm, server, applied, "install again", since)

        # a reboot: NetworkManager starts on a host without any policy routing
        since = nm.log.stat().st_size  # NetworkManager's log from here on
        boot(nm, server)
        # NetworkManager retries a route whose source address is not usable yet (IPv6 `src`,
        # the address just added) for up to 20 s: under load, that is how long it may take
        settles_or_reapply(nm, server, applied, "restart", since)

        # bringing a connection up again keeps them
        since = nm.log.stat().st_size
        for name in UPLINKS:
            nm.run("nmcli", "connection", "up", name)
        settles_or_reapply(nm, server, applied, "connection up", since)

        out = nm.multihome("uninstall", "--json")
        assert len(json.loads(out)["removed"]) == 2  # one entry per connection
        for name, before in keyfiles.items():
            assert configuration(nm.keyfile(name)) == configuration(before), name
        nm.wait(lambda: policy(server) == {"rules": [], "routes": []}, 5)
        assert not (nm.directory / "var/multihome/networkmanager.json").exists()
        # the connections' own routes are still there
        assert {r["dev"] for r in ip_json(server, "route", "show", "default")} == {"eth0", "eth1"}


def test_the_exported_script_adds_what_apply_builds_and_runs_again(
    build: Build, tmp_path: Path
) -> None:
    """`export --format networkmanager` writes multihome-nmcli.sh for an admin to run: run
    against the real NetworkManager, it puts into the connections (by their UUID, whatever
    their names) what `multihome apply` builds; run again, the same; and a connection whose
    name nmcli would read as a keyword (`uuid`) changes nothing of that."""
    with managed(build, tmp_path / "nm") as (server, nm):
        nm.multihome("apply")
        applied = policy(server)
        multihome(server, "remove")
        assert policy(server) == {"rules": [], "routes": []}
        nm.run("nmcli", "connection", "modify", "up0", "connection.id", "uuid")
        out = tmp_path / "out"
        nm.multihome("export", "--format", "networkmanager", "-o", str(out))
        script = out / "multihome-nmcli.sh"
        for step in ("script", "script again"):
            since = nm.log.stat().st_size
            nm.run("sh", str(script))
            settles_or_reapply(nm, server, applied, step, since)
        added = nm.output("nmcli", "-g", "ipv4.routing-rules", "connection", "show", "id", "uuid")
        assert "1002" in added and added.count("1002") == 1, added


def test_uninstall_keeps_an_item_the_connection_had_before_install(
    build: Build, tmp_path: Path
) -> None:
    with managed(build, tmp_path / "nm") as (_, nm):
        # the admin had already added one of multihome's rules by hand
        theirs = "priority 1002 from 192.0.2.42 table 101"
        nm.run("nmcli", "connection", "modify", "up1", "+ipv4.routing-rules", theirs)
        before = nm.keyfile("up1")
        nm.multihome("install", "--json")
        manifest = json.loads((nm.directory / "var/multihome/networkmanager.json").read_text())
        up1 = next(c for c in manifest["connections"] if c["name"] == "up1")
        assert theirs not in up1["added"]["ipv4.routing-rules"]
        nm.multihome("uninstall")
        assert configuration(nm.keyfile("up1")) == configuration(before)
        rules = nm.output("nmcli", "-g", "ipv4.routing-rules", "connection", "show", "up1")
        assert rules.strip() == theirs


def test_a_renumbered_dhcp_lease_is_routed_through_its_new_gateway_within_a_second(
    build: Build, tmp_path: Path
) -> None:
    """dnsmasq in ISP 1 hands out eth1's address; NetworkManager is the DHCP client and
    `multihome watch` runs. ISP 1 renumbers (new subnet, new router): once the new lease is
    on eth1, replies from its new address leave through the new gateway within 1 s."""
    net = build(scenarios.two_isp(nics=2))
    server, isp1 = net.ns("server"), net.ns("isp1")
    for dev in ("eth0", "eth1"):
        subprocess.run(["ip", "-n", server, "addr", "flush", "dev", dev], check=True)
    leases = tmp_path / "leases"
    dnsmasq: list[subprocess.Popen[bytes]] = []

    def serve(first: str, last: str, router: str) -> None:
        options = [
            "--keep-in-foreground", "--port=0", "--interface=cust", "--bind-interfaces",
            "--conf-file=/dev/null", "--user=root", "--pid-file", f"--dhcp-leasefile={leases}",
            "--dhcp-authoritative", f"--dhcp-range={first},{last},255.255.255.0,1h",
            f"--dhcp-option=option:router,{router}",
        ]  # fmt: skip
        argv = ["ip", "netns", "exec", isp1, "dnsmasq", *options]
        dnsmasq.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def eth1_addresses() -> set[str]:
        return {
            a["local"]
            for link in ip_json(server, "-4", "addr", "show", "dev", "eth1")
            for a in link["addr_info"]
        }

    def route_from(address: str) -> tuple[str, str, str]:
        (route,) = ip_json(server, "route", "get", "203.0.113.100", "from", address)
        return route.get("gateway", ""), route.get("dev", ""), str(route.get("table", "main"))

    nm = NetworkManager(server, tmp_path / "nm")
    watch = None
    try:
        subprocess.run(["ip", "-n", isp1, "addr", "flush", "dev", "cust"], check=True)
        subprocess.run(
            ["ip", "-n", isp1, "addr", "add", "198.18.1.1/24", "dev", "cust"], check=True
        )
        serve("198.18.1.10", "198.18.1.20", "198.18.1.1")
        nm.start()
        nm.run(
            "nmcli", "connection", "add", "type", "ethernet", "ifname", "eth0", "con-name",
            "up0", "ipv4.method", "manual", "ipv4.addresses", "192.0.2.10/27",
            "ipv4.gateway", "192.0.2.1", "ipv4.route-metric", "100", "ipv6.method", "disabled",
        )  # fmt: skip
        nm.run(
            "nmcli", "connection", "add", "type", "ethernet", "ifname", "eth1", "con-name",
            "dhcp1", "ipv4.method", "auto", "ipv4.route-metric", "200",
            "ipv6.method", "disabled",
        )  # fmt: skip
        for dev in ("eth0", "eth1"):
            nm.wait(lambda d=dev: nm.connected(d), 30)
        (old,) = eth1_addresses()
        assert old.startswith("198.18.1.")
        watch = Watch(server)
        wait_for(lambda: route_from(old) == ("198.18.1.1", "eth1", "101"), 2)

        # ISP 1 renumbers: a new subnet and router; the client's next request is refused
        # (authoritative server), it asks again and gets an address in the new subnet
        dnsmasq.pop().terminate()
        subprocess.run(["ip", "-n", isp1, "addr", "flush", "dev", "cust"], check=True)
        subprocess.run(
            ["ip", "-n", isp1, "addr", "add", "198.18.2.1/24", "dev", "cust"], check=True
        )
        leases.unlink(missing_ok=True)
        serve("198.18.2.10", "198.18.2.20", "198.18.2.1")
        nm.run("nmcli", "device", "connect", "eth1")
        wait_for(lambda: any(a.startswith("198.18.2.") for a in eth1_addresses()), 30)
        leased = time.monotonic()  # the new lease is on eth1
        (new,) = (a for a in eth1_addresses() if a.startswith("198.18.2."))
        wait_for(lambda: route_from(new) == ("198.18.2.1", "eth1", "101"), 2)
        assert time.monotonic() - leased < 1.0
        wait_for(lambda: not selects(server, old), 2)
        assert selects(server, new)
        assert watch.stop() == 0
    finally:
        if watch is not None and watch.proc.poll() is None:
            watch.proc.kill()
            watch.proc.wait()
        nm.stop()
        for proc in dnsmasq:
            proc.terminate()
            proc.wait(timeout=10)
