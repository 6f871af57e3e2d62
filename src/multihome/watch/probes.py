"""ICMP and ICMPv6 echo probes, each from one uplink's own address and device, so that it
takes the uplink's own table and tells whether the path behind that uplink's gateway works.

An IPv6 gateway is often link-local (learnt from a router advertisement): such a target is
sent to with the uplink's interface index as its scope id, and the socket is bound to the
uplink's global address and device, so the reply comes back to that uplink.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct

from multihome.core.model import IPAddress
from multihome.core.records import record

ICMP_ECHO, ICMP_ECHOREPLY = 8, 0
ICMPV6_ECHO, ICMPV6_ECHOREPLY = 128, 129
SO_BINDTODEVICE = 25
ICMP6_FILTER = 1  # <netinet/icmp6.h>: a bitmap of ICMPv6 types to block, at level IPPROTO_ICMPV6

# family version -> (address family, protocol, echo request, echo reply)
KINDS = {
    4: (socket.AF_INET, socket.IPPROTO_ICMP, ICMP_ECHO, ICMP_ECHOREPLY),
    6: (socket.AF_INET6, socket.IPPROTO_ICMPV6, ICMPV6_ECHO, ICMPV6_ECHOREPLY),
}


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    result: int = ~total & 0xFFFF
    return result


def _only_echo_replies() -> bytes:
    """An ICMP6_FILTER that passes echo replies only (a set bit blocks that type)."""
    words = [0xFFFFFFFF] * 8
    words[ICMPV6_ECHOREPLY >> 5] &= ~(1 << (ICMPV6_ECHOREPLY & 31))
    return struct.pack("=8I", *words)


@record
class Probe:
    """Echo requests from one uplink in one family: its socket, source, targets and the
    round in flight."""

    uplink: str
    source: IPAddress
    targets: tuple[IPAddress, ...]
    sock: socket.socket
    ident: int
    scope: int = 0  # the uplink's interface index, for link-local IPv6 targets
    seq: int = 0
    sent_at: float = 0.0
    answered: float | None = None  # RTT of the first answer of this round

    @property
    def version(self) -> int:
        return self.source.version

    @classmethod
    def open(
        cls,
        uplink: str,
        source: IPAddress,
        targets: tuple[IPAddress, ...],
        ident: int,
    ) -> Probe:
        family, protocol, _, _ = KINDS[source.version]
        sock = socket.socket(family, socket.SOCK_RAW, protocol)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, uplink.encode())
            scope = 0
            if source.version == 6:
                # the kernel fills in the ICMPv6 checksum (it covers the pseudo-header)
                sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, _only_echo_replies())
                scope = socket.if_nametoindex(uplink)
                sock.bind((str(source), 0, 0, scope if source.is_link_local else 0))
            else:
                sock.bind((str(source), 0))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return cls(uplink, source, targets, sock, ident, scope)

    def _packet(self) -> bytes:
        _, _, echo, _ = KINDS[self.version]
        payload = b"multihome"
        if self.version == 6:
            return struct.pack("!BBHHH", echo, 0, 0, self.ident, self.seq) + payload
        header = struct.pack("!BBHHH", echo, 0, 0, self.ident, self.seq)
        return struct.pack("!BBHHH", echo, 0, checksum(header + payload), self.ident, self.seq) + (
            payload
        )

    def _address(self, target: IPAddress) -> tuple[str, int] | tuple[str, int, int, int]:
        if target.version == 6:
            return (str(target), 0, 0, self.scope if target.is_link_local else 0)
        return (str(target), 0)

    def send(self, now: float) -> None:
        self.seq = (self.seq + 1) & 0xFFFF
        self.sent_at, self.answered = now, None
        packet = self._packet()
        for target in self.targets:
            with contextlib.suppress(OSError):  # unreachable now: the round will fail
                self.sock.sendto(packet, self._address(target))

    def receive(self, now: float) -> None:
        _, _, _, reply = KINDS[self.version]
        while True:
            try:
                data, address = self.sock.recvfrom(2048)
            except BlockingIOError:
                return
            # IPv4 raw sockets deliver the IP header, IPv6 ones do not
            offset = (data[0] & 0x0F) * 4 if self.version == 4 else 0
            if len(data) < offset + 8:
                continue
            kind, _, _, ident, seq = struct.unpack_from("!BBHHH", data, offset)
            sender = ipaddress.ip_address(str(address[0]).partition("%")[0])
            if (
                kind == reply
                and ident == self.ident
                and seq == self.seq
                and sender in self.targets
                and self.answered is None
            ):
                self.answered = now - self.sent_at

    def close(self) -> None:
        self.sock.close()
