"""The hand-over between apply and a running watch, without root: whom it signals, and
which requests the watch takes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from multihome.host import handoff, state


@pytest.fixture
def state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("MULTIHOME_STATE_DIR", str(tmp_path))
    return tmp_path


def test_a_request_nobody_waits_for_is_dropped(state_dir: Path) -> None:
    request = {"action": "apply", "config": None, "confirm": 30.0, "id": "x"}
    # its sender died (or gave up): it holds no request lock
    state.write_json(7, handoff.REQUEST, {**request, "pid": os.getpid()})
    assert handoff.take_request(7) is None
    assert state.read_json(7, handoff.REQUEST) is None  # and it is gone
    # its sender waits, holding the request lock: the watch takes it
    with state.lock(7, suffix=handoff.REQUEST_LOCK):
        state.write_json(7, handoff.REQUEST, {**request, "pid": os.getpid()})
        taken = handoff.take_request(7)
    assert taken is not None and taken["confirm"] == 30.0


def test_a_remove_that_holds_the_watch_lock_is_never_signalled(state_dir: Path) -> None:
    held = state.take(7, state.WATCH_LOCK, handoff.REMOVE)
    assert held is not None
    try:
        # SIGTERM would end this very process if it were sent
        assert handoff.signal_watch(7, signal.SIGTERM) is None
        assert handoff.ask_watch(7, {"action": "apply"}) is None
        assert state.holder(7, state.WATCH_LOCK) == os.getpid()
    finally:
        held.release()


def test_a_watch_is_signalled_through_its_lock(state_dir: Path) -> None:
    got: list[int] = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: got.append(signum))
    held = state.take(7, state.WATCH_LOCK, handoff.WATCH)
    assert held is not None
    try:
        assert handoff.signal_watch(7, signal.SIGUSR2) == os.getpid()
        deadline = time.monotonic() + 5  # the handler runs at the main thread's next check
        while not got and time.monotonic() < deadline:
            time.sleep(0.001)
        assert got == [signal.SIGUSR2]
    finally:
        held.release()
        signal.signal(signal.SIGUSR2, previous)
    assert handoff.signal_watch(7, signal.SIGUSR2) is None  # released: nobody to signal
