"""ICMP and ICMPv6 echo probes, each from one uplink's own address and device, so that it
takes the uplink's own table and tells whether the path behind that uplink works.

Three kinds, one `Probe` each per uplink and IP version:
- the gateway: fast rounds to the uplink's gateway (a dead link or gateway);
- the second hop: a TTL-limited echo request toward `trace` (hop limit 2) expires at the
  router behind the gateway, whose time-exceeded reply names it; later rounds are echo
  requests to that router, still with hop limit 2 (echo replies are not rate-limited the way
  time-exceeded is, about one a second per peer), and every so often, or after lost rounds,
  a TTL-limited one again, to follow a new second hop;
- configured targets (`probe = [...]`): a round is answered when `needed` of them answer
  (mwan3's reliability).
A round's RTT is measured from the send to the kernel's receive timestamp (SO_TIMESTAMPNS),
so the daemon's loop delay is not in it. Rounds overlap: each has its own deadline, and they
finish in the order they were sent.

A reply counts only where it could not be forged by a peer that cannot see the requests:
each probe has a random ident and a random token in its payload, each round a random
sequence number, and an echo reply must carry the payload back whole; a time exceeded, which
may quote only the first 8 bytes of the request (the ident and sequence number: 32 random
bits a round), as much of the payload as it quotes. Which rounds rediscover the second hop
follows from a count of rounds, not from the sequence number.

An IPv6 gateway is often link-local (learnt from a router advertisement): such a target is
sent to with the uplink's interface index as its scope id, and the socket is bound to the
uplink's global address and device, so the reply comes back to that uplink.
"""

from __future__ import annotations

import contextlib
import enum
import ipaddress
import secrets
import socket
import struct
import time

from multihome.core.model import IPAddress
from multihome.core.records import field, record

ICMP_ECHO, ICMP_ECHOREPLY = 8, 0
ICMPV6_ECHO, ICMPV6_ECHOREPLY = 128, 129
SO_BINDTODEVICE = 25
SO_TIMESTAMPNS = 35  # <asm-generic/socket.h> (SO_TIMESTAMPNS_OLD); its cmsg has the same type
ICMP6_FILTER = 1  # <netinet/icmp6.h>: a bitmap of ICMPv6 types to block, at level IPPROTO_ICMPV6
SECOND_HOP_TTL = 2
REDISCOVER_EVERY = 60  # rounds between TTL-limited rounds while the second hop answers
PAYLOAD = b"multihome"  # then the probe's token
TOKEN_BYTES = 8

# family version -> (address family, protocol, echo request, echo reply)
KINDS = {
    4: (socket.AF_INET, socket.IPPROTO_ICMP, ICMP_ECHO, ICMP_ECHOREPLY),
    6: (socket.AF_INET6, socket.IPPROTO_ICMPV6, ICMPV6_ECHO, ICMPV6_ECHOREPLY),
}
# ICMP errors that quote a probe: (version, type) of time exceeded. Only a router past the
# gateway sends it for a probe with hop limit 2 (the gateway forwards it); a destination
# unreachable may be the gateway's own ("no route"), so it does not count.
TIME_EXCEEDED = {4: 11, 6: 3}


class ProbeKind(enum.Enum):
    GATEWAY = "gateway"
    SECOND_HOP = "second hop"
    TARGETS = "targets"


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    result: int = ~total & 0xFFFF
    return result


def _icmp6_filter(*passed: int) -> bytes:
    """An ICMP6_FILTER that passes these types only (a set bit blocks that type)."""
    words = [0xFFFFFFFF] * 8
    for kind in passed:
        words[kind >> 5] &= ~(1 << (kind & 31))
    return struct.pack("=8I", *words)


def echo_request(version: int, ident: int, seq: int, payload: bytes) -> bytes:
    """An ICMP or ICMPv6 echo request (the kernel fills in ICMPv6's checksum: it covers the
    pseudo-header)."""
    _, _, echo, _ = KINDS[version]
    header = struct.pack("!BBHHH", echo, 0, 0, ident, seq)
    if version == 6:
        return header + payload
    return struct.pack("!BBHHH", echo, 0, checksum(header + payload), ident, seq) + payload


