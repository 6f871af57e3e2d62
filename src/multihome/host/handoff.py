"""One owner of the routing at a time: what `apply`, `remove` and `install` do when
`multihome watch` runs in the namespace, so that neither silently undoes the other.

`watch` holds the namespace's watch lock (state.WATCH_LOCK) for its whole life. `remove`
stops it (SIGTERM, as `systemctl stop` does) and removes once it has let the lock go,
holding the lock itself meanwhile so that no watch starts in between. `apply` hands its
request to the running watch: a request file beside the state file and SIGUSR1 wake it; it
answers in a file of its own. A signal goes through a pidfd opened while the lock is seen
held by that pid, so it never reaches a process that merely got the pid later.
"""

from __future__ import annotations

import os
import signal
import time

from multihome.errors import LockError, MultihomeError
from multihome.host import state

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

REQUEST, ANSWER = "request", "answer"
REQUEST_LOCK = "request.lock"  # one requester at a time
WAKE = signal.SIGUSR1  # "read your request file" (and, while it guards a change, "confirm")
STOP_WAIT = 15.0  # seconds for a watch to stop (it finishes its reconcile first)
ANSWER_WAIT = 30.0  # seconds for a watch to answer (a reconcile at 1,000 addresses: < 1 s)


def how_to_stop(pid: int) -> str:
    return f"stop it first: systemctl stop multihome-watch (or kill {pid or 'its pid'})"


WATCH, REMOVE = "watch", "remove"  # the roles that hold the watch lock


def signal_watch(netns_id: int, signum: int) -> int | None:
    """Send `signum` to the namespace's `multihome watch`; its pid, or None when none runs
    (a `remove` that holds the lock is never signalled)."""
    pid = state.holder(netns_id, state.WATCH_LOCK, WATCH)
    if not pid:
        return None
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    try:
        # the pidfd names the process that had `pid` when it was opened: if the lock is
        # still held by `pid` now, that process is the holder
        if state.holder(netns_id, state.WATCH_LOCK, WATCH) != pid:
            return None
        signal.pidfd_send_signal(fd, signum)
    except ProcessLookupError:
        return None
    finally:
        os.close(fd)
    return pid


def stop_watch(netns_id: int) -> tuple[state.Held, int | None]:
    """Stop the namespace's watch, if one runs, and take its lock: held, no watch starts
    until it is released. Returns the lock and the pid of the watch that was stopped."""
    deadline = time.monotonic() + STOP_WAIT
    stopped: int | None = None
    while True:
        held = state.take(netns_id, state.WATCH_LOCK, REMOVE)
        if held is not None:
            return held, stopped
        pid = signal_watch(netns_id, signal.SIGTERM)
        if pid:
            stopped = pid
        if time.monotonic() >= deadline:
            raise LockError(
                f"multihome watch (pid {pid or '?'}) did not stop within {STOP_WAIT:g} s",
                hint="look at its log (journalctl -u multihome-watch), then "
                + how_to_stop(pid or 0),
            )
        time.sleep(0.02)


def ask_watch(netns_id: int, request: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    """Hand a request to the namespace's watch; its pid and answer, or None when no watch
    runs (then the caller does the work itself)."""
    if not state.holder(netns_id, state.WATCH_LOCK, WATCH):
        return None  # (a `remove` holding the lock: the caller waits for it at its lock)
    with state.lock(netns_id, wait=ANSWER_WAIT, suffix=REQUEST_LOCK):
        ident = f"{os.getpid()}-{time.monotonic_ns()}"
        state.remove(netns_id, ANSWER)
        data = {**request, "id": ident, "pid": os.getpid()}
        state.write_json(netns_id, REQUEST, data, mode=0o600)
        try:
            pid = signal_watch(netns_id, WAKE)
            if not pid:
                return None
            deadline = time.monotonic() + ANSWER_WAIT
            while time.monotonic() < deadline:
                answer = state.read_json(netns_id, ANSWER)
                if answer is not None and answer.get("id") == ident:
                    state.remove(netns_id, ANSWER)
                    return pid, answer
                if state.holder(netns_id, state.WATCH_LOCK, WATCH) != pid:
                    raise MultihomeError(
                        f"multihome watch (pid {pid}) stopped before it answered",
                        hint="run the command again",
                    )
                time.sleep(0.01)
            raise MultihomeError(
                f"multihome watch (pid {pid}) did not answer within {ANSWER_WAIT:g} s",
                hint="look at its log (journalctl -u multihome-watch); " + how_to_stop(pid),
            )
        finally:
            state.remove(netns_id, REQUEST)


def take_request(netns_id: int) -> dict[str, Any] | None:
    """watch: the request waiting for it, if any (read once: it is removed). A request
    whose sender no longer waits for the answer (it holds the request lock while it waits)
    is dropped: a change nobody asks for any more is not made."""
    request = state.read_json(netns_id, REQUEST)
    if request is None:
        return None
    state.remove(netns_id, REQUEST)
    sender = request.get("pid")
    if not isinstance(sender, int) or state.holder(netns_id, REQUEST_LOCK) != sender:
        return None
    return request


def answer(netns_id: int, request: dict[str, Any], data: dict[str, Any]) -> None:
    """watch: answer a request."""
    state.write_json(netns_id, ANSWER, {**data, "id": request.get("id")}, mode=0o600)
