"""multihome apply/remove against the real kernel, checked with iproute2's own JSON."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

from multihome.lab import scenarios
from multihome.lab.description import Topology
from multihome.lab.topology import Network

from .helpers import (
    PY,
    TcpServer,
    fetch,
    ip_json,
    ip_text,
    multihome,
    snapshot,
    sysctl,
    tx_packets,
)

Build = Callable[[Topology], Network]
PROTO = {"77", "multihome"}  # `ip` prints the name once rt_protos.d knows it


def _owned_rules(ns: str, family: str = "-4") -> list[dict[str, object]]:
    return [r for r in ip_json(ns, family, "rule") if r.get("protocol") in PROTO]


def test_article_topology_replies_leave_by_the_owning_nic(build: Build) -> None:
    net = build(scenarios.seed(nics=2))
    server, client = net.ns("server"), net.ns("client")
    addresses = ["192.0.2.10", "192.0.2.11"]
    with TcpServer(server, size=60000):
        before = tx_packets(server)
        assert fetch(client, addresses, count=20) == {a: 20 for a in addresses}
        mid = tx_packets(server)
        stock = {i: mid[i] - before[i] for i in ("eth0", "eth1")}
        # Destination routing: everything leaves through eth0, the default route's NIC.
        assert stock["eth0"] >= 40 and stock["eth1"] < 0.05 * stock["eth0"], stock

        multihome(server, "apply")
        assert fetch(client, addresses, count=20) == {a: 20 for a in addresses}
        after = tx_packets(server)
        policy = {i: after[i] - mid[i] for i in ("eth0", "eth1")}
        share = policy["eth1"] / (policy["eth0"] + policy["eth1"])
        assert 0.4 < share < 0.6, policy

    for address, dev in (("192.0.2.10", "eth0"), ("192.0.2.11", "eth1")):
        # off-link (the client, through the router) and on-link (the router itself)
        for dst in ("198.51.100.100", "192.0.2.1"):
            route = ip_json(server, "route", "get", dst, "from", address)[0]
            assert route["dev"] == dev, (dst, address, route)
    # ARP flux: both NICs on one subnet get arp_ignore=1 / arp_announce=2
    for dev in ("eth0", "eth1"):
        assert sysctl(server, f"net.ipv4.conf.{dev}.arp_ignore") == "1"
        assert sysctl(server, f"net.ipv4.conf.{dev}.arp_announce") == "2"


def test_rule_layout_as_iproute2_reads_it(build: Build) -> None:
    net = build(scenarios.seed(nics=2))
    server = net.ns("server")
    multihome(server, "apply")
    rules = _owned_rules(server)
    # A suppress_prefixlen keyword the kernel never received would be missing here.
    layout = sorted(
        (r["priority"], r["src"], r["table"], r.get("suppress_prefixlen")) for r in rules
    )
    assert layout == [
        (1000, "192.0.2.10", "100", 0),
        (1000, "192.0.2.11", "101", 0),
        (1001, "all", "main", 0),
        (1002, "192.0.2.10", "100", None),
        (1002, "192.0.2.11", "101", None),
    ]
    routes = ip_json(server, "route", "show", "table", "101")
    assert {(r["dst"], r.get("gateway"), r["dev"], r.get("prefsrc")) for r in routes} == {
        ("192.0.2.0/24", None, "eth1", "192.0.2.11"),
        ("default", "192.0.2.1", "eth1", None),
    }
    assert all(r["protocol"] in PROTO for r in routes)


def test_two_isps_with_strict_rp_filter_everywhere(build: Build) -> None:
    """The issue's check: three ISPs, rp_filter=1 on the server too; the second and third
    ISP's addresses fail before the rules and work after, without loosening rp_filter."""
    topo = scenarios.two_isp(nics=3)
    strict = tuple(
        ("server", f"net/ipv4/conf/{name}/rp_filter", "1") for name in ("all", "default")
    )
    topo = Topology(**{**topo.__dict__, "sysctls": topo.sysctls + strict})
    net = build(topo)
    server, client = net.ns("server"), net.ns("client")
    addresses = topo.roles["server_addresses"]
    with TcpServer(server):
        before = fetch(client, addresses, count=3)
        assert before[addresses[0]] == 3
        assert before[addresses[1]] == 0 and before[addresses[2]] == 0
        multihome(server, "apply")
        assert fetch(client, addresses, count=3) == {a: 3 for a in addresses}
        six = topo.roles["server_addresses6"]
        assert fetch(client, six, count=3) == {a: 3 for a in six}
    assert sysctl(server, "net.ipv4.conf.all.rp_filter") == "1"
    for i, address in enumerate(addresses):
        route = ip_json(server, "route", "get", "203.0.113.100", "from", address)[0]
        assert route["dev"] == f"eth{i}"
        assert route["gateway"] == f"192.0.2.{32 * i + 1}"
    # IPv6, each uplink alone on its /64: a route from the prefix in main each, and one rule
    # that looks it up there ahead of anyone's suppress rule
    rules6 = _owned_rules(server, "-6")
    assert {(r["src"], r["srclen"], r["table"], r["priority"]) for r in rules6} == {
        ("2001:db8::", 64, "main", 1002),
        ("2001:db8:1::", 64, "main", 1002),
        ("2001:db8:2::", 64, "main", 1002),
    }
    routes6 = ip_json(server, "-6", "route", "show", "table", "all", "proto", "77")
    assert {(r["dst"], r["from"], r.get("table", "main"), r["dev"]) for r in routes6} == {
        ("default", "2001:db8::/64", "main", "eth0"),
        ("default", "2001:db8:1::/64", "main", "eth1"),
        ("default", "2001:db8:2::/64", "main", "eth2"),
    }
    for i, address in enumerate(six):
        route = ip_json(server, "-6", "route", "get", "2001:db8:ff::100", "from", address)[0]
        assert route["dev"] == f"eth{i}", route


