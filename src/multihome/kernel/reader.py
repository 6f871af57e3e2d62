"""Read this network namespace's links, addresses, rules, routes and route lookups as objects.

One socket's dumps (transport.py), decoded (codec.py, objects.py)."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Callable, Iterator

from multihome.core.model import IPAddress, Route, Rule
from multihome.kernel import codec, objects
from multihome.kernel.objects import AddressInfo, LinkInfo
from multihome.kernel.transport import Refusal, RtnlSocket

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import TypeVar

    T = TypeVar("T")


class Decoded:
    """What the messages of the last dumps decoded to, by their bytes. A reader given one
    decodes only the messages that changed since: a rule's message is the same bytes while
    the rule exists, and so is a permanent address's (a DHCP address's lifetimes count down,
    and it is decoded anew). Each dump keeps only what it saw. The watch holds one for as
    long as it runs; a command that reads once needs none."""

    __slots__ = ("addresses", "rules")

    def __init__(self) -> None:
        self.rules: dict[bytes, Rule] = {}
        self.addresses: dict[bytes, AddressInfo] = {}


def _rule(data: bytes, offset: int, end: int) -> Rule | None:
    return objects.rule_of(codec.decode_rule(data, offset, end))


@contextlib.contextmanager
def _malformed() -> Iterator[None]:
    """A message the codec cannot walk is the kernel's fault, reported as the socket's are."""
    try:
        yield
    except ValueError as error:
        raise OSError(errno.EPROTO, f"the kernel sent a malformed message: {error}") from None


class Reader:
    """Dumps and lookups through one NETLINK_ROUTE socket."""

    def __init__(self, decoded: Decoded | None = None) -> None:
        self.socket = RtnlSocket()
        self.decoded = decoded

    def close(self) -> None:
        self.socket.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def links(self) -> list[LinkInfo]:
        return self._decode(codec.RTM_GETLINK, objects.link_of)

    def addresses(self) -> list[AddressInfo]:
        if self.decoded is None:
            return self._decode(codec.RTM_GETADDR, objects.address_info)
        found, self.decoded.addresses = self._reuse(
            codec.RTM_GETADDR, self.decoded.addresses, objects.address_info
        )
        return found

    def rules(self) -> list[Rule]:
        if self.decoded is None:
            return self._decode(codec.RTM_GETRULE, _rule)
        found, self.decoded.rules = self._reuse(codec.RTM_GETRULE, self.decoded.rules, _rule)
        return found

    def routes(self, names: dict[int, str]) -> list[Route]:
        def route(data: bytes, offset: int, end: int) -> Route | None:
            # rtm_table, the header's fifth byte, picks out the local table's routes (one or
            # two per address: a host with 1,000 addresses has more of them than of all others)
            if data[offset + 4] == codec.RT_TABLE_LOCAL:
                return None
            return objects.route_of(codec.decode_route(data, offset, end), names)

        return self._decode(codec.RTM_GETROUTE, route)

    def _decode(self, kind: int, decode: Callable[[bytes, int, int], T | None]) -> list[T]:
        found = []
        with _malformed():
            for _, data, offset, end in self.socket.dump(kind):
                item = decode(data, offset, end)
                if item is not None:  # IPv4 or IPv6
                    found.append(item)
        return found

    def _reuse(
        self, kind: int, before: dict[bytes, T], decode: Callable[[bytes, int, int], T | None]
    ) -> tuple[list[T], dict[bytes, T]]:
        """A dump's objects, those of messages `before` has taken from it; and what this dump
        decoded to, for the next."""
        found, now = [], {}
        with _malformed():
            for _, data, offset, end in self.socket.dump(kind):
                key = data[offset:end]
                item = before.get(key)
                if item is None:
                    item = decode(data, offset, end)
                    if item is None:
                        continue
                now[key] = item
                found.append(item)
        return found, now

    def route_get(
        self,
        dst: IPAddress,
        src: IPAddress | None,
        names: dict[int, str],
        iif: int | None = None,
        mark: int = 0,
    ) -> Route | Refusal:
        """The kernel's route lookup, as `ip route get DST from SRC [iif DEV] [mark M]`
        makes it; the route's table is the one whose route answered (RTM_F_LOOKUP_TABLE)."""
        answer = self.socket.query(objects.lookup_request(dst, src, iif, mark))
        if isinstance(answer, Refusal):
            return answer
        _, data, offset, end = answer
        with _malformed():
            route = objects.route_of(codec.decode_route(data, offset, end), names)
        if route is None:
            return Refusal(errno.EADDRNOTAVAIL, "local address")  # the local table answered
        return route
