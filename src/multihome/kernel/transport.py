"""The rtnetlink socket: dumps, one-answer queries, and changes sent with an ack for each.

Changes go in batches: one `send` carries many requests, which the kernel handles in order
before `send` returns, queueing one answer (an ack or an error) per request on the socket.
A batch holds at most as many requests as the socket's receive buffer has room for answers,
so no answer is ever dropped (ENOBUFS) however many requests a write makes, and the verdict
on every single request is known.
"""

from __future__ import annotations

# _socket, not socket: socket.py turns thousands of constants into enums at import, which
# costs every run of every command more than reading 1,000 rules; this module needs only
# the plain socket object and a few constants.
import _socket
import errno
import os
import struct
from collections.abc import Iterator, Sequence

from multihome.kernel import codec

SOL_NETLINK = 270
NETLINK_CAP_ACK, NETLINK_EXT_ACK = 10, 11  # answers without the request's payload; texts
SEND_BUFFER = 1 << 20  # asked for; the kernel caps both at net.core.{w,r}mem_max, doubled
RECEIVE_BUFFER = 1 << 20
# What one answer takes of the receive buffer: the kernel counts an skb's true size, not its
# bytes. Measured on 6.18: 832 for an ack or a plain error (36 bytes); an extended-ack text
# of up to a few hundred bytes stays under 1,500. The room left is the margin.
ANSWER_SIZE = 2048
READ_SIZE = 1 << 20  # a dump's datagrams are at most 32 KiB, a single large link's more
_FLAGS_SEQ = struct.Struct("=HI")  # nlmsghdr's flags and sequence number, at byte 6


class Refusal:
    """The kernel's answer to one request that failed."""

    __slots__ = ("errno", "message")

    def __init__(self, errno: int, message: str = "") -> None:
        self.errno = errno
        self.message = message  # the kernel's extended ack text, when it gave one

    def __repr__(self) -> str:
        return f"Refusal(errno={self.errno!r}, message={self.message!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Refusal):
            return NotImplemented
        return (self.errno, self.message) == (other.errno, other.message)

    def __hash__(self) -> int:
        return hash((self.errno, self.message))

    def __str__(self) -> str:
        text = os.strerror(self.errno)
        return f"{text} ({self.message})" if self.message else text


class TransportError(OSError):
    """The socket failed in the middle of a transaction. The verdicts of the first `answered`
    requests are known; the requests from there up to `sent` went to the kernel, but their
    answers were lost, so whether each took effect is not known; the rest were not sent."""

    def __init__(self, error: OSError, verdicts: list[Refusal | None], sent: int) -> None:
        super().__init__(error.errno, error.strerror or str(error))
        self.verdicts = verdicts
        self.answered = len(verdicts)
        self.sent = sent


