"""PURE: when the watch loop does what. The timers of the daemon as one object that is told the
time, so that debounce, probe rounds and the periodic reconcile are tested without a clock."""

from __future__ import annotations

import enum
from collections.abc import Iterator

from multihome.core.records import record

DEBOUNCE = 0.03  # quiet time after the last event before reconciling
MAX_DELAY = 0.2  # ... but never later than this after the first one
PERIODIC = 30.0  # a reconcile even without events, as a safety net


class Action(enum.Enum):
    EVALUATE_ROUND = "evaluate the probe round that just timed out"
    SEND_ROUND = "send a new probe round"
    RECONCILE_EVENTS = "reconcile after netlink events"
    RECONCILE_PERIODIC = "periodic reconcile"


@record
class Scheduler:
    interval: float  # between probe rounds
    timeout: float  # a probe round's answers count until then
    next_round: float
    next_periodic: float
    round_end: float | None = None
    first_event: float | None = None
    last_event: float = 0.0
    debounce: float = DEBOUNCE
    max_delay: float = MAX_DELAY
    periodic: float = PERIODIC

    @classmethod
    def start(cls, now: float, interval: float, timeout: float) -> Scheduler:
        return cls(
            interval=max(interval, timeout),
            timeout=timeout,
            next_round=now,
            next_periodic=now + PERIODIC,
        )

    def event(self, now: float) -> None:
        """Netlink said something changed: reconcile once things are quiet."""
        if self.first_event is None:
            self.first_event = now
        self.last_event = now

    def reconciled(self) -> None:
        """A reconcile read the whole state: events before it are answered."""
        self.first_event = None

    def _events_due(self) -> float | None:
        if self.first_event is None:
            return None
        return min(self.last_event + self.debounce, self.first_event + self.max_delay)

    def wait(self, now: float) -> float:
        """Seconds until something is due (0 if something is due now)."""
        deadlines = [self.next_round, self.next_periodic]
        if self.round_end is not None:
            deadlines.append(self.round_end)
        events = self._events_due()
        if events is not None:
            deadlines.append(events)
        return max(0.0, min(deadlines) - now)

    def due(self, now: float, probing: bool) -> Iterator[Action]:
        """What is due at `now`, in order. A generator: an action's handler may call
        `reconciled()`, and a reconcile for events that it answered is then not due."""
        if self.round_end is not None and now >= self.round_end:
            self.round_end = None
            yield Action.EVALUATE_ROUND
        if now >= self.next_round:
            self.next_round = now + self.interval
            if probing:
                self.round_end = now + self.timeout
                yield Action.SEND_ROUND
        events = self._events_due()
        if events is not None and now >= events:
            self.first_event = None
            yield Action.RECONCILE_EVENTS
        if now >= self.next_periodic:
            self.next_periodic = now + self.periodic
            yield Action.RECONCILE_PERIODIC
