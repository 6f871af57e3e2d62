"""The probes' packets (watch/probes.py): echo requests, and which replies count."""

from __future__ import annotations

import ipaddress
import os
import struct
import time

import pytest

from multihome.watch.probes import Probe, ProbeKind, checksum, echo_request, parse_reply


def ipv4_header(protocol: int = 1, length: int = 20) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, length, 0, 0, 64, protocol, 0, bytes(4), bytes(4))


OURS = b"multihome" + bytes(range(8))  # the payload with a probe's token


def test_echo_request_checksums() -> None:
    packet = echo_request(4, 0x1234, 7, OURS)
    assert packet[0] == 8 and checksum(packet) == 0  # a valid ICMP checksum sums to zero
    assert struct.unpack_from("!HH", packet, 4) == (0x1234, 7) and packet[8:] == OURS
    assert echo_request(6, 0x1234, 7, OURS)[0] == 128  # the kernel fills in ICMPv6's checksum


def test_echo_reply_ipv4_and_ipv6() -> None:
    reply4 = struct.pack("!BBHHH", 0, 0, 0, 0x1234, 7) + OURS
    assert parse_reply(4, ipv4_header() + reply4, OURS) == (True, 0x1234, 7)
    reply6 = struct.pack("!BBHHH", 129, 0, 0, 0x1234, 8) + OURS
    assert parse_reply(6, reply6, OURS) == (True, 0x1234, 8)  # IPv6 raw sockets: no IP header


def test_a_reply_without_the_probes_token_does_not_count() -> None:
    """A peer that cannot see the requests but guesses ident and seq (before, the pid's and
    counting from 1) must not keep a dead uplink up: the payload's token must come back."""
    for forged in (b"multihome", b"multihome" + bytes(8), OURS[:-1], OURS + b"\0", b""):
        reply4 = struct.pack("!BBHHH", 0, 0, 0, 0x1234, 7) + forged
        assert parse_reply(4, ipv4_header() + reply4, OURS) is None, forged
        reply6 = struct.pack("!BBHHH", 129, 0, 0, 0x1234, 8) + forged
        assert parse_reply(6, reply6, OURS) is None, forged
    # a time exceeded that quotes another payload (another host's probe) does not count
    other = ipv4_header() + echo_request(4, 0x4321, 9, b"multihome" + bytes(8))
    assert parse_reply(4, ipv4_header() + struct.pack("!BBHI", 11, 0, 0, 0) + other, OURS) is None


def test_probes_draw_their_ident_token_and_each_rounds_seq_at_random() -> None:
    """Probes of the same process differ in all three (before: pid * 31 + index, seq from
    1 up, and rediscovery at every 60th); a real echo reply, from the kernel on loopback,
    still counts."""
    if os.geteuid() != 0:
        pytest.skip("raw sockets need root")  # (CI runs as root)
    lo = ipaddress.ip_address("127.0.0.1")
    opened = [Probe.open("lo", ProbeKind.GATEWAY, lo, (lo,), 0.1) for _ in range(4)]
    try:
        assert len({p.ident for p in opened}) > 1
        for p in opened:
            p.send(0.0)
        assert len({p.seq for p in opened}) > 1
        assert len({p.payload for p in opened}) == 4
        assert all(p.payload.startswith(b"multihome") and len(p.payload) == 17 for p in opened)
        # and the real kernel's echo reply to one of them counts
        probe = opened[0]
        probe.send(0.0)
        assert len(probe.rounds) == 2 and probe.sent == 2  # a new seq for each round
        deadline = time.monotonic() + 2
        while not probe.rounds[probe.seq].answers and time.monotonic() < deadline:
            time.sleep(0.01)
            probe.receive()
        assert probe.rounds[probe.seq].answers
    finally:
        for p in opened:
            p.close()


def test_time_exceeded_quoting_our_probe_counts() -> None:
    quoted4 = ipv4_header() + echo_request(4, 0x4321, 9, OURS)
    error4 = struct.pack("!BBHI", 11, 0, 0, 0) + quoted4
    assert parse_reply(4, ipv4_header() + error4, OURS) == (False, 0x4321, 9)
    quoted6 = bytes(40) + echo_request(6, 0x4321, 10, OURS)
    assert parse_reply(6, struct.pack("!BBHI", 3, 0, 0, 0) + quoted6, OURS) == (False, 0x4321, 10)
    # a router that quotes only the first 8 bytes of the request (RFC 792's least)
    short = ipv4_header() + echo_request(4, 0x4321, 9, OURS)[:8]
    assert parse_reply(4, ipv4_header() + struct.pack("!BBHI", 11, 0, 0, 0) + short, OURS) == (
        False,
        0x4321,
        9,
    )


def test_unreachable_and_others_do_not_count() -> None:
    # a gateway with no route answers "unreachable": that is not the second hop
    quoted4 = ipv4_header() + echo_request(4, 0x4321, 9, OURS)
    assert parse_reply(4, ipv4_header() + struct.pack("!BBHI", 3, 0, 0, 0) + quoted4, OURS) is None
    quoted6 = bytes(40) + echo_request(6, 0x4321, 10, OURS)
    assert parse_reply(6, struct.pack("!BBHI", 1, 0, 0, 0) + quoted6, OURS) is None
    # an echo request (another host's probe), a truncated error
    assert parse_reply(4, ipv4_header() + echo_request(4, 1, 1, OURS), OURS) is None
    assert parse_reply(4, ipv4_header() + struct.pack("!BBHI", 11, 0, 0, 0), OURS) is None
