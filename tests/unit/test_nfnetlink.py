"""kernel/nfnetlink.py's reading of nftables notifications, on messages built here as the
kernel lays them out (nlmsghdr, nfgenmsg, attributes); the real kernel's are read in
tests/netns/test_firewall_read.py."""

from __future__ import annotations

import struct

import pytest

from multihome.kernel.nfnetlink import foreign_change

NEWTABLE, NEWCHAIN, NEWRULE, DELRULE, NEWSETELEM, NEWGEN = 0, 3, 6, 8, 12, 15


def attribute(kind: int, value: bytes) -> bytes:
    data = struct.pack("=HH", 4 + len(value), kind) + value
    return data + b"\0" * (-len(data) % 4)


def message(msg: int, *attributes: bytes, family: int = 1) -> bytes:
    body = struct.pack("=BBH", family, 0, 0) + b"".join(attributes)
    return struct.pack("=IHHII", 16 + len(body), 10 << 8 | msg, 0, 0, 0) + body


def table(name: str) -> bytes:
    return attribute(1, name.encode() + b"\0")


def test_changes_of_anothers_table_chain_or_rule_count() -> None:
    for msg in (NEWTABLE, NEWCHAIN, NEWRULE, DELRULE):
        assert foreign_change(message(msg, table("nat")))
        assert not foreign_change(message(msg, table("multihome")))
    # one datagram holds a whole transaction: one foreign message in it is enough
    batch = message(NEWRULE, table("multihome")) + message(NEWRULE, table("filter"))
    assert foreign_change(batch + message(NEWGEN, attribute(1, struct.pack("!I", 7))))


def test_set_elements_and_generations_do_not_count() -> None:
    assert not foreign_change(message(NEWSETELEM, table("fail2ban")))
    assert not foreign_change(message(NEWGEN, attribute(1, struct.pack("!I", 7))))
    assert not foreign_change(message(NEWRULE, attribute(2, b"chain\0")))  # no table named


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\0" * 15,
        struct.pack("=IHHII", 8, 10 << 8 | NEWRULE, 0, 0, 0),  # shorter than its header
        struct.pack("=IHHII", 400, 10 << 8 | NEWRULE, 0, 0, 0) + bytes(4),  # past the end
        message(NEWRULE, struct.pack("=HH", 2, 1)),  # an attribute shorter than its header
        message(NEWRULE, struct.pack("=HH", 200, 1) + b"nat\0"),  # past the message
    ],
)
def test_malformed_datagrams_are_no_change_and_no_error(data: bytes) -> None:
    assert foreign_change(data) is False
