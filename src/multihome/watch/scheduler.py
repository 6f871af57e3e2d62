"""PURE: when the watch loop does what. The timers of the daemon as one object that is told the
time, so that debounce, probe rounds and the periodic reconcile are tested without a clock.

Probe rounds of both classes (gateway, path) start at a random phase and each interval is
drawn from interval * (1 +- JITTER): the probes of many hosts started together (a power cut,
a fleet's rollout) do not stay in step. The random source is the caller's (`random.Random`),
so a test gives it a seed.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterator

from multihome.core.records import record

DEBOUNCE = 0.03  # quiet time after the last event before reconciling
MAX_DELAY = 0.2  # ... but never later than this after the first one
PERIODIC = 30.0  # a reconcile even without events, as a safety net
# between reconciles for nftables' changes: a firewall manager that rewrites its rules every
# second (kube-proxy, fail2ban's bans) must not have the watch read the whole ruleset as often
FIREWALL_GAP = 2.0
JITTER = 0.05  # each probe interval is drawn from interval * (1 - JITTER, 1 + JITTER)


class Action(enum.Enum):
    SEND_ROUND = "send a gateway probe round"
    SEND_PATH_ROUND = "send a probe round past the gateway"
    RECONCILE_EVENTS = "reconcile after netlink events"
    RECONCILE_PERIODIC = "periodic reconcile"


@record
class Scheduler:
    interval: float  # between gateway probe rounds (on average)
    path_interval: float  # between rounds past the gateway
    next_round: float
    next_path: float
    next_periodic: float
    rng: random.Random
    first_event: float | None = None
    last_event: float = 0.0
    debounce: float = DEBOUNCE
    max_delay: float = MAX_DELAY
    periodic: float = PERIODIC
    firewall_gap: float = FIREWALL_GAP
    firewall_pending: bool = False  # nftables said another's rules changed
    next_firewall: float = 0.0  # the earliest such a change may start a reconcile

    @classmethod
    def start(
        cls, now: float, interval: float, path_interval: float, rng: random.Random
    ) -> Scheduler:
        return cls(
            interval=interval,
            path_interval=path_interval,
            next_round=now + rng.uniform(0, interval),
            next_path=now + rng.uniform(0, path_interval),
            next_periodic=now + PERIODIC,
            rng=rng,
        )

    def _after(self, due: float, now: float, interval: float) -> float:
        """The next round after one due at `due`: counted from `due`, so that a loop a little
        late does not slow the probes down; from `now` when it was so late that the next one
        is past too (no burst of rounds to catch up)."""
        after = due + interval * self.rng.uniform(1 - JITTER, 1 + JITTER)
        return after if after > now else now + interval * self.rng.uniform(1 - JITTER, 1 + JITTER)

    def event(self, now: float) -> None:
        """Netlink said something changed: reconcile once things are quiet."""
        if self.first_event is None:
            self.first_event = now
        self.last_event = now

    def firewall_event(self) -> None:
        """nftables said another's table, chain or rule changed: reconcile as for a netlink
        event, but at most once per firewall_gap."""
        self.firewall_pending = True

    def reconciled(self) -> None:
        """A reconcile read the whole state: events before it are answered."""
        self.first_event = None
        self.firewall_pending = False

    def _events_due(self) -> float | None:
        if self.first_event is None:
            return None
        return min(self.last_event + self.debounce, self.first_event + self.max_delay)

    def wait(self, now: float, deadline: float | None = None) -> float:
        """Seconds until something is due (0 if something is due now); `deadline` is the
        earliest end of a probe round in flight."""
        deadlines = [self.next_round, self.next_path, self.next_periodic]
        if deadline is not None:
            deadlines.append(deadline)
        events = self._events_due()
        if events is not None:
            deadlines.append(events)
        if self.firewall_pending:
            deadlines.append(self.next_firewall)
        return max(0.0, min(deadlines) - now)

    def due(self, now: float) -> Iterator[Action]:
        """What is due at `now`, in order. A generator: an action's handler may call
        `reconciled()`, and a reconcile for events that it answered is then not due."""
        if now >= self.next_round:
            self.next_round = self._after(self.next_round, now, self.interval)
            yield Action.SEND_ROUND
        if now >= self.next_path:
            self.next_path = self._after(self.next_path, now, self.path_interval)
            yield Action.SEND_PATH_ROUND
        if self.firewall_pending and now >= self.next_firewall:
            self.firewall_pending = False
            self.next_firewall = now + self.firewall_gap
            self.event(now)  # then debounced with any other event
        events = self._events_due()
        if events is not None and now >= events:
            self.first_event = None
            yield Action.RECONCILE_EVENTS
        if now >= self.next_periodic:
            self.next_periodic = now + self.periodic
            yield Action.RECONCILE_PERIODIC
