"""Gateway mode in the daemon: each uplink's tracked connections and bytes (for status and
metrics, sampled at most every few seconds: `conntrack -L` walks the whole table), and the
flush of a dead uplink's connections."""

from __future__ import annotations

from typing import Any

from multihome import conntrack, gateway, nftables
from multihome.errors import MultihomeError
from multihome.model import GatewayLayout

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
    """The last sample of per-uplink usage, refreshed when it is older than EVERY."""

    def __init__(self) -> None:
        self.at: float | None = None
        self.last: dict[str, dict[str, Any]] = {}

    def sample(self, layout: GatewayLayout | None, now: float) -> dict[str, dict[str, Any]]:
        if layout is None:
            self.last = {}
            return self.last
        if self.at is not None and now - self.at < EVERY:
            return self.last
        self.at = now
        fresh: dict[str, dict[str, Any]] = {}
        for name, mark in layout.marks:
            try:
                used = conntrack.usage(mark, layout.mask)
            except MultihomeError:
                continue  # conntrack missing or refused: status shows no counts, not stale ones
            fresh[name] = {"connections": used.connections, "bytes": used.bytes}
        self.last = fresh
        return fresh
