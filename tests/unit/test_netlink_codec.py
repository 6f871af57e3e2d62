"""The codec and the object mapping without a kernel: what multihome encodes decodes to the
same object, a delete names the whole rule, an attribute multihome does not write makes a
rule foreign, and messages the kernel really sent decode as `ip -j` shows them."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multihome.core.model import Family, NextHop, Ownership, Route, Rule
from multihome.kernel import codec, objects
from multihome.kernel.rulelist import RuleList

from .kernel_captures import CAPTURE, check_addresses, check_routes, check_rules, load


def _roundtrip_rule(rule: Rule) -> Rule | None:
    message = objects.rule_request(codec.RTM_NEWRULE, rule)
    return objects.rule_of(codec.decode_rule(message, 16, len(message)))


def _rule_message(rule: Rule, extra: bytes = b"", header: dict[str, int] | None = None) -> bytes:
    """A rule message as multihome encodes it, with attributes appended and header fields set."""
    message = codec.decode_rule(*_payload(objects.rule_request(codec.RTM_NEWRULE, rule)))
    for name, value in (header or {}).items():
        setattr(message, name, value)
    encoded = codec.encode_rule(codec.RTM_NEWRULE, message) + extra
    return codec.HEADER.pack(len(encoded), codec.RTM_NEWRULE, 0, 0, 0) + encoded[16:]


def _payload(message: bytes) -> tuple[bytes, int, int]:
    return message, codec.HEADER.size, len(message)


RULES = [
    Rule(Family.INET, 1000, 100, ipaddress.ip_network("192.0.2.10/32"), 0, 77),
    Rule(Family.INET, 1001, 254, None, 0, 77),
    Rule(Family.INET, 1002, 100, ipaddress.ip_network("192.0.2.0/24"), None, 77),
    Rule(Family.INET6, 1002, 70000, ipaddress.ip_network("2001:db8::10/128"), None, 77),
    Rule(Family.INET, 1002, 100, None, None, 77, fwmark=0x02000000, fwmask=0x0F000000),
]


@pytest.mark.parametrize("rule", RULES, ids=str)
def test_rules_roundtrip(rule: Rule) -> None:
    assert _roundtrip_rule(rule) == rule


def test_a_delete_names_every_field_of_the_rule() -> None:
    rule = Rule(Family.INET, 1000, 70000, ipaddress.ip_network("192.0.2.10/32"), None, 77)
    message = codec.decode_rule(*_payload(objects.rule_request(codec.RTM_DELRULE, rule)))
    assert (message.family, message.src_len, message.dst_len, message.tos) == (2, 32, 0, 0)
    assert (message.table, message.action, message.flags) == (codec.RT_TABLE_COMPAT, 1, 0)
    assert message.attrs == {
        codec.FRA_PRIORITY: (1000).to_bytes(4, "little"),
        codec.FRA_TABLE: (70000).to_bytes(4, "little"),
        codec.FRA_SUPPRESS_PREFIXLEN: b"\xff\xff\xff\xff",  # none: named as the kernel's -1
        codec.FRA_PROTOCOL: bytes([77]),
        codec.FRA_SRC: bytes([192, 0, 2, 10]),
    }
    marked = RULES[-1]
    attrs = codec.decode_rule(*_payload(objects.rule_request(codec.RTM_DELRULE, marked))).attrs
    assert attrs[codec.FRA_FWMARK] == (0x02000000).to_bytes(4, "little")
    assert attrs[codec.FRA_FWMASK] == (0x0F000000).to_bytes(4, "little")


def test_a_foreign_rule_cannot_be_encoded() -> None:
    foreign = Rule(Family.INET, 1000, 100, None, None, 77, other_selectors=True)
    with pytest.raises(ValueError, match="selectors multihome does not write"):
        objects.rule_request(codec.RTM_DELRULE, foreign)


def test_requests_flags() -> None:
    rule = RULES[0]
    flags = codec.HEADER.unpack_from(objects.rule_request(codec.RTM_NEWRULE, rule))[2]
    assert flags & codec.NLM_F_ACK and flags & codec.NLM_F_EXCL and flags & codec.NLM_F_CREATE
    flags = codec.HEADER.unpack_from(objects.rule_request(codec.RTM_DELRULE, rule))[2]
    assert flags & codec.NLM_F_ACK and not flags & codec.NLM_F_CREATE


# Every rule attribute the kernel had up to 6.18 besides those multihome writes, and one of
# a later kernel (number 30), with a value of its length.
OTHER_ATTRIBUTES = {
    codec.FRA_DST: bytes(4),
    codec.FRA_IIFNAME: b"eth0\0",
    codec.FRA_GOTO: (1010).to_bytes(4, "little"),
    codec.FRA_FLOW: (3).to_bytes(4, "little"),
    codec.FRA_TUN_ID: bytes(8),
    codec.FRA_SUPPRESS_IFGROUP: (5).to_bytes(4, "little"),
    codec.FRA_OIFNAME: b"eth1\0",
    codec.FRA_L3MDEV: b"\x01",
    codec.FRA_UID_RANGE: (100).to_bytes(4, "little") + (200).to_bytes(4, "little"),
    codec.FRA_IP_PROTO: b"\x06",
    codec.FRA_SPORT_RANGE: (1000).to_bytes(2, "little") + (2000).to_bytes(2, "little"),
    codec.FRA_DPORT_RANGE: (53).to_bytes(2, "little") * 2,
    codec.FRA_DSCP: b"\x08",
    30: b"\x01\x02\x03\x04",
}


@pytest.mark.parametrize("kind", sorted(OTHER_ATTRIBUTES))
def test_an_attribute_multihome_does_not_write_makes_the_rule_foreign(kind: int) -> None:
    rule = RULES[0]
    assert Ownership().owns_rule(rule)
    message = _rule_message(rule, codec.attr(kind, OTHER_ATTRIBUTES[kind]))
    decoded = codec.decode_rule(*_payload(message))
    assert decoded.attrs[kind] == OTHER_ATTRIBUTES[kind]  # kept by the walk
    found = objects.rule_of(decoded)
    assert found is not None and found.other_selectors and found != rule
    assert not Ownership().owns_rule(found)


@pytest.mark.parametrize(
    "header", [{"tos": 0x10}, {"dst_len": 8}, {"action": 6}, {"flags": 0x8}], ids=str
)
def test_a_header_field_multihome_does_not_write_makes_the_rule_foreign(
    header: dict[str, int],
) -> None:
    found = objects.rule_of(codec.decode_rule(*_payload(_rule_message(RULES[0], header=header))))
    assert found is not None and found.other_selectors and not Ownership().owns_rule(found)


def test_an_inverted_rule_is_foreign_and_prints_with_not() -> None:
    message = _rule_message(RULES[0], header={"flags": codec.FIB_RULE_INVERT})
    found = objects.rule_of(codec.decode_rule(*_payload(message)))
    assert found is not None and found.invert and not Ownership().owns_rule(found)
    assert (
        found.ip_args()
        == "pref 1000 not from 192.0.2.10/32 lookup 100 suppress_prefixlength 0 proto 77"
    )


def test_routes_roundtrip() -> None:
    names = {7: "eth1", 8: "eth2"}
    index = {"eth1": 7, "eth2": 8}
    net, address = ipaddress.ip_network, ipaddress.ip_address
    for route in (
        Route(
            Family.INET,
            101,
            net("192.0.2.0/24"),
            dev="eth1",
            prefsrc=address("192.0.2.11"),
            scope=253,
            protocol=77,
        ),
        Route(
            Family.INET,
            101,
            net("0.0.0.0/0"),
            dev="eth1",
            gateway=address("192.0.2.1"),
            protocol=77,
        ),
        Route(
            Family.INET6,
            300,
            net("::/0"),
            dev="eth1",
            gateway=address("fe80::1"),
            protocol=77,
            metric=1024,
        ),
        Route(
            Family.INET,
            199,
            net("0.0.0.0/0"),
            protocol=77,
            nexthops=(
                NextHop("eth1", address("192.0.2.1"), 1),
                NextHop("eth2", address("198.51.100.1"), 3),
            ),
        ),
    ):
        message = objects.route_request(codec.RTM_NEWROUTE, route, index)
        assert objects.route_of(codec.decode_route(*_payload(message)), names) == route


def test_a_route_lookup_asks_which_table_answered() -> None:
    request = objects.lookup_request(
        ipaddress.ip_address("198.51.100.7"), ipaddress.ip_address("192.0.2.10")
    )
    message = codec.decode_route(*_payload(request))
    assert message.flags & codec.RTM_F_LOOKUP_TABLE
    assert (message.dst_len, message.src_len) == (32, 32)


def test_a_malformed_attribute_is_an_error_not_a_wrong_object() -> None:
    message = bytearray(objects.rule_request(codec.RTM_NEWRULE, RULES[0]))
    message[16 + 12] = 200  # the first attribute's length, past the end
    with pytest.raises(ValueError, match="malformed"):
        codec.decode_rule(*_payload(bytes(message)))


# -- what a 6.18 kernel sent (tests/unit/kernel_captures.json, recorded by
# tests/netns/test_kernel_captures.py), against `ip -j` of the same namespace --------------


def test_rules_the_kernel_sent_decode_as_ip_shows_them() -> None:
    check_rules(load(CAPTURE))


def test_routes_the_kernel_sent_decode_as_ip_shows_them() -> None:
    check_routes(load(CAPTURE))


def test_addresses_the_kernel_sent_decode_as_ip_shows_them() -> None:
    check_addresses(load(CAPTURE))


@settings(max_examples=200)
@given(
    st.sampled_from([Family.INET, Family.INET6]),
    st.integers(0, 2**32 - 1),
    st.integers(1, 2**32 - 1),
    st.one_of(st.none(), st.integers(0, 128)),
    st.integers(0, 255),
    st.one_of(st.none(), st.integers(0, 2**128 - 1)),
    st.sampled_from([codec.RTM_NEWRULE, codec.RTM_DELRULE]),
)
def test_a_source_rule_request_is_the_message_of_every_field(
    family: Family,
    priority: int,
    table: int,
    suppress: int | None,
    protocol: int,
    value: int | None,
    kind: int,
) -> None:
    src = None
    if value is not None:
        bits = 32 if family == Family.INET else 128
        src = ipaddress.ip_network((value % 2**bits, bits))
    rule = Rule(family, priority, table, src, suppress, protocol)
    encoded = objects.rule_request(kind, rule)
    assert encoded == codec.encode_rule(kind, objects.rule_message(rule))
    assert objects.rule_of(codec.decode_rule(*_payload(encoded))) == rule


def test_a_delete_takes_the_first_rule_that_matches_what_it_names() -> None:
    ours = RULES[0]  # pref 1000 from 192.0.2.10/32 lookup 100 suppress_prefixlength 0 proto 77
    family, src = ours.family, ours.src
    ipproto = Rule(family, 1000, 100, src, 0, 77, other_selectors=True)
    inverted = Rule(family, 1000, 100, src, 0, 77, other_selectors=True, invert=True)
    other_table = Rule(family, 1000, 101, src, 0, 77)
    no_suppress = Rule(family, 1000, 100, src, None, 77, other_selectors=True)
    for ahead in (ipproto, inverted):  # matches every field the request names
        assert RuleList([ahead, ours]).target(ours) is ahead
        assert RuleList([ours, ahead]).target(ours) is ours
    for ahead in (other_table, no_suppress):  # differs in a field the request names
        assert RuleList([ahead, ours]).target(ours) is ours
    rules = RuleList([ipproto])
    rules.add(ours)  # an added rule goes behind the rules of its priority
    assert rules.delete(ours) is ipproto and rules.target(ours) is ours
    # a request without a source matches a rule of any source
    main = Rule(Family.INET, 1000, 100, None, 0, 77)
    assert RuleList([ours, main]).target(main) is ours
