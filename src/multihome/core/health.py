"""PURE: an uplink's health from its probe results -- a small state machine, as data.

An uplink starts up (a daemon that starts must not withdraw working uplinks), goes down after
`down_after` failed probe rounds in a row, and up again after `up_after` good ones in a row:
one lost probe never changes anything.
"""

from __future__ import annotations

import enum

from multihome.core.config import Health
from multihome.core.records import record, replace


class Link(enum.Enum):
    UP = "up"
    DOWN = "down"


@record(frozen=True)
class UplinkHealth:
    state: Link = Link.UP
    since: float = 0.0
    streak: int = 0  # probe rounds in a row that disagree with `state`
    sent: int = 0
    lost: int = 0
    last_rtt: float | None = None


# (state, probe answered?) -> (the streak that counts, the threshold's name, the next state)
TRANSITIONS: dict[tuple[Link, bool], tuple[bool, str, Link]] = {
    (Link.UP, True): (False, "", Link.UP),
    (Link.UP, False): (True, "down_after", Link.DOWN),
    (Link.DOWN, False): (False, "", Link.DOWN),
    (Link.DOWN, True): (True, "up_after", Link.UP),
}


def observe(
    health: UplinkHealth, answered: bool, rtt: float | None, now: float, config: Health
) -> UplinkHealth:
    """The health after one probe round."""
    counts, threshold, target = TRANSITIONS[health.state, answered]
    updated = replace(
        health,
        sent=health.sent + 1,
        lost=health.lost + (0 if answered else 1),
        last_rtt=rtt if answered else health.last_rtt,
        streak=health.streak + 1 if counts else 0,
    )
    if counts and updated.streak >= getattr(config, threshold):
        return replace(updated, state=target, since=now, streak=0)
    return updated
