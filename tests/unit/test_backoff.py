"""watch's retry delays after failed reconciles: exponential, capped, jittered; a cause is
news once."""

from __future__ import annotations

import itertools

from multihome.watch.backoff import BASE, CAP, Backoff


def test_delays_grow_to_the_cap_with_jitter_and_the_cause_is_news_once() -> None:
    backoff = Backoff()
    now = 100.0
    delays = []
    news = []
    for attempt in range(10):
        news.append(backoff.failed(now, 0.0, f"refused X; all {attempt} changes undone", 0.999))
        assert backoff.retry_at is not None
        delays.append(backoff.retry_at - now)
        assert backoff.waiting(now) and not backoff.due(now)
        now = backoff.retry_at
        assert backoff.due(now)
    assert news == [True] + [False] * 9
    assert abs(delays[0] - BASE) < 0.01 and abs(delays[-1] - CAP) < 0.01
    assert all(b >= a for a, b in itertools.pairwise(delays))
    # jitter: the delay lies in the second half of its slot
    low = Backoff()
    low.failed(0.0, 0.0, "x", 0.0)
    assert low.retry_at == BASE / 2
    assert backoff.failed(now, 0.0, "another cause", 0.5)
    assert backoff.succeeded() == 11
    assert backoff.retry_at is None and backoff.cause == "" and not backoff.waiting(now)


def test_ten_seconds_of_failure_cost_a_few_attempts() -> None:
    backoff = Backoff()
    now, attempts = 0.0, 0
    while now < 10.0:
        backoff.failed(now, 0.0, "x", 0.0)  # the shortest delays jitter allows
        attempts += 1
        assert backoff.retry_at is not None
        now = backoff.retry_at
    assert attempts < 10


def test_a_failing_reconcile_is_a_metric() -> None:
    from multihome.watch.metrics import metrics_text

    status = {"uplinks": {}, "reconciles": 7, "errors": 5}
    failing = {**status, "failure": "refused", "failures_in_a_row": 5}
    assert "multihome_reconcile_failing 0\n" in metrics_text(status, {})
    text = metrics_text(failing, {})
    assert "multihome_reconcile_failing 1\n" in text
    assert "multihome_reconcile_failures_in_a_row 5\n" in text