class RtnlSocket:
    """A NETLINK_ROUTE socket of this network namespace."""

    def __init__(self, receive_buffer: int = RECEIVE_BUFFER) -> None:
        sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW, _socket.NETLINK_ROUTE)
        self.sock = sock
        sock.bind((0, 0))
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDBUF, SEND_BUFFER)
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, receive_buffer)
        for option in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
            sock.setsockopt(SOL_NETLINK, option, 1)
        # what the kernel granted (getsockopt reports the doubled value it accounts against)
        received = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF)
        self.batch_requests = max(1, received // ANSWER_SIZE)
        # netlink_sendmsg refuses a datagram longer than the send buffer less 32 (EMSGSIZE)
        self.batch_bytes = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_SNDBUF) - 32
        self.seq = 1
        self.buffer = bytearray(READ_SIZE)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RtnlSocket:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _receive(self) -> bytes:
        size = self.sock.recv_into(self.buffer)
        return bytes(memoryview(self.buffer)[:size])

    def dump(self, kind: int) -> Iterator[tuple[int, bytes, int, int]]:
        """Every message of a dump of one kind: (type, datagram, payload offset, payload end)."""
        self.seq += 1
        seq = self.seq
        self.sock.send(codec.dump_request(kind, seq))
        unpack = codec.HEADER.unpack_from
        while True:
            data = self._receive()
            offset, size = 0, len(data)
            while offset + 16 <= size:  # codec.messages(), inlined: a message per object
                length, mtype, flags, mseq, _port = unpack(data, offset)
                if length < 16 or offset + length > size:
                    raise OSError(errno.EPROTO, f"a malformed netlink message at byte {offset}")
                if mseq != seq:  # an answer to a request of a transaction that failed
                    offset += (length + 3) & ~3
                    continue
                if mtype == codec.NLMSG_DONE:
                    return
                if mtype == codec.NLMSG_ERROR:
                    code, text = codec.error_of(data, offset, length, flags)
                    raise OSError(code, text or os.strerror(code))
                yield mtype, data, offset + codec.HEADER.size, offset + length
                offset += (length + 3) & ~3

    def query(self, request: bytes) -> tuple[int, bytes, int, int] | Refusal:
        """Send one request that has one answer (a route lookup): (type, datagram, payload
        offset, payload end), or the kernel's refusal."""
        self.seq += 1
        seq = self.seq
        buffer = bytearray(request)
        flags = _FLAGS_SEQ.unpack_from(buffer, 6)[0]
        _FLAGS_SEQ.pack_into(buffer, 6, flags, seq)
        self.sock.send(buffer)
        while True:
            data = self._receive()
            for offset, length, mtype, mflags, mseq in codec.messages(data):
                if mseq != seq:
                    continue
                if mtype == codec.NLMSG_ERROR:
                    code, text = codec.error_of(data, offset, length, mflags)
                    return Refusal(code, text)
                return mtype, data, offset + codec.HEADER.size, offset + length

    def transact(self, requests: Sequence[bytes]) -> list[Refusal | None]:
        """Send change requests in order; the kernel's verdict on each (None: done).

        Raises TransportError, which tells how far the verdicts are known, when the socket
        fails; a refused request is a verdict, not an error, and the requests after it are
        still sent (the caller undoes what was done)."""
        verdicts: list[Refusal | None] = []
        start = 0
        while start < len(requests):
            end, size = start, 0
            while end < len(requests) and end - start < self.batch_requests:
                if size and size + len(requests[end]) > self.batch_bytes:
                    break
                size += len(requests[end])
                end += 1
            self._batch(requests[start:end], verdicts)
            start = end
        return verdicts

    def _batch(self, batch: Sequence[bytes], verdicts: list[Refusal | None]) -> None:
        """Send one batch and read its answers, one per request, in order, into verdicts."""
        first = self.seq + 1
        buffer = bytearray().join(batch)
        offset = 0
        for request in batch:  # number the requests, each asking for its ack
            flags = _FLAGS_SEQ.unpack_from(buffer, offset + 6)[0]
            self.seq += 1
            _FLAGS_SEQ.pack_into(buffer, offset + 6, flags | codec.NLM_F_ACK, self.seq)
            offset += len(request)
        sent = len(verdicts)
        try:
            self.sock.send(buffer)
            sent += len(batch)
            self._answers(first, verdicts)
        except OSError as error:
            raise TransportError(error, verdicts, sent) from error

    def _answers(self, first: int, verdicts: list[Refusal | None]) -> None:
        """Read the answers to the requests numbered first..self.seq into verdicts."""
        expected, last = first, self.seq
        unpack = codec.HEADER.unpack_from
        while expected <= last:
            data = self._receive()
            if len(data) < codec.HEADER.size:
                raise OSError(errno.EPROTO, f"an answer of {len(data)} bytes")
            # an answer is a datagram of its own (netlink_ack): its header is read directly
            length, mtype, flags, mseq, _port = unpack(data)
            found = (
                [(0, length, mtype, flags, mseq)]
                if length == len(data)
                else _messages(data)
            )
            for offset, length, mtype, flags, mseq in found:
                if mtype != codec.NLMSG_ERROR or mseq < first or mseq > last:
                    continue  # an answer to an earlier request of a transaction that failed
                if mseq != expected:  # the kernel answers in order: a gap is a lost answer
                    raise OSError(errno.EPROTO, f"answer {mseq} came before {expected}")
                code, text = codec.error_of(data, offset, length, flags)
                verdicts.append(Refusal(code, text) if code else None)
                expected += 1


def _messages(data: bytes) -> list[tuple[int, int, int, int, int]]:
    try:
        return list(codec.messages(data))
    except ValueError as error:
        raise OSError(errno.EPROTO, str(error)) from None
