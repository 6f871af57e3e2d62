"""PURE: an uplink's health from its probe results -- a small state machine, as data.

Two classes of probes per uplink and IP version: fast ones to the gateway (a dead link or
gateway), slower ones past it (the second hop, or configured targets with a quorum: a dead
path behind a gateway that still answers). Each class goes down after its `down_after` lost
rounds in a row and up after its `up_after` answered ones; the uplink is down while either
class is. An uplink starts up (a daemon that starts must not withdraw working uplinks). The
second hop's class counts only once the second hop has answered (`armed`): a network whose
second hop never answers (it filters time-exceeded) keeps its gateway checks alone.

With random, independent probe loss p, a class that sends r rounds a second goes down
falsely D * r * (1 - p) * p**k times in D seconds (a run of k losses starts after an answer):
`false_downs` computes it, for the documentation and the benchmark.
"""

from __future__ import annotations

import enum
import math

from multihome.core.config import Health
from multihome.core.records import record, replace

WINDOW = 60  # seconds of recent probe rounds behind the loss figure


class Link(enum.Enum):
    UP = "up"
    DOWN = "down"


class Kind(enum.Enum):
    """A probe class; its value prefixes its thresholds' names in `Health`."""

    GATEWAY = ""
    PATH = "path_"


@record(frozen=True)
class ClassHealth:
    """One probe class of one uplink: its own up/down and the last minute's rounds."""

    state: Link = Link.UP
    streak: int = 0  # rounds in a row that disagree with `state`
    armed: bool = True  # whether this class decides anything yet
    rtt: float | None = None  # of the last answered round
    recent: tuple[tuple[int, int, int], ...] = ()  # (second, rounds, lost) in the window

    @property
    def loss(self) -> float:
        """The share of rounds lost in the last minute."""
        sent = sum(s for _, s, _ in self.recent)
        return sum(lost for _, _, lost in self.recent) / sent if sent else 0.0


@record(frozen=True)
class UplinkHealth:
    state: Link = Link.UP
    since: float = 0.0
    gateway: ClassHealth = ClassHealth()
    path: ClassHealth = ClassHealth(armed=False)
    transitions: int = 0  # up -> down and down -> up, since the daemon started
    sent: int = 0  # gateway rounds
    lost: int = 0

    @property
    def last_rtt(self) -> float | None:
        return self.gateway.rtt

    def of(self, kind: Kind) -> ClassHealth:
        return self.gateway if kind is Kind.GATEWAY else self.path


# (state, round answered?) -> (whether the streak grows, the threshold's name, the next state)
TRANSITIONS: dict[tuple[Link, bool], tuple[bool, str, Link]] = {
    (Link.UP, True): (False, "", Link.UP),
    (Link.UP, False): (True, "down_after", Link.DOWN),
    (Link.DOWN, False): (False, "", Link.DOWN),
    (Link.DOWN, True): (True, "up_after", Link.UP),
}


def _recent(
    recent: tuple[tuple[int, int, int], ...], answered: bool, now: float
) -> tuple[tuple[int, int, int], ...]:
    second = int(now)
    kept = tuple(b for b in recent if b[0] > second - WINDOW)
    lost = 0 if answered else 1
    if kept and kept[-1][0] == second:
        _, sent, was_lost = kept[-1]
        return (*kept[:-1], (second, sent + 1, was_lost + lost))
    return (*kept, (second, 1, lost))


def _step(
    cls: ClassHealth, answered: bool, rtt: float | None, now: float, config: Health, prefix: str
) -> ClassHealth:
    counts, threshold, target = TRANSITIONS[cls.state, answered]
    updated = replace(
        cls,
        armed=cls.armed or answered,
        rtt=rtt if answered else cls.rtt,
        recent=_recent(cls.recent, answered, now),
        streak=cls.streak + 1 if counts else 0,
    )
    if counts and updated.streak >= getattr(config, prefix + threshold):
        return replace(updated, state=target, streak=0)
    return updated


def _overall(health: UplinkHealth) -> Link:
    path_down = health.path.armed and health.path.state is Link.DOWN
    return Link.DOWN if health.gateway.state is Link.DOWN or path_down else Link.UP


def observe(
    health: UplinkHealth,
    answered: bool,
    rtt: float | None,
    now: float,
    config: Health,
    kind: Kind = Kind.GATEWAY,
) -> UplinkHealth:
    """The health after one probe round of class `kind`, finished at `now`."""
    cls = _step(health.of(kind), answered, rtt, now, config, kind.value)
    if kind is Kind.GATEWAY:
        updated = replace(
            health, gateway=cls, sent=health.sent + 1, lost=health.lost + (not answered)
        )
    else:
        updated = replace(health, path=cls)
    state = _overall(updated)
    if state is not health.state:
        return replace(updated, state=state, since=now, transitions=health.transitions + 1)
    return updated


def false_downs(seconds: float, rate: float, loss: float, in_a_row: int) -> float:
    """The expected false downs of one probe class in `seconds`, at `rate` rounds a second
    and independent round loss `loss`, going down after `in_a_row` lost rounds."""
    return seconds * rate * (1 - loss) * loss**in_a_row


def quorum_loss(loss: float, targets: int, needed: int) -> float:
    """The chance that a round to `targets` targets, each lost with chance `loss`, gets
    fewer than `needed` answers: the round loss of a quorum, for `false_downs`."""
    return sum(
        math.comb(targets, answers) * (1 - loss) ** answers * loss ** (targets - answers)
        for answers in range(needed)
    )
