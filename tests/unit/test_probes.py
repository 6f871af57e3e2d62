"""The probes' packets (watch/probes.py): echo requests, and which replies count."""

from __future__ import annotations

import struct

from multihome.watch.probes import checksum, echo_request, parse_reply


def ipv4_header(protocol: int = 1, length: int = 20) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, length, 0, 0, 64, protocol, 0, bytes(4), bytes(4))


def test_echo_request_checksums() -> None:
    packet = echo_request(4, 0x1234, 7)
    assert packet[0] == 8 and checksum(packet) == 0  # a valid ICMP checksum sums to zero
    assert struct.unpack_from("!HH", packet, 4) == (0x1234, 7)
    assert echo_request(6, 0x1234, 7)[0] == 128  # the kernel fills in ICMPv6's checksum


def test_echo_reply_ipv4_and_ipv6() -> None:
    reply4 = struct.pack("!BBHHH", 0, 0, 0, 0x1234, 7) + b"multihome"
    assert parse_reply(4, ipv4_header() + reply4) == (True, 0x1234, 7)
    reply6 = struct.pack("!BBHHH", 129, 0, 0, 0x1234, 8) + b"multihome"
    assert parse_reply(6, reply6) == (True, 0x1234, 8)  # IPv6 raw sockets: no IP header


def test_time_exceeded_quoting_our_probe_counts() -> None:
    quoted4 = ipv4_header() + echo_request(4, 0x4321, 9)
    error4 = struct.pack("!BBHI", 11, 0, 0, 0) + quoted4
    assert parse_reply(4, ipv4_header() + error4) == (False, 0x4321, 9)
    quoted6 = bytes(40) + echo_request(6, 0x4321, 10)
    assert parse_reply(6, struct.pack("!BBHI", 3, 0, 0, 0) + quoted6) == (False, 0x4321, 10)


def test_unreachable_and_others_do_not_count() -> None:
    # a gateway with no route answers "unreachable": that is not the second hop
    quoted4 = ipv4_header() + echo_request(4, 0x4321, 9)
    assert parse_reply(4, ipv4_header() + struct.pack("!BBHI", 3, 0, 0, 0) + quoted4) is None
    quoted6 = bytes(40) + echo_request(6, 0x4321, 10)
    assert parse_reply(6, struct.pack("!BBHI", 1, 0, 0, 0) + quoted6) is None
    # an echo request (another host's probe), a truncated error
    assert parse_reply(4, ipv4_header() + echo_request(4, 1, 1)) is None
    assert parse_reply(4, ipv4_header() + struct.pack("!BBHI", 11, 0, 0, 0)) is None