def parse_reply(version: int, data: bytes, payload: bytes) -> tuple[bool, int, int] | None:
    """(whether it is an echo reply, ident, seq) of an echo reply that carries `payload`
    back whole, or of a time exceeded that quotes one of our echo requests (and of its
    payload, what it quotes must be ours); None for anything else."""
    _, _, echo, reply = KINDS[version]
    # IPv4 raw sockets deliver the IP header, IPv6 ones do not
    offset = (data[0] & 0x0F) * 4 if version == 4 and data else 0
    if len(data) < offset + 8:
        return None
    kind = data[offset]
    if kind == reply:
        if data[offset + 8 :] != payload:
            return None
        _, _, _, ident, seq = struct.unpack_from("!BBHHH", data, offset)
        return True, ident, seq
    if kind != TIME_EXCEEDED[version]:
        return None
    inner = offset + 8  # the quoted packet: its IP header, then our ICMP header
    if version == 4:
        if len(data) < inner + 1:
            return None
        inner += (data[inner] & 0x0F) * 4
    else:
        inner += 40  # extension headers: none in our probes
    if len(data) < inner + 8 or data[inner] != echo:
        return None
    quoted = data[inner + 8 : inner + 8 + len(payload)]
    if quoted != payload[: len(quoted)]:
        return None
    _, _, _, ident, seq = struct.unpack_from("!BBHHH", data, inner)
    return False, ident, seq


