from __future__ import annotations

from multihome.core.config import Health
from multihome.core.health import Link, UplinkHealth, observe

CONFIG = Health(interval=0.4, timeout=0.4, down_after=3, up_after=2)


def run(results: list[bool]) -> list[Link]:
    health = UplinkHealth()
    states = []
    for i, ok in enumerate(results):
        health = observe(health, ok, 0.001 if ok else None, float(i), CONFIG)
        states.append(health.state)
    return states


def test_one_lost_probe_changes_nothing() -> None:
    assert run([True, False, True, False, True, False, False]) == [Link.UP] * 7


def test_down_after_three_and_up_after_two() -> None:
    up, down = Link.UP, Link.DOWN
    assert run([False, False, False, True, False, True, True]) == [
        up,
        up,
        down,
        down,
        down,
        down,
        up,
    ]


def test_counts_and_rtt() -> None:
    health = UplinkHealth()
    for ok in (True, False, True):
        health = observe(health, ok, 0.002 if ok else None, 1.0, CONFIG)
    assert (health.sent, health.lost, health.last_rtt) == (3, 1, 0.002)
