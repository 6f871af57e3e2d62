"""The lean codec: what it encodes decodes to the same object (no kernel needed)."""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from multihome.core.model import Family, Route, Rule
from multihome.kernel import netlink


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


# -- the learnt layouts of rule messages (netlink._RuleShape) -------------------------------

_SOURCES = st.one_of(
    st.none(),
    st.builds(
        lambda v, n: ipaddress.IPv4Network((v, n), strict=False),
        st.integers(0, 2**32 - 1),
        st.integers(0, 32),
    ),
)
_RULES = st.builds(
    Rule,
    st.just(Family.INET),
    st.integers(0, 2**32 - 1),
    st.integers(1, 2**32 - 1),
    _SOURCES,
    st.sampled_from([None, 0, 8]),
    st.integers(0, 255),
    st.just(False),
    st.one_of(st.none(), st.integers(0, 2**32 - 1)),
    st.sampled_from([None, 0xFF, 0xFFFFFFFF]),
)


def _message(rule: Rule, extra: bytes = b"", flags: int = 0) -> memoryview:
    """A rule message as encode_rule makes it, with attributes appended and header flags."""
    raw = bytearray(netlink.encode_rule(netlink.RTM_NEWRULE, rule) + extra)
    raw[0:4] = len(raw).to_bytes(4, "little")
    raw[16 + 8 : 16 + 12] = flags.to_bytes(4, "little")
    return memoryview(bytes(raw))


@given(st.lists(_RULES, min_size=1, max_size=30), st.randoms(use_true_random=False))
def test_learnt_layouts_decode_as_the_attribute_walk(rules: list[Rule], rnd: Any) -> None:
    netlink._rule_shapes.clear()
    other = netlink._attr(22, b"\x11\x00\x00\x00")  # FRA_IP_PROTO: another selector
    messages = []
    for rule in rules:
        messages.append(_message(rule))
        messages.append(_message(rule, other))  # same attributes and one more
        messages.append(_message(rule, flags=netlink.FIB_RULE_INVERT))  # `not from ...`
    rnd.shuffle(messages)
    for _ in range(2):  # learning, then learnt
        for message in messages:
            walked = netlink._walk_rule(message, 16, len(message))
            assert netlink.decode_rule(message, 16, len(message)) == walked


def test_a_message_of_a_learnt_length_but_other_attributes_is_walked() -> None:
    netlink._rule_shapes.clear()
    src = ipaddress.ip_network("192.0.2.10/32")
    plain = Rule(Family.INET, 1000, 100, src, 0, 77)
    marked = Rule(Family.INET, 1000, 100, None, None, 77, False, 0x100, 0xFFFFFFFF)
    first, second = _message(plain), _message(marked)
    assert len(first) == len(second)  # the same length, other attributes
    assert netlink.decode_rule(first, 16, len(first)) == plain
    assert netlink.decode_rule(second, 16, len(second)) == marked
    assert netlink.decode_rule(first, 16, len(first)) is netlink.decode_rule(first, 16, len(first))
