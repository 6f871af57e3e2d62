"""The watch loop's timers (watch/scheduler.py), told the time instead of reading a clock."""

from __future__ import annotations

import itertools
import random

from multihome.watch.scheduler import (
    DEBOUNCE,
    FIREWALL_GAP,
    JITTER,
    MAX_DELAY,
    PERIODIC,
    Action,
    Scheduler,
)


def _due(timers: Scheduler, now: float) -> list[Action]:
    return list(timers.due(now))


def _sends(seed: int, until: float, interval: float = 0.1) -> list[float]:
    """The times a loop that wakes every millisecond sends gateway rounds."""
    timers = Scheduler.start(0.0, interval, 1000.0, random.Random(seed))
    sent = []
    for ms in range(int(until * 1000)):
        now = ms / 1000
        if Action.SEND_ROUND in _due(timers, now):
            sent.append(now)
    return sent


def test_rounds_start_at_a_random_phase_and_keep_their_rate() -> None:
    firsts = {_sends(seed, 0.2)[0] for seed in range(20)}
    assert len(firsts) > 10 and all(0 <= f <= 0.1 for f in firsts)  # phases spread
    sent = _sends(1, 60.0)
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    # each gap within the jitter (and the millisecond the loop wakes at), the mean the interval
    assert all(0.1 * (1 - JITTER) - 0.001 <= g <= 0.1 * (1 + JITTER) + 0.001 for g in gaps)
    assert abs(sum(gaps) / len(gaps) - 0.1) < 0.002


def test_two_hosts_started_together_do_not_stay_in_step() -> None:
    a, b = _sends(1, 30.0), _sends(2, 30.0)
    # after half a minute the two hosts' rounds are no longer at the same offsets
    assert a[:3] != b[:3]
    assert {round(t, 3) for t in a[-50:]} != {round(t, 3) for t in b[-50:]}


def test_path_rounds_run_on_their_own_timer() -> None:
    timers = Scheduler.start(0.0, 0.1, 0.5, random.Random(3))
    counts = {Action.SEND_ROUND: 0, Action.SEND_PATH_ROUND: 0}
    for ms in range(10_000):
        for action in timers.due(ms / 1000):
            counts[action] = counts.get(action, 0) + 1
    assert 95 <= counts[Action.SEND_ROUND] <= 105
    assert 19 <= counts[Action.SEND_PATH_ROUND] <= 21


def test_a_late_loop_sends_one_round_not_a_burst() -> None:
    timers = Scheduler.start(0.0, 0.1, 1000.0, random.Random(4))
    _due(timers, 0.1)
    assert _due(timers, 1.0) == [Action.SEND_ROUND]  # stalled for 0.9 s
    assert _due(timers, 1.0) == []
    assert 0.1 * (1 - JITTER) <= timers.wait(1.0) <= 0.1 * (1 + JITTER)


def test_wait_includes_the_deadline_of_a_round_in_flight() -> None:
    timers = Scheduler.start(0.0, 10.0, 10.0, random.Random(5))
    timers.next_round = timers.next_path = 10.0
    assert timers.wait(1.0) == 9.0
    assert abs(timers.wait(1.0, deadline=1.2) - 0.2) < 1e-9


def _quiet(now: float = 0.0) -> Scheduler:
    timers = Scheduler.start(now, 1000.0, 1000.0, random.Random(6))
    timers.next_round = timers.next_path = now + 1000.0
    return timers


def test_events_are_debounced_until_quiet() -> None:
    timers = _quiet()
    timers.event(1.0)
    timers.event(1.02)
    assert abs(timers.wait(1.02) - DEBOUNCE) < 1e-9
    assert _due(timers, 1.02 + DEBOUNCE / 2) == []
    assert _due(timers, 1.02 + DEBOUNCE) == [Action.RECONCILE_EVENTS]
    assert _due(timers, 1.5) == []  # answered once


def test_a_stream_of_events_is_reconciled_after_max_delay() -> None:
    timers = _quiet()
    now, seen = 1.0, []
    while now < 1.0 + MAX_DELAY + 0.05:
        timers.event(now)
        seen += [(now, a) for a in timers.due(now)]
        now = round(now + DEBOUNCE / 3, 6)
    assert seen and seen[0][1] is Action.RECONCILE_EVENTS
    assert seen[0][0] >= 1.0 + MAX_DELAY - 1e-9 and seen[0][0] < 1.0 + MAX_DELAY + DEBOUNCE


def test_a_health_reconcile_answers_pending_events() -> None:
    timers = _quiet()
    timers.event(0.39)
    timers.reconciled()  # the loop reconciled because health changed
    assert _due(timers, 0.43) == []


def test_periodic_reconcile() -> None:
    timers = _quiet()
    assert abs(timers.wait(1.0) - (PERIODIC - 1.0)) < 1e-9
    assert _due(timers, PERIODIC) == [Action.RECONCILE_PERIODIC]
    assert _due(timers, PERIODIC + 1) == []


def test_firewall_changes_reconcile_at_once_then_at_most_once_per_gap() -> None:
    """The first change of another's nftables rules is followed as an event is (a port
    published: pinned at once); a firewall manager that rewrites its rules all the time gets
    at most one reconcile per FIREWALL_GAP, and a reconcile for any other reason answers a
    change still waiting."""
    timers = _quiet()
    timers.firewall_event()
    assert _due(timers, 1.0) == []  # (the change starts the debounce of any event)
    assert _due(timers, 1.0 + DEBOUNCE) == [Action.RECONCILE_EVENTS]
    reconciles = []
    for ms in range(1100, 11_000):  # a change every 10 ms for ten seconds
        now = ms / 1000
        if ms % 10 == 0:
            timers.firewall_event()
        if Action.RECONCILE_EVENTS in _due(timers, now):
            reconciles.append(now)
            timers.reconciled()
    assert len(reconciles) == 4, reconciles  # one per FIREWALL_GAP (2 s) after the first
    assert all(b - a > FIREWALL_GAP - 1e-9 for a, b in itertools.pairwise([1.0, *reconciles]))
    timers.firewall_event()
    assert timers.wait(11.0) <= FIREWALL_GAP
    timers.reconciled()  # a reconcile for a route event read the firewall too
    assert _due(timers, 20.0) == []
