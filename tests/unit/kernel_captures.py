"""Messages a real kernel sent, with `ip -j`'s view of the same namespace: recorded in a
network namespace by tests/netns/test_kernel_captures.py (which also checks them live), kept
in kernel_captures.json so that the codec is checked against them without root."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from typing import Any

from multihome.core.model import Family, NextHop, Route, Rule
from multihome.kernel import codec, objects
from multihome.kernel.transport import RtnlSocket

CAPTURE = os.path.join(os.path.dirname(__file__), "kernel_captures.json")
Capture = dict[str, Any]

# What the namespace holds besides its links' own addresses and routes (`ip` arguments):
# multihome's kinds of rules and routes, and foreign ones with every kind of selector.
SETUP = [
    "link add v0 type veth peer name v1",
    "link set v0 up",
    "link set v1 up",
    "link set lo up",
    "addr add 192.0.2.10/24 dev v0",
    "addr add 192.0.2.11/24 dev v0",
    "addr add 198.51.100.10/24 dev v1",
    "-6 addr add 2001:db8::10/64 dev v0 nodad",
    # routes before rules: a gateway is checked by a lookup, which the rules below would send
    # to a blackhole
    "route add default via 192.0.2.1 dev v0 table 100 proto 77",
    "route add 192.0.2.0/24 dev v0 table 100 scope link src 192.0.2.10 proto 77",
    "route add 203.0.113.0/24 table 199 proto 77"
    " nexthop via 192.0.2.1 dev v0 weight 1 nexthop via 198.51.100.1 dev v1 weight 3",
    "route add blackhole 10.9.0.0/16 table 70000",
    "route add 10.10.0.0/16 via 192.0.2.1 dev v0 src 192.0.2.10 metric 50",
    "-6 route add default via fe80::1 dev v0 table 100 metric 1024 proto 77",
    "rule add pref 1000 from 192.0.2.10 lookup 100 suppress_prefixlength 0 proto 77",
    "rule add pref 1000 from 192.0.2.10 ipproto tcp dport 53 lookup 100 proto 77",
    "rule add pref 1001 not from 192.0.2.11 lookup 100 proto 77",
    "rule add pref 1002 from 10.0.0.0/8 uidrange 100-200 lookup 100",
    "rule add pref 1002 fwmark 0x100/0xff00 lookup 70000 proto 77",
    "rule add pref 1003 from 192.0.2.12 tos 0x10 lookup 100",
    "rule add pref 1004 iif v0 oif v1 lookup main",
    "rule add pref 1005 from 10.1.0.0/16 to 10.2.0.0/16 sport 1000-2000 lookup 100",
    "rule add pref 1006 goto 1010",
    "rule add pref 1007 l3mdev",
    "rule add pref 1008 from 10.0.0.1/8 lookup 100",
    "rule add pref 1009 fwmark 0x5 lookup 100 realms 3",
    "rule add pref 1010 lookup 100 suppress_ifgroup 5",
    "rule add pref 1011 blackhole",
    "-6 rule add pref 1000 from 2001:db8::10 lookup 100 proto 77",
    "-6 rule add pref 1001 not to 2001:db8::/32 lookup 100",
]
IP_VIEWS = {
    "rules4": ["-4", "rule"],
    "rules6": ["-6", "rule"],
    "routes4": ["-4", "route", "show", "table", "all"],
    "routes6": ["-6", "route", "show", "table", "all"],
    "addresses": ["addr"],
}


def record(netns: str) -> Capture:
    """Dump a namespace's rules, routes and addresses with multihome's transport, each
    message's bytes kept, and `ip -j`'s view of the same."""
    from multihome.kernel import namespace

    capture: Capture = {}
    with namespace.inside(netns):
        rtnl = RtnlSocket()
    with rtnl:
        for name, kind in (
            ("rule", codec.RTM_GETRULE),
            ("route", codec.RTM_GETROUTE),
            ("address", codec.RTM_GETADDR),
        ):
            capture[name] = [
                data[start - codec.HEADER.size : end].hex()
                for _, data, start, end in rtnl.dump(kind)
            ]
    for name, args in IP_VIEWS.items():
        out = subprocess.run(
            ["ip", "-n", netns, "-j", *args], capture_output=True, text=True, check=True
        ).stdout
        capture[name] = json.loads(out)
    capture["names"] = {str(link["ifindex"]): link["ifname"] for link in capture["addresses"]}
    return capture


def load(path: str) -> Capture:
    with open(path, encoding="utf-8") as file:
        capture: Capture = json.load(file)
    return capture


def _decoded(capture: Capture, name: str) -> list[tuple[bytes, int, int]]:
    found = []
    for text in capture[name]:
        raw = bytes.fromhex(text)
        found.append((raw, codec.HEADER.size, len(raw)))
    return found


TABLES = {"local": 255, "main": 254, "default": 253}
PROTOCOLS = {"kernel": 2, "boot": 3, "static": 4, "multihome": 77}
MODELLED = {"priority", "src", "srclen", "table", "protocol", "fwmark", "fwmask"}
MODELLED |= {"suppress_prefixlen"}


def expected_rule(entry: dict[str, Any], family: Family, unnamed: int) -> Rule:
    """The rule `ip -j rule` shows, as multihome's model has it; `unnamed`, the protocol
    when `ip` shows none (it leaves out 0 and the kernel's own, 2)."""
    src = None
    if entry["src"] != "all":
        length = entry.get("srclen", 32 if family == Family.INET else 128)
        src = ipaddress.ip_network(f"{entry['src']}/{length}", strict=False)
    fwmark = int(entry["fwmark"], 16) if "fwmark" in entry else None
    fwmask = int(entry.get("fwmask", "0xffffffff"), 16) if "fwmark" in entry else None
    other = not entry.keys() <= MODELLED or (
        src is not None and str(src.network_address) != entry["src"]  # host bits
    )
    protocol = entry.get("protocol", str(unnamed))
    return Rule(
        family,
        entry["priority"],
        TABLES.get(entry.get("table", ""), 0) or int(entry.get("table", 0)),
        src,
        entry.get("suppress_prefixlen"),
        PROTOCOLS.get(protocol) or int(protocol),
        other,
        fwmark,
        fwmask,
        "not" in entry,
    )


def check_rules(capture: Capture) -> None:
    decoded = [objects.rule_of(codec.decode_rule(*m)) for m in _decoded(capture, "rule")]
    for family, name in ((Family.INET, "rules4"), (Family.INET6, "rules6")):
        mine = [r for r in decoded if r is not None and r.family == family]
        assert len(mine) == len(capture[name])
        for rule, entry in zip(mine, capture[name], strict=True):
            unnamed = rule.protocol if rule.protocol in (0, 2) else 0
            assert rule == expected_rule(entry, family, unnamed), entry


def expected_route(entry: dict[str, Any], family: Family) -> Route:
    """The route `ip -j route` shows, as multihome's model has it."""
    full = 32 if family == Family.INET else 128
    dst = entry["dst"]
    dst = (
        family.any
        if dst == "default"
        else ipaddress.ip_network(dst if "/" in dst else f"{dst}/{full}")
    )
    address = ipaddress.ip_address
    return Route(
        family,
        TABLES.get(entry.get("table", "main")) or int(entry["table"]),
        dst,
        entry.get("dev"),
        address(entry["gateway"]) if "gateway" in entry else None,
        address(entry["prefsrc"]) if "prefsrc" in entry else None,
        {"link": 253, "host": 254}.get(entry.get("scope", ""), 0),
        PROTOCOLS.get(entry.get("protocol", "boot")) or int(entry["protocol"]),
        entry.get("metric", 0),
        {"blackhole": 6, "unreachable": 7, "prohibit": 8}.get(entry.get("type", ""), 1),
        tuple(
            NextHop(hop["dev"], address(hop["gateway"]), hop["weight"])
            for hop in entry.get("nexthops", ())
        ),
    )


def check_routes(capture: Capture) -> None:
    names = {int(index): name for index, name in capture["names"].items()}
    decoded = [objects.route_of(codec.decode_route(*m), names) for m in _decoded(capture, "route")]
    for family, name in ((Family.INET, "routes4"), (Family.INET6, "routes6")):
        mine = [r for r in decoded if r is not None and r.family == family]
        theirs = [
            expected_route(entry, family)
            for entry in capture[name]
            if entry.get("table") != "local"
        ]
        assert mine == theirs


def check_addresses(capture: Capture) -> None:
    decoded = [objects.address_info(*m) for m in _decoded(capture, "address")]
    mine = {
        (a.index, a.version, str(a.address), a.prefixlen, a.scope) for a in decoded if a is not None
    }
    scopes = {"global": 0, "link": 253, "host": 254}
    theirs = {
        (
            link["ifindex"],
            4 if info["family"] == "inet" else 6,
            info["local"],
            info["prefixlen"],
            scopes[info["scope"]],
        )
        for link in capture["addresses"]
        for info in link["addr_info"]
    }
    assert mine == theirs