def _timestamp(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack_from("=qq", data)
            return float(seconds + nanoseconds / 1e9)
    return None


@record
class Round:
    seq: int
    deadline: float  # monotonic
    sent: float  # wall clock, as the kernel's receive timestamps
    to: tuple[IPAddress, ...]
    discovery: bool = False  # TTL-limited toward `trace`: a reply from past the gateway counts
    answers: dict[IPAddress, float] = field(default_factory=dict)  # sender -> RTT


@record
class Probe:
    """The rounds of one probe kind, from one uplink in one family: its socket and source,
    its targets and the rounds in flight."""

    uplink: str
    kind: ProbeKind
    source: IPAddress
    targets: tuple[IPAddress, ...]  # the gateway; the configured targets; `trace`
    sock: socket.socket
    ident: int  # random, as are the payload's token and each round's seq
    payload: bytes
    timeout: float
    needed: int = 1  # answers that make a round answered
    gateway: IPAddress | None = None  # the second hop's probe: answers from it do not count
    scope: int = 0  # the uplink's interface index, for link-local IPv6 targets
    seq: int = 0  # the last round's, drawn at random for each
    sent: int = 0  # rounds sent
    hop: IPAddress | None = None  # the second hop, once found
    misses: int = 0  # rounds to the second hop lost in a row
    rounds: dict[int, Round] = field(default_factory=dict)  # in flight, oldest first

    @property
    def version(self) -> int:
        return self.source.version

    @property
    def description(self) -> str:
        if self.kind is ProbeKind.SECOND_HOP:
            return str(self.hop) if self.hop else f"toward {self.targets[0]}"
        if self.kind is ProbeKind.TARGETS and self.needed > 1:
            return f"{self.needed} of {', '.join(map(str, self.targets))}"
        return ", ".join(map(str, self.targets))

    @classmethod
    def open(
        cls,
        uplink: str,
        kind: ProbeKind,
        source: IPAddress,
        targets: tuple[IPAddress, ...],
        timeout: float,
        needed: int = 1,
        gateway: IPAddress | None = None,
    ) -> Probe:
        family, protocol, _, reply = KINDS[source.version]
        sock = socket.socket(family, socket.SOCK_RAW, protocol)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, uplink.encode())
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            scope = 0
            if source.version == 6:
                passed = (reply, TIME_EXCEEDED[6]) if kind is ProbeKind.SECOND_HOP else (reply,)
                sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, _icmp6_filter(*passed))
                scope = socket.if_nametoindex(uplink)
                sock.bind((str(source), 0, 0, scope if source.is_link_local else 0))
            else:
                sock.bind((str(source), 0))
            if kind is ProbeKind.SECOND_HOP and source.version == 6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, SECOND_HOP_TTL)
            elif kind is ProbeKind.SECOND_HOP:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, SECOND_HOP_TTL)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        ident, payload = secrets.randbits(16), PAYLOAD + secrets.token_bytes(TOKEN_BYTES)
        return cls(
            uplink, kind, source, targets, sock, ident, payload, timeout, needed, gateway, scope
        )

    def _address(self, target: IPAddress) -> tuple[str, int] | tuple[str, int, int, int]:
        if target.version == 6:
            return (str(target), 0, 0, self.scope if target.is_link_local else 0)
        return (str(target), 0)

    def send(self, now: float) -> None:
        """Send a round; `now` is the loop's monotonic clock (the round's deadline)."""
        self.seq = secrets.randbits(16)
        while self.seq in self.rounds:  # (one in flight has it)
            self.seq = secrets.randbits(16)
        self.sent += 1
        discovery = self.kind is ProbeKind.SECOND_HOP and (
            self.hop is None or self.misses >= 2 or self.sent % REDISCOVER_EVERY == 0
        )
        to = self.targets if discovery or self.hop is None else (self.hop,)
        if self.kind is ProbeKind.SECOND_HOP and self.misses >= 2:
            self.misses = 0  # the next round asks the second hop again
        packet = echo_request(self.version, self.ident, self.seq, self.payload)
        sent = time.time()
        for target in to:
            with contextlib.suppress(OSError):  # unreachable now: the round will fail
                self.sock.sendto(packet, self._address(target))
        self.rounds[self.seq] = Round(self.seq, now + self.timeout, sent, to, discovery)

    def _counts(self, round_: Round, echo_reply: bool, sender: IPAddress) -> bool:
        if echo_reply and sender in round_.to:
            return True
        # a TTL-limited round: any router past the gateway that says the probe got there
        return round_.discovery and sender not in (self.gateway, self.source)

    def receive(self) -> None:
        """Read every reply waiting on the socket."""
        while True:
            try:
                data, ancillary, _, address = self.sock.recvmsg(2048, 64)
            except BlockingIOError:
                return
            received = _timestamp(ancillary) or time.time()
            parsed = parse_reply(self.version, data, self.payload)
            if parsed is None:
                continue
            echo_reply, ident, seq = parsed
            round_ = self.rounds.get(seq)
            if ident != self.ident or round_ is None:
                continue
            sender = ipaddress.ip_address(str(address[0]).partition("%")[0])
            if sender in round_.answers or not self._counts(round_, echo_reply, sender):
                continue
            rtt = max(0.0, received - round_.sent)
            if rtt > self.timeout:  # read late: it came after the round's deadline
                continue
            round_.answers[sender] = rtt
            if round_.discovery:
                self.hop = sender

    def finished(self, now: float) -> list[tuple[bool, float | None]]:
        """The rounds that are over (answered, or past their deadline), oldest first, as
        (answered, RTT of the first answer); the rounds after an open one wait for it."""
        results: list[tuple[bool, float | None]] = []
        for seq, round_ in list(self.rounds.items()):
            answered = len(round_.answers) >= self.needed
            if not answered and now < round_.deadline:
                break
            del self.rounds[seq]
            rtt = min(round_.answers.values()) if answered else None
            results.append((answered, rtt))
            if self.kind is ProbeKind.SECOND_HOP and self.hop is not None:
                self.misses = 0 if answered else self.misses + 1
        return results

    def next_deadline(self) -> float | None:
        return min((r.deadline for r in self.rounds.values()), default=None)

    def close(self) -> None:
        self.sock.close()