def test_second_apply_changes_nothing_and_remove_restores_exactly(build: Build) -> None:
    net = build(scenarios.two_isp(nics=2))
    server = net.ns("server")
    pristine = snapshot(server)
    sysctls_before = sysctl(server, "net.ipv4.conf.eth0.arp_ignore")
    first = json.loads(multihome(server, "apply", "--json").stdout)
    assert first["changed"] and len(first["changes"]) == 11
    applied = snapshot(server)
    second = json.loads(multihome(server, "apply", "--json").stdout)
    assert second == {**second, "changed": False, "changes": []}
    assert snapshot(server) == applied
    assert multihome(server, "plan", "--check").returncode == 0
    multihome(server, "remove")
    assert snapshot(server) == pristine
    assert sysctl(server, "net.ipv4.conf.eth0.arp_ignore") == sysctls_before
    assert "nothing to do" in multihome(server, "remove").stdout


def test_plan_check_exit_codes(build: Build) -> None:
    net = build(scenarios.seed(nics=2))
    server = net.ns("server")
    pending = multihome(server, "plan", "--check", check=False)
    assert pending.returncode == 1 and "changes pending" in pending.stdout
    commands = multihome(server, "plan", "--format", "ip").stdout.splitlines()
    assert "ip -4 rule add pref 1001 from all lookup main suppress_prefixlength 0 proto 77" in (
        commands
    )
    # The printed recipe, run by hand, gives the same kernel state as apply.
    for command in commands:
        subprocess.run(
            ["ip", "netns", "exec", server, *command.split()], check=True, capture_output=True
        )
    assert multihome(server, "plan", "--check", check=False).returncode == 0


def test_foreign_rules_and_routes_survive_apply_and_remove(build: Build) -> None:
    net = build(scenarios.two_isp(nics=2))
    server = net.ns("server")
    foreign = [
        # in multihome's priority band and table range, other owners
        "rule add from 192.0.2.10 lookup 100 pref 1000 proto static",
        "rule add fwmark 0x1 lookup 150 pref 1001 proto 77",
        "rule add from 10.99.0.0/16 lookup 5000 pref 1002",
        "rule add from all lookup 51820 pref 32764",  # wg-quick's style
        "route add 203.0.113.0/24 dev eth0 table 150 proto static",
        "route add blackhole 198.51.100.0/24 table 5000",
        "route add 198.51.100.0/25 via 192.0.2.1 dev eth0",  # a specific route in main
    ]
    for command in foreign:
        subprocess.run(["ip", "-n", server, *command.split()], check=True)
    with_foreign = snapshot(server)
    rules_before = [r for r in ip_json(server, "rule") if r.get("protocol") not in PROTO]
    multihome(server, "apply")
    multihome(server, "apply")
    rules_after = [
        r for r in ip_json(server, "rule") if r.get("protocol") not in PROTO or "fwmark" in r
    ]
    assert [r for r in rules_after if r.get("protocol") not in PROTO] == rules_before
    # table 100 is looked up by a foreign rule and table 150 holds a foreign route, so
    # multihome picked the next free tables
    table_150 = ip_text(server, "route", "show", "table", "150")
    assert "203.0.113.0/24 dev eth0 proto static" in table_150
    assert {r["table"] for r in _owned_rules(server) if r["src"] != "all"} == {"101", "102"}
    # the specific route in main still wins for its destination (lookup main suppress 0)
    route = ip_json(server, "route", "get", "198.51.100.7", "from", "192.0.2.42")[0]
    assert route["dev"] == "eth0"
    multihome(server, "remove")
    assert snapshot(server) == with_foreign


