"""The health state machine (core/health.py): two probe classes, transitions, loss, and the
false-down formula the defaults are chosen by."""

from __future__ import annotations

import random

from multihome.core.config import Health
from multihome.core.health import (
    ClassHealth,
    Kind,
    Link,
    UplinkHealth,
    false_downs,
    observe,
    quorum_loss,
)

CONFIG = Health(interval=0.4, timeout=0.4, down_after=3, up_after=2)
DEFAULTS = Health()
MONTH = 30 * 86400


def run(results: list[bool], kind: Kind = Kind.GATEWAY, armed: bool = True) -> list[Link]:
    health = UplinkHealth(path=ClassHealth(armed=armed))
    states = []
    for i, ok in enumerate(results):
        health = observe(health, ok, 0.001 if ok else None, float(i), CONFIG, kind)
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


def test_path_class_takes_the_uplink_down_with_its_own_thresholds() -> None:
    config = Health(path_down_after=2, path_up_after=3)
    health = UplinkHealth(path=ClassHealth(armed=True))
    states = []
    for i, ok in enumerate([False, False, True, True, True]):
        health = observe(health, ok, None, float(i), config, Kind.PATH)
        states.append(health.state)
    assert states == [Link.UP, Link.DOWN, Link.DOWN, Link.DOWN, Link.UP]
    assert health.gateway.state is Link.UP and health.transitions == 2


def test_second_hop_counts_only_once_it_has_answered() -> None:
    # a network whose second hop never answers keeps its gateway checks alone
    assert run([False] * 20, Kind.PATH, armed=False) == [Link.UP] * 20
    assert run([True] + [False] * 6, Kind.PATH, armed=False)[-1] is Link.DOWN


def test_down_while_either_class_is_down() -> None:
    health = UplinkHealth(path=ClassHealth(armed=True))
    for i in range(3):
        health = observe(health, False, None, float(i), CONFIG, Kind.GATEWAY)
    for i in range(6):
        health = observe(health, False, None, float(i), DEFAULTS, Kind.PATH)
    assert health.state is Link.DOWN and health.transitions == 1
    for i in range(2):  # the gateway answers again; the path is still dead
        health = observe(health, True, 0.001, 10.0 + i, CONFIG, Kind.GATEWAY)
    assert health.gateway.state is Link.UP and health.state is Link.DOWN
    for i in range(2):
        health = observe(health, True, 0.01, 20.0 + i, DEFAULTS, Kind.PATH)
    assert health.state is Link.UP and health.transitions == 2 and health.since == 21.0


def test_transitions_count_both_ways() -> None:
    health = UplinkHealth()
    pattern = ([False] * 3 + [True] * 2) * 4
    for i, ok in enumerate(pattern):
        health = observe(health, ok, 0.001 if ok else None, float(i), CONFIG)
    assert health.transitions == 8 and health.state is Link.UP


def test_counts_rtt_and_the_last_minutes_loss() -> None:
    health = UplinkHealth()
    for ok in (True, False, True):
        health = observe(health, ok, 0.002 if ok else None, 1.0, CONFIG)
    assert (health.sent, health.lost, health.last_rtt) == (3, 1, 0.002)
    assert abs(health.gateway.loss - 1 / 3) < 1e-9
    # a minute later, only what came since counts
    for i in range(10):
        health = observe(health, True, 0.003, 100.0 + i * 0.1, CONFIG)
    assert health.gateway.loss == 0.0 and (health.sent, health.lost) == (13, 1)
    assert len(health.gateway.recent) <= 61


def test_the_formula_against_a_simulation() -> None:
    """D * r * (1 - p) * p**k is the expected number of runs of k losses, each one a false
    down (the state machine then needs an answer to count again)."""
    config = Health(down_after=3, up_after=1)
    rng = random.Random(7)
    rounds, loss = 200_000, 0.2
    health = UplinkHealth()
    for i in range(rounds):
        ok = rng.random() >= loss
        health = observe(health, ok, None, float(i), config)
    downs = health.transitions // 2 + (health.state is Link.DOWN)
    expected = false_downs(rounds, 1.0, loss, 3)  # ~1280
    assert abs(downs - expected) < 0.1 * expected


def test_the_defaults_are_fast_and_calm() -> None:
    d = DEFAULTS
    # detection of a dead gateway: between (k - 1) and k intervals, plus the timeout
    assert d.down_after * d.interval + d.timeout < 0.85
    assert d.path_down_after * d.path_interval + d.path_timeout < 5.0
    # under one false down per uplink and IP version in 30 days at 5 % independent loss
    fast = false_downs(MONTH, 1 / d.interval, 0.05, d.down_after)
    path = false_downs(MONTH, 1 / d.path_interval, 0.05, d.path_down_after)
    assert fast + path < 1.0, (fast, path)
    # at most 20 echo requests a second per uplink and IP version
    assert 1 / d.interval + 1 / d.path_interval <= 20


def test_quorum_loss() -> None:
    assert abs(quorum_loss(0.05, 1, 1) - 0.05) < 1e-12
    # fewer than 2 of 3 answer: 3 p^2 (1 - p) + p^3
    assert abs(quorum_loss(0.05, 3, 2) - (3 * 0.05**2 * 0.95 + 0.05**3)) < 1e-12
