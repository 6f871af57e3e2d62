"""ICMP echo probes, each from one uplink's own address and device, so that it takes the
uplink's own table and tells whether the path behind that uplink's gateway works."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
from dataclasses import dataclass

ICMP_ECHO, ICMP_ECHOREPLY = 8, 0
SO_BINDTODEVICE = 25


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    result: int = ~total & 0xFFFF
    return result


@dataclass
class Probe:
    """ICMP echo from one uplink: its socket, source, targets and the round in flight."""

    uplink: str
    source: ipaddress.IPv4Address
    targets: tuple[ipaddress.IPv4Address, ...]
    sock: socket.socket
    ident: int
    seq: int = 0
    sent_at: float = 0.0
    answered: float | None = None  # RTT of the first answer of this round

    @classmethod
    def open(
        cls,
        uplink: str,
        source: ipaddress.IPv4Address,
        targets: tuple[ipaddress.IPv4Address, ...],
        ident: int,
    ) -> Probe:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, uplink.encode())
        sock.bind((str(source), 0))
        sock.setblocking(False)
        return cls(uplink, source, targets, sock, ident)

    def send(self, now: float) -> None:
        self.seq = (self.seq + 1) & 0xFFFF
        self.sent_at, self.answered = now, None
        header = struct.pack("!BBHHH", ICMP_ECHO, 0, 0, self.ident, self.seq)
        payload = b"multihome"
        packet = (
            struct.pack("!BBHHH", ICMP_ECHO, 0, checksum(header + payload), self.ident, self.seq)
            + payload
        )
        for target in self.targets:
            with contextlib.suppress(OSError):  # unreachable now: the round will fail
                self.sock.sendto(packet, (str(target), 0))

    def receive(self, now: float) -> None:
        while True:
            try:
                data, (sender, _) = self.sock.recvfrom(2048)
            except BlockingIOError:
                return
            header_length = (data[0] & 0x0F) * 4
            kind, _, _, ident, seq = struct.unpack_from("!BBHHH", data, header_length)
            if (
                kind == ICMP_ECHOREPLY
                and ident == self.ident
                and seq == self.seq
                and ipaddress.ip_address(sender) in self.targets
                and self.answered is None
            ):
                self.answered = now - self.sent_at

    def close(self) -> None:
        self.sock.close()
