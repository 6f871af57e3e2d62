"""The watch loop's timers (watch/scheduler.py), told the time instead of reading a clock."""

from __future__ import annotations

from multihome.watch.scheduler import DEBOUNCE, MAX_DELAY, PERIODIC, Action, Scheduler


def _due(timers: Scheduler, now: float, probing: bool = True) -> list[Action]:
    return list(timers.due(now, probing))


def test_first_round_is_sent_at_once_and_evaluated_at_its_timeout() -> None:
    timers = Scheduler.start(100.0, interval=0.4, timeout=0.3)
    assert timers.wait(100.0) == 0.0
    assert _due(timers, 100.0) == [Action.SEND_ROUND]
    assert abs(timers.wait(100.0) - 0.3) < 1e-9  # the round's timeout comes before the next round
    assert _due(timers, 100.2) == []
    assert _due(timers, 100.3) == [Action.EVALUATE_ROUND]
    assert abs(timers.wait(100.3) - 0.1) < 1e-9
    assert _due(timers, 100.4) == [Action.SEND_ROUND]


def test_interval_is_never_shorter_than_the_timeout() -> None:
    timers = Scheduler.start(0.0, interval=0.1, timeout=0.5)
    assert _due(timers, 0.0) == [Action.SEND_ROUND]
    assert _due(timers, 0.4) == []
    assert _due(timers, 0.5) == [Action.EVALUATE_ROUND, Action.SEND_ROUND]


def test_without_probes_no_round_is_sent_or_evaluated() -> None:
    timers = Scheduler.start(0.0, interval=0.4, timeout=0.4)
    assert _due(timers, 0.0, probing=False) == []
    assert timers.round_end is None
    assert _due(timers, 0.8, probing=False) == []


def test_events_are_debounced_until_quiet() -> None:
    timers = Scheduler.start(0.0, interval=10.0, timeout=1.0)
    _due(timers, 0.0, probing=False)
    timers.event(1.0)
    timers.event(1.02)
    assert abs(timers.wait(1.02) - DEBOUNCE) < 1e-9
    assert _due(timers, 1.02 + DEBOUNCE / 2) == []
    assert _due(timers, 1.02 + DEBOUNCE) == [Action.RECONCILE_EVENTS]
    assert _due(timers, 1.5) == []  # answered once


def test_a_stream_of_events_is_reconciled_after_max_delay() -> None:
    timers = Scheduler.start(0.0, interval=10.0, timeout=1.0)
    _due(timers, 0.0, probing=False)
    now, seen = 1.0, []
    while now < 1.0 + MAX_DELAY + 0.05:
        timers.event(now)
        seen += [(now, a) for a in timers.due(now, probing=False)]
        now = round(now + DEBOUNCE / 3, 6)
    assert seen and seen[0][1] is Action.RECONCILE_EVENTS
    assert seen[0][0] >= 1.0 + MAX_DELAY - 1e-9 and seen[0][0] < 1.0 + MAX_DELAY + DEBOUNCE


def test_a_health_reconcile_answers_pending_events() -> None:
    timers = Scheduler.start(0.0, interval=0.4, timeout=0.4)
    assert _due(timers, 0.0) == [Action.SEND_ROUND]
    timers.event(0.39)
    actions = []
    for action in timers.due(0.43, probing=True):
        actions.append(action)
        if action is Action.EVALUATE_ROUND:
            timers.reconciled()  # the handler reconciled because health changed
    assert actions == [Action.EVALUATE_ROUND, Action.SEND_ROUND]


def test_periodic_reconcile() -> None:
    timers = Scheduler.start(0.0, interval=1000.0, timeout=1.0)
    _due(timers, 0.0, probing=False)
    assert abs(timers.wait(1.0) - (PERIODIC - 1.0)) < 1e-9
    assert _due(timers, PERIODIC) == [Action.RECONCILE_PERIODIC]
    assert _due(timers, PERIODIC + 1) == []
