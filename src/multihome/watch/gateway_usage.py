"""Gateway mode in the daemon, off the event loop's thread: the flush of a dead uplink's
connections (`conntrack -D --mark V/M`: the kernel filters, but a flush of 100,000 entries
still takes seconds) and each uplink's connections and bytes for status and metrics, read
from the counters of multihome's nftables table every few seconds (one short listing, never
a walk of the conntrack table). The loop hands work over and reads the last sample; it never
waits for either."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from multihome.core import gateway
from multihome.core.model import GatewayLayout
from multihome.errors import MultihomeError
from multihome.kernel import conntrack, nftables

EVERY = 2.0  # seconds between samples

Job = Callable[[], None]


def usage(layout: GatewayLayout, figures: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """PURE: the table's counters -> each uplink's connections (new ones since the table
    was written) and bytes (forwarded, both directions)."""
    found: dict[str, Any] = {}
    for name, _ in layout.marks:
        names = gateway.counters(layout, name)
        if names is None:
            continue
        connections, _ = figures.get(names[0], (0, 0))
        _, total = figures.get(names[1], (0, 0))
        found[name] = {"connections": connections, "bytes": total}
    return found


class Worker:
    """One thread for gateway mode's slow work: jobs in the order given (forget an uplink's
    pairs, flush its connections), and a sample of the counters every EVERY seconds. A
    sampling failure is logged once (and again only when it changes or after a sample
    worked), not every EVERY seconds."""

    def __init__(self, log: Callable[[str], None] = lambda _: None) -> None:
        self.log = log
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.lock = threading.Lock()
        self.layout: GatewayLayout | None = None
        self.last: dict[str, Any] = {}
        self.failure = ""
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="gateway", daemon=True)
        self.thread.start()

    def stop(self, wait: float = 10.0) -> None:
        """Finish the jobs handed over (a flush in progress), then end the thread."""
        if self.thread is not None:
            self.jobs.put(None)
            self.thread.join(wait)
            self.thread = None

    def use(self, layout: GatewayLayout | None) -> None:
        """The table now in place (None: no gateway mode, no counts)."""
        with self.lock:
            self.layout = layout
            if layout is None:
                self.last = {}

    def usage(self) -> dict[str, Any]:
        """The last sample: uplink -> connections, bytes."""
        with self.lock:
            return self.last

    def hand(self, job: Job) -> None:
        self.jobs.put(job)

    def sample(self) -> None:
        with self.lock:
            layout = self.layout
        if layout is None:
            return
        try:
            fresh = usage(layout, nftables.counters())
        except MultihomeError as error:
            if error.message != self.failure:
                self.log(f"cannot count the uplinks' connections: {error.message}")
            self.failure = error.message
            fresh = {}  # status shows no counts, not stale ones
        else:
            self.failure = ""
        with self.lock:
            if self.layout == layout:  # each reconcile makes a new, equal layout
                self.last = fresh

    def _run(self) -> None:
        next_sample = time.monotonic()
        while True:
            try:
                job = self.jobs.get(timeout=max(0.0, next_sample - time.monotonic()))
            except queue.Empty:
                self.sample()
                next_sample = time.monotonic() + EVERY
                continue
            if job is None:
                return
            job()


def flush(mark: int, mask: int) -> int:
    return conntrack.flush(mark, mask)


def forget_pairs(layout: GatewayLayout, uplink: str) -> None:
    """host-pair: a dead uplink's pairs go to the healthy uplinks' sets as they reconnect,
    and stay there after it returns."""
    name = gateway.pair_set(layout, uplink)
    if name is not None:
        nftables.forget_pairs(name)
