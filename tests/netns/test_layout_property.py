"""Property: whatever the host, after `multihome apply` every local address routes by its own
uplink (its device and its table), checked on the real kernel with `ip -j route get DST from
SRC`, and multihome's rules stay within the bound of its layout (`rule_bound`). Hosts whose
interleaved addresses are too many prefixes for rules get the nft form (sourcemarks.py): there
the lookups carry the mark the set gives (`... mark M`), real packets show the way they leave,
and the rules are two per uplink and family.

Hosts are generated: IPv4, IPv6 or both; 1-4 uplinks, each a veth to a gateway namespace with
a default route in main per family (as DHCP and router advertisements install them); per
family the uplinks' addresses on subnets of their own, in blocks of one shared subnet, or
interleaved over one shared subnet, at random offsets.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from multihome.core.sourcemarks import THRESHOLD
from multihome.lab.description import Link, Port, Topology
from multihome.lab.topology import Network

from .helpers import ip_json, multihome, owned_rules

KINDS = ("own", "shared", "interleaved")
OFF_LINK = {4: "203.0.113.99", 6: "2001:db8:ffff::99"}


@dataclass(frozen=True)
class Subnets:
    """One family's addresses: (uplink index, address with prefix) and each uplink's gateway."""

    version: int
    kind: str
    addresses: tuple[tuple[int, str], ...]
    gateways: tuple[str, ...]

    def neighbour(self, uplink: int) -> str:
        """An on-link address of the uplink's subnet that is no one's."""
        network = ipaddress.ip_interface(self.gateways[uplink] + self.prefix).network
        return str(network.network_address + (253 if self.version == 4 else 0xFFFD))

    @property
    def prefix(self) -> str:
        return "/24" if self.version == 4 else "/64"


@dataclass(frozen=True)
class Host:
    uplinks: int
    families: tuple[Subnets, ...]


def rule_bound(host: Host) -> int:
    """The most rules multihome's layout may write for the host: per family main's
    `suppress_prefixlength 0` rule, and two rules (on-link, off-link) per prefix that selects
    an uplink's addresses. An uplink with a subnet of its own needs one prefix, and only the
    off-link rule (main's own route to the subnet is the uplink's); a block of
    addresses in a shared subnet at most two per bit of the subnet's host part (the aligned
    prefixes that cover a range); interleaved addresses at most one each."""
    total = 0
    for family in host.families:
        counts = [
            sum(1 for owner, _ in family.addresses if owner == u) for u in range(host.uplinks)
        ]
        if family.kind == "own":
            total += 1 + sum(1 for n in counts if n)
            continue
        elif family.kind == "shared":
            bits = 8 if family.version == 4 else 16
            prefixes = sum(min(n, 2 * bits) for n in counts)
        else:
            prefixes = sum(counts)
        total += 1 + 2 * prefixes
    return total


def _subnet(version: int, index: int) -> str:
    """The index-th test subnet of a family (index 100: the shared one)."""
    return f"198.18.{index}.0/24" if version == 4 else f"2001:db8:{index:x}::/64"


@st.composite
def subnets(draw: st.DrawFn, version: int, uplinks: int) -> Subnets:
    kind = draw(st.sampled_from(KINDS))
    extra = draw(st.lists(st.integers(0, uplinks - 1), max_size=5))
    owners = [*range(uplinks), *extra]  # every uplink holds one address at least
    if kind == "shared":
        owners.sort()
    top = 250 if version == 4 else 0xFFF0
    offsets = draw(
        st.lists(st.integers(2, top), min_size=len(owners), max_size=len(owners), unique=True)
    )
    networks = [
        ipaddress.ip_network(_subnet(version, k if kind == "own" else 100)) for k in range(uplinks)
    ]
    prefix = f"/{networks[0].prefixlen}"
    addresses = tuple(
        (k, str(networks[k].network_address + offset) + prefix)
        for k, offset in zip(owners, offsets, strict=True)
    )
    gateways = tuple(str(network.network_address + 1) for network in networks)
    return Subnets(version, kind, addresses, gateways)


@st.composite
def hosts(draw: st.DrawFn) -> Host:
    uplinks = draw(st.integers(1, 4))
    versions = draw(st.sampled_from([(4,), (6,), (4, 6)]))
    return Host(uplinks, tuple(draw(subnets(version, uplinks)) for version in versions))


def topology(host: Host) -> Topology:
    """The server with one veth per uplink to a gateway namespace, a default route each."""
    gateways = tuple(f"gw{k}" for k in range(host.uplinks))
    addresses, routes = [], []
    for family in host.families:
        addresses += [("server", f"eth{k}", a) for k, a in family.addresses]
        default = "0.0.0.0/0" if family.version == 4 else "::/0"
        for k, gateway in enumerate(family.gateways):
            addresses.append((f"gw{k}", "lan", gateway + family.prefix))
            routes.append(("server", default, gateway, f"eth{k}", 100 * (k + 1)))
    return Topology(
        name="layout-property",
        hosts=("server", *gateways),
        links=tuple(
            Link(Port("server", f"eth{k}"), Port(f"gw{k}", "lan")) for k in range(host.uplinks)
        ),
        addresses=tuple(addresses),
        routes=tuple(routes),
    )


_built = 0


@contextmanager
def built(host: Host) -> Iterator[str]:
    """The host in throwaway namespaces, with a state directory of its own; the server's
    namespace. Everything is removed at the end, also when a check fails."""
    global _built
    _built += 1
    saved = os.environ.get("MULTIHOME_STATE_DIR")
    with tempfile.TemporaryDirectory(prefix="mhprop-") as state:
        os.environ["MULTIHOME_STATE_DIR"] = state
        network = Network(topology(host), prefix=f"mhp{os.getpid() % 10000}x{_built}-")
        try:
            with network:  # removes the namespaces on the way out
                yield network.ns("server")
        finally:
            if saved is None:
                del os.environ["MULTIHOME_STATE_DIR"]
            else:
                os.environ["MULTIHOME_STATE_DIR"] = saved


def own_tables(ns: str, version: int) -> dict[str, str]:
    """The table of each uplink's device: where multihome's own default route by it lives."""
    routes = ip_json(ns, f"-{version}", "route", "show", "table", "all", "proto", "77")
    return {r["dev"]: str(r.get("table", "main")) for r in routes if r["dst"] == "default"}


@settings(max_examples=20, deadline=None)
@given(hosts())
def test_every_address_routes_by_its_own_uplink(host: Host) -> None:
    with built(host) as server:
        multihome(server, "apply")
        rules = len(owned_rules(server, "-4")) + len(owned_rules(server, "-6"))
        assert rules <= rule_bound(host), (rules, rule_bound(host))
        for family in host.families:
            tables = own_tables(server, family.version)
            if host.uplinks > 1:  # one uplink needs no policy: main routes it already
                assert set(tables) == {f"eth{k}" for k in range(host.uplinks)}, tables
            for k, address in family.addresses:
                source = address.split("/")[0]
                dev = f"eth{k}"
                for dst in (OFF_LINK[family.version], family.gateways[k], family.neighbour(k)):
                    route = ip_json(server, "route", "get", dst, "from", source)[0]
                    where = (family.kind, source, dst, route)
                    assert route["dev"] == dev, where
                    on_link = dst != OFF_LINK[family.version]
                    # alone on its subnet, an uplink's on-link replies take main's route there
                    table = "main" if on_link and family.kind == "own" else tables.get(dev, "main")
                    assert str(route.get("table", "main")) == table, where
                    if not on_link:
                        assert route.get("gateway") == family.gateways[k], where
                    else:
                        assert "gateway" not in route, where


# -- the nft form (sourcemarks.py): interleaved addresses past the threshold -------------------


@st.composite
def interleaved_hosts(draw: st.DrawFn) -> Host:
    """Addresses of one subnet alternating over 2-4 uplinks, more per uplink than
    sourcemarks.THRESHOLD prefixes: each uplink is selected by an nft set."""
    uplinks = draw(st.integers(2, 4))
    versions = draw(st.sampled_from([(4,), (6,), (4, 6)]))
    families = []
    for version in versions:
        per = draw(st.integers(THRESHOLD + 1, THRESHOLD + 8))
        network = ipaddress.ip_network(_subnet(version, 100))
        start = draw(st.integers(2, 250 - per * uplinks if version == 4 else 0xF000))
        prefix = f"/{network.prefixlen}"
        addresses = tuple(
            (i % uplinks, str(network.network_address + start + i) + prefix)
            for i in range(per * uplinks)
        )
        gateways = tuple(str(network.network_address + 1) for _ in range(uplinks))
        families.append(Subnets(version, "interleaved", addresses, gateways))
    return Host(uplinks, tuple(families))


def tx_packets(ns: str) -> dict[str, int]:
    return {link["ifname"]: link["stats64"]["tx"]["packets"] for link in ip_json(ns, "-s", "link")}


def send_udp(ns: str, source: str, dst: str, count: int) -> None:
    """`count` UDP datagrams from `source` (a socket bound to it, not connected: a route
    lookup per packet, as DNS and QUIC servers send)."""
    code = (
        "import socket, sys\n"
        "family = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET\n"
        "s = socket.socket(family, socket.SOCK_DGRAM)\n"
        "s.bind((sys.argv[1], 0))\n"
        "for _ in range(int(sys.argv[3])):\n"
        "    s.sendto(b'x', (sys.argv[2], 9))\n"
    )
    subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code, source, dst, str(count)],
        check=True,
        timeout=30,
    )


@settings(max_examples=6, deadline=None)
@given(interleaved_hosts())
def test_interleaved_hosts_in_the_nft_form_route_every_address_by_its_uplink(host: Host) -> None:
    """Each address routes by its uplink's device and table once its packets carry the mark
    the nft set gives them (`ip route get ... from ... mark ...`); real packets from them
    leave by that uplink; multihome writes two fwmark rules per uplink and family, and main's
    suppress rule, whatever the number of addresses."""
    with built(host) as server:
        multihome(server, "apply")
        rules = owned_rules(server, "-4") + owned_rules(server, "-6")
        bound = sum(1 + 2 * host.uplinks for _ in host.families)
        assert len(rules) <= bound, (len(rules), bound)
        assert all(r.get("src", "all") == "all" for r in rules), rules  # no source rule
        sets = {s["name"]: set(s.get("elem", ())) for s in nft_sets(server)}
        for family in host.families:
            tables = own_tables(server, family.version)
            v = family.version
            for k, address in family.addresses:
                source, dev = address.split("/")[0], f"eth{k}"
                uplink_id = int(tables[dev]) - 100 + 1
                assert source in sets[f"src{v}_{uplink_id}"], (source, sorted(sets))
                mark = hex(uplink_id << 24)
                for dst in (OFF_LINK[v], family.gateways[k], family.neighbour(k)):
                    route = ip_json(server, "route", "get", dst, "from", source, "mark", mark)[0]
                    where = (source, dst, route)
                    assert route["dev"] == dev and str(route.get("table")) == tables[dev], where
            # real packets: the last address of each uplink, 50 datagrams beyond the gateway
            for k in range(host.uplinks):
                source = [a for owner, a in family.addresses if owner == k][-1].split("/")[0]
                before = tx_packets(server)
                send_udp(server, source, OFF_LINK[v], 50)
                sent = {d: n - before[d] for d, n in tx_packets(server).items() if d in before}
                assert sent[f"eth{k}"] >= 50, (source, sent)
                assert all(n < 10 for d, n in sent.items() if d != f"eth{k}"), (source, sent)


def nft_sets(ns: str) -> list[dict[str, Any]]:
    """multihome's source sets, as `nft -j list ruleset` reports them (the independent
    reader), in its inet table."""
    return [
        item["set"]
        for item in nft_ruleset(ns)
        if "set" in item and item["set"]["table"] == "multihome" and item["set"]["family"] == "inet"
    ]


def nft_ruleset(ns: str) -> list[dict[str, Any]]:
    """`nft -j list ruleset` in the namespace: its items."""
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-j", "list", "ruleset"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    items: list[dict[str, Any]] = json.loads(out)["nftables"]
    return items
