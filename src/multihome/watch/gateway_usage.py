"""Gateway mode in the daemon: each uplink's tracked connections and bytes (for status and
metrics, sampled at most every few seconds: `conntrack -L` walks the whole table), and the
flush of a dead uplink's connections."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from multihome.core import gateway
from multihome.core.model import GatewayLayout
from multihome.errors import MultihomeError
from multihome.kernel import conntrack, nftables

EVERY = 2.0  # seconds between samples


def flush(mark: int, mask: int) -> int:
    return conntrack.flush(mark, mask)


def forget_pairs(layout: GatewayLayout, uplink: str) -> None:
    """host-pair: a dead uplink's pairs go to the healthy uplinks' sets as they reconnect,
    and stay there after it returns."""
    name = gateway.pair_set(layout, uplink)
    if name is not None:
        nftables.forget_pairs(name)


class Sampler:
    """The last sample of per-uplink usage, refreshed when it is older than EVERY: one
    `conntrack -L` for all uplinks. A failure is logged once (and again only when it
    changes or after a sample worked), not every EVERY seconds."""

    def __init__(self, log: Callable[[str], None] = lambda _: None) -> None:
        self.at: float | None = None
        self.last: dict[str, dict[str, Any]] = {}
        self.log = log
        self.failure = ""

    def sample(self, layout: GatewayLayout | None, now: float) -> dict[str, dict[str, Any]]:
        if layout is None:
            self.last = {}
            return self.last
        if self.at is not None and now - self.at < EVERY:
            return self.last
        self.at = now
        try:
            counts = conntrack.usage_by_mark(layout.mask)
        except MultihomeError as error:
            if error.message != self.failure:
                self.log(f"cannot count the uplinks' connections: {error.message}")
            self.failure = error.message
            self.last = {}  # status shows no counts, not stale ones
            return self.last
        self.failure = ""
        fresh: dict[str, dict[str, Any]] = {}
        for name, mark in layout.marks:
            used = counts.get(mark, conntrack.Usage(0, 0))
            fresh[name] = {"connections": used.connections, "bytes": used.bytes}
        self.last = fresh
        return fresh