FAULT = """
import sys
from multihome.kernel import discover, writer, namespace
from multihome.core.config import Config
from multihome.core.diff import diff
from multihome.errors import KernelError
from multihome.core.model import Action, Change, Family, Route
from multihome.core.plan import plan
import ipaddress
namespace.enter(sys.argv[1])
position = int(sys.argv[2])
host = discover.read_state()
changes = diff(plan(Config(), host), host)
# A route through an interface index that does not exist: the kernel refuses it (ENODEV).
bad = Change(Action.ADD, Route(Family.INET, 150, ipaddress.ip_network("203.0.113.0/24"),
             dev="lo", protocol=77))
from multihome.core.records import replace
host = replace(host, interfaces=tuple(
    replace(i, index=999999) if i.name == "lo" else i for i in host.interfaces))
changes.insert(min(position, len(changes)), bad)
try:
    writer.apply(changes, host)
except KernelError as error:
    print("refused:", error)
    sys.exit(3)
"""


def test_failed_apply_leaves_no_trace_at_any_position(build: Build) -> None:
    net = build(scenarios.two_isp(nics=2))
    server = net.ns("server")
    pristine = snapshot(server)
    arp = [sysctl(server, f"net.ipv4.conf.eth{i}.arp_ignore") for i in (0, 1)]
    for position in (0, 1, 5, 9, 17, 100):
        result = subprocess.run(
            [PY, "-c", FAULT, server, str(position)], capture_output=True, text=True
        )
        assert result.returncode == 3, result.stderr
        assert "changes already made were undone" in result.stdout
        assert snapshot(server) == pristine, position
        assert [sysctl(server, f"net.ipv4.conf.eth{i}.arp_ignore") for i in (0, 1)] == arp


def test_a_failing_sysctl_rolls_back_the_routes(build: Build) -> None:
    net = build(scenarios.seed(nics=2))
    server = net.ns("server")
    pristine = snapshot(server)
    code = FAULT.split("# A route")[0] + (
        "from multihome.core.model import Sysctl\n"
        "changes.append(Change(Action.SET, Sysctl('net/ipv4/conf/nosuchdev/arp_ignore', '1'),"
        " '0'))\n"
        "try:\n    writer.apply(changes, host)\n"
        "except KernelError as error:\n    print('refused:', error); sys.exit(3)\n"
    )
    result = subprocess.run([PY, "-c", code, server, "0"], capture_output=True, text=True)
    assert result.returncode == 3, result.stderr
    assert snapshot(server) == pristine
    assert sysctl(server, "net.ipv4.conf.eth1.arp_ignore") == "0"


