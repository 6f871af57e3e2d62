"""The lean codec: what it encodes decodes to the same object (no kernel needed)."""

from __future__ import annotations

import ipaddress

from multihome import netlink
from multihome.model import Family, Route, Rule


def _roundtrip_rule(rule: Rule) -> Rule | None:
    message = memoryview(netlink.encode_rule(netlink.RTM_NEWRULE, rule))
    return netlink.decode_rule(message, 16, len(message))


def test_rules_roundtrip_including_suppress_prefixlen() -> None:
    for rule in (
        Rule(Family.INET, 1000, 100, ipaddress.ip_network("192.0.2.10/32"), 0, 77),
        Rule(Family.INET, 1001, 254, None, 0, 77),
        Rule(Family.INET6, 1002, 70000, ipaddress.ip_network("2001:db8::10/128"), None, 77),
    ):
        assert _roundtrip_rule(rule) == rule


def test_suppress_prefixlen_is_really_on_the_wire() -> None:
    rule = Rule(Family.INET, 1000, 100, None, 0, 77)
    message = netlink.encode_rule(netlink.RTM_NEWRULE, rule)
    attrs = dict(netlink._attrs(memoryview(message), 16 + 12, len(message)))
    assert bytes(attrs[netlink.FRA_SUPPRESS_PREFIXLEN]) == b"\0\0\0\0"
    assert bytes(attrs[netlink.FRA_PROTOCOL]) == bytes([77])


def test_routes_roundtrip() -> None:
    names = {7: "eth1"}
    for route in (
        Route(
            Family.INET,
            101,
            ipaddress.ip_network("192.0.2.0/24"),
            dev="eth1",
            prefsrc=ipaddress.ip_address("192.0.2.11"),
            scope=253,
            protocol=77,
        ),
        Route(
            Family.INET,
            101,
            ipaddress.ip_network("0.0.0.0/0"),
            dev="eth1",
            gateway=ipaddress.ip_address("192.0.2.1"),
            protocol=77,
        ),
        Route(
            Family.INET6,
            300,
            ipaddress.ip_network("::/0"),
            dev="eth1",
            gateway=ipaddress.ip_address("fe80::1"),
            protocol=77,
            metric=1024,
        ),
    ):
        message = memoryview(netlink.encode_route(netlink.RTM_NEWROUTE, route, 7))
        assert netlink.decode_route(message, 16, len(message), names) == route


def test_add_requests_are_exclusive_and_acked() -> None:
    rule = Rule(Family.INET, 1000, 100, None, 0, 77)
    flags = netlink._HDR.unpack_from(netlink.encode_rule(netlink.RTM_NEWRULE, rule))[2]
    assert flags & netlink.NLM_F_ACK and flags & netlink.NLM_F_EXCL
    flags = netlink._HDR.unpack_from(netlink.encode_rule(netlink.RTM_DELRULE, rule))[2]
    assert not flags & netlink.NLM_F_CREATE
