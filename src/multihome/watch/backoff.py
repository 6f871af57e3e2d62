"""PURE: when `watch` tries again after a reconcile failed. Exponential, capped, with jitter:
a cause that lasts (a read-only /proc/sys, nft missing) costs a few attempts a minute, not
one per event -- and the events of its own failed attempt (the undo) wake nothing. A cause
is reported once, when it appears or changes, and once more when reconciles work again."""

from __future__ import annotations

from multihome.core.records import record

BASE = 0.5  # seconds before the first retry
CAP = 15.0  # seconds between retries at most


@record
class Backoff:
    failures: int = 0  # attempts failed in a row
    cause: str = ""  # what the last one said
    since: float | None = None  # wall clock time of the first failure in a row
    retry_at: float | None = None  # monotonic time of the next attempt

    def failed(self, now: float, wall: float, cause: str, jitter: float) -> bool:
        """One more attempt failed (`jitter` in [0, 1) spreads the retry over the second
        half of the delay); whether its cause is news (to report)."""
        # what follows a ";" is what this attempt undid ("all 9 changes already made were
        # undone"): the same cause with one address more is not news
        news = cause.split(";")[0] != self.cause.split(";")[0]
        self.failures += 1
        if self.since is None:
            self.since = wall
        self.cause = cause
        delay = min(CAP, BASE * 2 ** min(self.failures - 1, 16))
        self.retry_at = now + delay * (0.5 + jitter / 2)
        return news

    def succeeded(self) -> int:
        """An attempt worked: how many had failed before it."""
        failures = self.failures
        self.failures, self.cause, self.since, self.retry_at = 0, "", None, None
        return failures

    def waiting(self, now: float) -> bool:
        """Whether events must wait for the retry (the failure's cause is still there)."""
        return self.retry_at is not None and now < self.retry_at

    def due(self, now: float) -> bool:
        return self.retry_at is not None and now >= self.retry_at