def test_state_file_is_keyed_by_namespace_inode(build: Build, tmp_path: object) -> None:
    import os

    net = build(scenarios.seed(nics=2))
    a, b = net.ns("server"), net.ns("router")
    multihome(a, "apply")
    inode = os.stat(f"/run/netns/{a}").st_ino
    state_dir = os.environ["MULTIHOME_STATE_DIR"]
    with open(os.path.join(state_dir, f"netns-{inode}.json")) as file:
        record = json.load(file)
    assert record["sysctl_originals"]["net/ipv4/conf/eth1/arp_ignore"] == "0"
    # `ip netns exec` reaches the same state file as --netns
    out = subprocess.run(
        ["ip", "netns", "exec", a, PY, "-m", "multihome", "plan", "--check"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # another namespace has no state of its own
    assert not os.path.exists(
        os.path.join(state_dir, f"netns-{os.stat(f'/run/netns/{b}').st_ino}.json")
    )


def test_errors_are_one_line_with_exit_2(build: Build, tmp_path: object) -> None:
    import pathlib

    net = build(scenarios.seed(nics=2))
    server = net.ns("server")
    bad = pathlib.Path(str(tmp_path)) / "bad.toml"
    bad.write_text('[uplinks.eth1]\ngateway = "198.51.100.1"\n')
    result = multihome(server, "apply", "-c", str(bad), check=False)
    assert result.returncode == 2
    assert "bad.toml:2: uplinks.eth1.gateway: gateway 198.51.100.1 is not on eth1's subnet" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    assert _owned_rules(server) == []
    missing = multihome("mh-no-such-ns", "show", check=False)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_apply_corrects_the_neighbours_arp_caches_at_once(build: Build) -> None:
    """ARP flux before the fix taught the router one MAC for both addresses; the
    gratuitous ARP of apply fixes its cache without waiting for the entries to expire."""
    net = build(scenarios.seed(nics=2))
    server, router, client = net.ns("server"), net.ns("router"), net.ns("client")
    macs = {link["ifname"]: link["address"] for link in ip_json(server, "link")}

    def router_sees() -> dict[str, str]:
        return {
            n["dst"]: n.get("lladdr", "")
            for n in ip_json(router, "neigh", "show", "dev", "lan")
            if n["dst"] in ("192.0.2.10", "192.0.2.11")
        }

    with TcpServer(server):
        fetch(client, ["192.0.2.10", "192.0.2.11"], count=2)
    before = router_sees()
    assert before["192.0.2.10"] == before["192.0.2.11"]  # one NIC answered for both
    multihome(server, "apply")
    assert router_sees() == {"192.0.2.10": macs["eth0"], "192.0.2.11": macs["eth1"]}


def test_balancing_sets_layer4_hashing_for_both_families_and_remove_restores_it(
    build: Build, tmp_path: object
) -> None:
    """The planner asks for both families' hash policy; apply must set both (it once read
    only the IPv4 one, and the diff passed over a sysctl it had not read)."""
    import pathlib

    net = build(scenarios.two_isp(nics=2))
    server = net.ns("server")
    config = pathlib.Path(str(tmp_path)) / "multihome.toml"
    config.write_text("[multihome]\nbalance = true\n")
    config.chmod(0o600)
    names = ("net.ipv4.fib_multipath_hash_policy", "net.ipv6.fib_multipath_hash_policy")
    assert [sysctl(server, n) for n in names] == ["0", "0"]
    out = multihome(server, "apply", "-c", str(config)).stdout
    assert "net.ipv6.fib_multipath_hash_policy: 0 -> 1" in out
    assert [sysctl(server, n) for n in names] == ["1", "1"]
    assert "nothing to do" in multihome(server, "apply", "-c", str(config)).stdout
    multihome(server, "remove", "-c", str(config))
    assert [sysctl(server, n) for n in names] == ["0", "0"]


def test_ipv6_without_source_routes_takes_tables_and_the_layouts_swap_in_one_apply(
    build: Build, tmp_path: object
) -> None:
    """`ipv6_source_routes = false` (a kernel without IPV6_SUBTREES): IPv6 gets a table
    per uplink and rules, as IPv4 does; the next apply without it moves to the routes from
    a prefix in main and back, leaving nothing of the other layout, and replies keep their
    uplink throughout (checked with iproute2's own reading)."""
    import pathlib

    net = build(scenarios.two_isp(nics=2))
    server = net.ns("server")
    six = scenarios.two_isp(nics=2).roles["server_addresses6"]
    config = pathlib.Path(str(tmp_path)) / "multihome.toml"
    config.write_text("[multihome]\nipv6_source_routes = false\n")
    config.chmod(0o600)

    def layout() -> tuple[set[tuple[object, ...]], set[tuple[object, ...]]]:
        routes = ip_json(server, "-6", "route", "show", "table", "all", "proto", "77")
        rules = _owned_rules(server, "-6")
        return (
            {(r["dst"], r.get("from", "-"), r.get("table", "main")) for r in routes},
            {(r.get("src", "all"), str(r["table"]), r["priority"]) for r in rules},
        )

    def by_own_uplink() -> None:
        for i, address in enumerate(six):
            route = ip_json(server, "-6", "route", "get", "2001:db8:ff::100", "from", address)[0]
            assert route["dev"] == f"eth{i}", route

    tables = (
        {
            ("2001:db8::/64", "-", "100"),
            ("default", "-", "100"),
            ("2001:db8:1::/64", "-", "101"),
            ("default", "-", "101"),
        },
        {("all", "main", 1001), ("2001:db8::", "100", 1002), ("2001:db8:1::", "101", 1002)},
    )
    routes = (
        {("default", "2001:db8::/64", "main"), ("default", "2001:db8:1::/64", "main")},
        {("2001:db8::", "main", 1002), ("2001:db8:1::", "main", 1002)},
    )
    multihome(server, "apply", "-c", str(config))
    assert layout() == tables
    by_own_uplink()
    multihome(server, "apply")  # the defaults: routes from a prefix
    assert layout() == routes
    by_own_uplink()
    multihome(server, "apply", "-c", str(config))
    assert layout() == tables
    assert "nothing to do" in multihome(server, "apply", "-c", str(config)).stdout
    multihome(server, "remove", "-c", str(config))
    assert layout() == (set(), set())
