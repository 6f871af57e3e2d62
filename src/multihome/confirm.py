"""Confirm-or-revert: `apply --confirm SECONDS` keeps a change only if `multihome confirm`
follows in time (as `netplan try` does for remote admins).

After the apply, a guardian process is detached from the session (double fork, setsid): it
holds the state from before the apply and, unless a confirmation arrives before the deadline,
converges the kernel back to it through the same diff and all-or-nothing apply as every other
change. Because the guardian is on its own, the revert also happens when the SSH session that
ran the apply dies -- which is exactly the case it is for.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass

from multihome import discover, kernel, state
from multihome.diff import diff
from multihome.errors import MultihomeError
from multihome.model import Desired, Ownership, Route, Rule, Sysctl

POLL = 0.05
REVERT_NOW = "revert"  # the answer `no`: revert at once instead of at the deadline


@dataclass(frozen=True)
class Snapshot:
    """What multihome owned, and the values of the sysctls the apply changes, before it."""

    ownership: Ownership
    rules: tuple[Rule, ...]
    routes: tuple[Route, ...]
    sysctls: tuple[Sysctl, ...]
    record: state.Record


def _paths(netns_id: int) -> tuple[str, str]:
    return state.file_path(netns_id, "pending"), state.file_path(netns_id, "confirm")


def _outcome_path(netns_id: int) -> str:
    return state.file_path(netns_id, "outcome")


def pending(netns_id: int) -> dict[str, float] | None:
    """The change awaiting confirmation in this namespace (guardian pid, deadline), if any."""
    path, _ = _paths(netns_id)
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except (FileNotFoundError, ValueError):
        return None
    pid = int(data.get("pid", 0))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:  # a guardian that died (reboot, SIGKILL): nothing pending
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return None
    return {"pid": pid, "deadline": float(data["deadline"])}


def refuse_if_pending(netns_id: int) -> None:
    waiting = pending(netns_id)
    if waiting is not None:
        left = max(0.0, waiting["deadline"] - time.time())
        raise MultihomeError(
            f"a change is awaiting confirmation ({left:.0f} s left, guardian pid"
            f" {int(waiting['pid'])})",
            hint="run `multihome confirm` to keep it, or wait for it to be reverted",
        )


def arm(netns_id: int, snapshot: Snapshot, seconds: float) -> int:
    """Start the guardian; returns its pid once it is watching."""
    path, confirm_path = _paths(netns_id)
    for stale in (confirm_path, _outcome_path(netns_id)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)
    deadline = time.time() + seconds
    ready_r, ready_w = os.pipe()
    first = os.fork()
    if first == 0:  # child: leave the session, fork the guardian, exit
        os.close(ready_r)
        os.setsid()
        if os.fork() == 0:
            _guard(netns_id, snapshot, deadline, path, confirm_path, ready_w)
        os._exit(0)
    os.close(ready_w)
    os.waitpid(first, 0)
    with os.fdopen(ready_r) as ready:
        pid = ready.read().strip()
    if not pid:
        raise MultihomeError("the confirm-or-revert guardian did not start")
    return int(pid)


def _guard(
    netns_id: int,
    snapshot: Snapshot,
    deadline: float,
    path: str,
    confirm_path: str,
    ready_w: int,
) -> None:
    """The guardian's life: wait for a confirmation or the deadline, then exit."""
    code = 0
    outcome = "reverted"
    try:
        # Inherited descriptors go: the applier's lock (held on the same open file, it would
        # block this process's own revert) and its sockets.
        os.closerange(3, ready_w)
        os.closerange(ready_w + 1, 65536)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        with open(path, "w", encoding="utf-8") as file:
            json.dump({"pid": os.getpid(), "deadline": deadline}, file)
        os.write(ready_w, str(os.getpid()).encode())
        os.close(ready_w)
        while time.time() < deadline:
            if os.path.exists(confirm_path):
                if _answer(confirm_path) == REVERT_NOW:  # `no` at the prompt
                    break
                outcome = "kept"
                return
            time.sleep(POLL)
        revert(netns_id, snapshot)
    except BaseException:
        code, outcome = 1, "revert failed"
    finally:
        # The outcome is written before the pending file goes, so a confirmation that came
        # too late learns what happened.
        with open(_outcome_path(netns_id), "w", encoding="utf-8") as file:
            file.write(outcome)
        for leftover in (path, confirm_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
        os._exit(code)


def revert(netns_id: int, snapshot: Snapshot) -> None:
    """Converge back to the snapshot (only multihome's objects and the sysctls it set)."""
    with state.lock(netns_id, wait=30):
        host = discover.read_state()
        before = Desired(
            snapshot.ownership,
            rules=snapshot.rules,
            routes=snapshot.routes,
            sysctls=snapshot.sysctls,
        )
        changes = diff(before, host)
        if changes:
            kernel.apply(changes, host)
        state.save(netns_id, snapshot.record, list(snapshot.rules), list(snapshot.routes))


def _answer(confirm_path: str) -> str:
    try:
        with open(confirm_path, encoding="utf-8") as file:
            return file.read().strip()
    except FileNotFoundError:
        return ""


def _take_outcome(netns_id: int) -> tuple[str, float] | None:
    """The guardian's last outcome and when it came, once: reading it marks it reported."""
    path = _outcome_path(netns_id)
    try:
        with open(path, encoding="utf-8") as file:
            outcome, at = file.read().strip(), os.fstat(file.fileno()).st_mtime
    except FileNotFoundError:
        return None
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return outcome, at


def confirm(netns_id: int, wait: float = 5.0, keep: bool = True) -> tuple[str, float | None]:
    """Tell the guardian to keep the change (or, with `keep=False`, to revert it now).
    Returns the outcome, "kept", "reverted", "revert failed" or "nothing pending", and the
    time of a revert. A revert not yet reported is reported to the next call: a late
    confirmation learns that it came too late."""
    if pending(netns_id) is None:
        late = _take_outcome(netns_id)
        if late is not None and late[0] != "kept":
            return late
        return "nothing pending", None
    path, confirm_path = _paths(netns_id)
    # Whole or not at all (a rename): the guardian must not read half an answer.
    with open(confirm_path + ".new", "w", encoding="utf-8") as file:
        file.write(str(os.getpid()) if keep else REVERT_NOW)
    os.replace(confirm_path + ".new", confirm_path)
    end = time.monotonic() + wait + POLL
    while os.path.exists(path) and time.monotonic() < end:
        time.sleep(POLL)
    outcome = _take_outcome(netns_id)
    if outcome is None:
        raise MultihomeError("the guardian did not acknowledge the confirmation in time")
    return outcome
