"""addresses.py: objects made from the integers netlink carries are the objects ipaddress
makes from their text."""

from __future__ import annotations

import copy
import ipaddress
import pickle

from hypothesis import given
from hypothesis import strategies as st

from multihome.core import addresses, model
from multihome.core.model import Family, Rule
from multihome.kernel import codec, objects

V4 = st.integers(0, (1 << 32) - 1)
V6 = st.one_of(
    st.integers(0, (1 << 128) - 1),
    # runs of zeros, where `::` compression and the IPv4-mapped form apply
    st.sampled_from([0, 1, 0x20010DB8 << 96, 0x20010DB8 << 96 | 1, 0xFFFF << 32 | 0xC0000201]),
    st.integers(0, 0xFFFF).map(lambda x: 0xFE80 << 112 | x),
)


def _alike(mine: object, theirs: object) -> None:
    assert type(mine) is type(theirs)
    assert mine == theirs and theirs == mine and hash(mine) == hash(theirs)
    assert str(mine) == str(theirs) and repr(mine) == repr(theirs)
    assert not (mine < theirs) and not (theirs < mine)  # type: ignore[operator]
    for name in ("version", "max_prefixlen", "is_link_local", "is_private", "is_global"):
        assert getattr(mine, name) == getattr(theirs, name), name
    twin = pickle.loads(pickle.dumps(mine))
    assert twin == theirs and copy.deepcopy(mine) == theirs


def _check(version: int, value: int, prefixlen: int) -> None:
    cls = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    _alike(addresses.address_of(version, value), cls(value))
    net_cls = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
    network, reference = (
        addresses.network_of(version, value, prefixlen),
        net_cls((value, prefixlen), strict=False),
    )
    _alike(network, reference)
    assert network.with_prefixlen == reference.with_prefixlen
    assert network.netmask == reference.netmask and network.hostmask == reference.hostmask
    assert network.broadcast_address == reference.broadcast_address
    assert network.prefixlen == reference.prefixlen
    if prefixlen >= network.max_prefixlen - 1:
        assert list(network.hosts()) == list(reference.hosts())
    if_cls = ipaddress.IPv4Interface if version == 4 else ipaddress.IPv6Interface
    interface, expected = (
        addresses.interface_of(version, value, prefixlen),
        if_cls((value, prefixlen)),
    )
    _alike(interface, expected)
    assert interface.ip == expected.ip and type(interface.ip) is type(expected.ip)
    _alike(interface.network, expected.network)
    assert interface.with_prefixlen == expected.with_prefixlen
    assert interface.netmask == expected.netmask and interface.hostmask == expected.hostmask


@given(V4, st.integers(0, 32))
def test_ipv4_objects_are_ipaddress_objects(value: int, prefixlen: int) -> None:
    _check(4, value, prefixlen)


@given(V6, st.integers(0, 128))
def test_ipv6_objects_are_ipaddress_objects(value: int, prefixlen: int) -> None:
    _check(6, value, prefixlen)


def test_ipv6_text_compresses_zeros_as_ipaddress_does() -> None:
    for text in ("2001:db8::1", "::", "::1", "fe80::1", "2001:db8:0:1::", "::ffff:192.0.2.1"):
        value = int(ipaddress.IPv6Address(text))
        assert str(addresses.address_of(6, value)) == str(ipaddress.IPv6Address(text))
        assert str(addresses.interface_of(6, value, 64)) == f"{ipaddress.IPv6Address(text)}/64"


def test_sorting_mixed_objects_matches_ipaddress() -> None:
    values = [(4, 0xC000020A, 24), (4, 0xC0000201, 32), (4, 0xC000020A, 25), (4, 0, 0)]
    mine = sorted(addresses.interface_of(*v) for v in values)
    theirs = sorted(ipaddress.IPv4Interface((v[1], v[2])) for v in values)
    assert [str(m) for m in mine] == [str(t) for t in theirs]
    nets = sorted(addresses.network_of(*v) for v in values)
    reference = sorted(ipaddress.IPv4Network((v[1], v[2]), strict=False) for v in values)
    assert [str(n) for n in nets] == [str(n) for n in reference]


def test_a_rule_source_with_host_bits_is_a_foreign_rule() -> None:
    # `ip rule add from 10.0.0.1/8` is kept by the kernel as given; reading it used to raise
    # ValueError ("has host bits set") and stop every command on such a host. Read as its
    # network it could not be deleted (the kernel compares the source as given): it is
    # foreign.
    rule = Rule(Family.INET, 1000, 100, ipaddress.ip_network("10.0.0.0/8"), None, 77)
    plain = objects.rule_request(codec.RTM_NEWRULE, rule)
    message = bytearray(plain)
    at = bytes(message).index(bytes([10, 0, 0, 0]))
    message[at + 3] = 1
    assert objects.rule_of(codec.decode_rule(plain, 16, len(plain))) == rule
    decoded = objects.rule_of(codec.decode_rule(bytes(message), 16, len(message)))
    assert decoded is not None and decoded.src == ipaddress.ip_network("10.0.0.0/8")
    assert decoded.other_selectors and not model.Ownership().owns_rule(decoded)
    assert model.network_from(bytes([10, 0, 0, 1]), 8) == ipaddress.ip_network("10.0.0.0/8")
