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
import os
import time

from multihome.core.diff import diff
from multihome.core.model import Desired, Ownership, Route, Rule, Sysctl
from multihome.core.records import record
from multihome.errors import MultihomeError
from multihome.host import state
from multihome.kernel import discover, writer

POLL = 0.05
REVERT_NOW = "revert"  # the answer `no`: revert at once instead of at the deadline


@record(frozen=True)
class Snapshot:
    """What multihome owned, and the values of the sysctls the apply changes, before it."""

    ownership: Ownership
    rules: tuple[Rule, ...]
    routes: tuple[Route, ...]
    sysctls: tuple[Sysctl, ...]
    record: state.Record
    # gateway mode: multihome's nftables table before the change ("" none), None: untouched
    nft_previous: str | None = None


# The guardian's files, beside the state file and like it marked with the namespace's
# cookie: pending (guardian pid and deadline), confirm (the request to keep the change),
# outcome (what the guardian did, and why a revert failed).
PENDING, CONFIRM, OUTCOME = "pending", "confirm", "outcome"
# Who guards the change: the guardian process (no watch ran), or `multihome watch` (apply
# handed the change to it). Each holds its lock for its life: a guard whose lock is free died.
BY_GUARDIAN, BY_WATCH = "guardian", "watch"
_LOCKS = {BY_GUARDIAN: (state.GUARDIAN_LOCK, ""), BY_WATCH: (state.WATCH_LOCK, "watch")}
KEEP = "keep"


def publish(netns_id: int, deadline: float, guard: str) -> None:
    """The guard's promise: this process reverts the change at `deadline` (monotonic)
    unless confirmed. Raises StateError."""
    for stale in (CONFIRM, OUTCOME):
        state.remove(netns_id, stale)
    state.write_json(netns_id, PENDING, {"pid": os.getpid(), "deadline": deadline, "guard": guard})


def answer(netns_id: int) -> str | None:
    """The guard: the answer that came, KEEP or REVERT_NOW, or None."""
    data = state.read_json(netns_id, CONFIRM)
    if data is None:
        return None
    return REVERT_NOW if data.get("revert") is True else KEEP


def settle(netns_id: int, outcome: dict[str, str]) -> None:
    """The guard is over: what happened, for `multihome confirm`. The outcome is written
    before the pending file goes, so a confirmation that came too late learns it."""
    with contextlib.suppress(MultihomeError, OSError):
        state.write_json(netns_id, OUTCOME, outcome)
    for leftover in (PENDING, CONFIRM):
        with contextlib.suppress(OSError):
            state.remove(netns_id, leftover)


def pending(netns_id: int) -> dict[str, float | str] | None:
    """The change awaiting confirmation in this namespace (guard pid, seconds left, who
    guards it), if any. A guard that died (SIGKILL, a crash) is found by its free lock: its
    change is then unguarded, which the next `multihome confirm` reports."""
    data = state.read_json(netns_id, PENDING)
    if data is None:
        return None
    guard = data.get("guard", BY_GUARDIAN)
    try:
        pid, deadline = int(data["pid"]), float(data["deadline"])
        lock, role = _LOCKS[guard]
    except (KeyError, TypeError, ValueError):
        pid, deadline, lock, role = 0, 0.0, "", ""  # damaged, like a file read_json cannot parse
    holder = state.holder(netns_id, lock, role) if lock else None
    if holder is None or holder not in (0, pid):
        with contextlib.suppress(OSError):
            state.remove(netns_id, PENDING)
        if lock:
            settle(
                netns_id,
                {
                    "outcome": "unguarded",
                    "error": f"the {guard} (pid {pid}) that guarded the change died before"
                    " the deadline: the change stays applied and was NOT reverted",
                },
            )
        return None
    # CLOCK_MONOTONIC is one clock for every process of the system, and never steps
    return {"pid": pid, "left": max(0.0, deadline - time.monotonic()), "guard": guard}


def _guard_words(waiting: dict[str, float | str]) -> str:
    if waiting["guard"] == BY_WATCH:
        return f"guarded by multihome watch, pid {waiting['pid']}"
    return f"guardian pid {waiting['pid']}"


def refuse_if_pending(netns_id: int) -> None:
    waiting = pending(netns_id)
    if waiting is not None and waiting["guard"] == BY_WATCH and waiting["pid"] == os.getpid():
        return  # watch's own reconciles go on while it guards a change (failover)
    if waiting is not None:
        raise MultihomeError(
            f"a change is awaiting confirmation ({float(waiting['left']):.0f} s left,"
            f" {_guard_words(waiting)})",
            hint="run `multihome confirm` to keep it, or wait for it to be reverted",
        )


def arm(netns_id: int, snapshot: Snapshot, seconds: float) -> int:
    """Start the guardian; returns its pid once it is watching. The change is already made:
    if the guardian cannot start, the error says so."""
    try:
        for stale in (CONFIRM, OUTCOME):
            state.remove(netns_id, stale)
        deadline = time.monotonic() + seconds
        ready_r, ready_w = os.pipe()
        first = os.fork()
        if first == 0:  # child: leave the session, fork the guardian, exit
            os.close(ready_r)
            os.setsid()
            if os.fork() == 0:
                _guard(netns_id, snapshot, deadline, ready_w)
            os._exit(0)
        os.close(ready_w)
        os.waitpid(first, 0)
        with os.fdopen(ready_r) as ready:
            pid = ready.read().strip()
        if not pid:
            raise MultihomeError("the confirm-or-revert guardian did not start")
    except (OSError, MultihomeError) as error:
        raise MultihomeError(
            f"cannot start the confirm-or-revert guardian ({error}): the change is applied"
            " and NOT guarded",
            hint="run `multihome remove` to undo it, or `multihome confirm` to keep it",
        ) from None
    return int(pid)


def _guard(netns_id: int, snapshot: Snapshot, deadline: float, ready_w: int) -> None:
    """The guardian's life: wait for a confirmation or the deadline, then exit."""
    code = 0
    outcome = {"outcome": "reverted"}
    try:
        # Inherited descriptors go: the applier's lock (held on the same open file, it would
        # block this process's own revert) and its sockets.
        os.closerange(3, ready_w)
        os.closerange(ready_w + 1, 65536)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        # held for the guardian's life: its end, however it comes, frees it
        # a moment's wait: a `status` or `confirm` may hold it shared while it looks
        if state.wait_free(netns_id, state.GUARDIAN_LOCK, 1.0) is None:
            raise MultihomeError("another confirm-or-revert guardian runs in this namespace")
        publish(netns_id, deadline, BY_GUARDIAN)
        os.write(ready_w, str(os.getpid()).encode())
        os.close(ready_w)
        while time.monotonic() < deadline:
            said = answer(netns_id)
            if said == REVERT_NOW:  # `no` at the prompt: revert now
                break
            if said == KEEP:
                outcome = {"outcome": "kept"}
                return
            time.sleep(POLL)
        revert(netns_id, snapshot)
    except BaseException as error:  # the guardian has no terminal: the outcome file tells
        code = 1
        outcome = {"outcome": "revert failed", "error": _explain(error)}
    finally:
        with contextlib.suppress(BaseException):
            settle(netns_id, outcome)
        os._exit(code)


def _explain(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    hint = getattr(error, "hint", "")
    return f"{text} ({hint})" if hint else text


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
            writer.apply(changes, host)
        if snapshot.nft_previous is not None:
            from multihome.kernel import nftables

            nftables.undo(nftables.TableChange(None, snapshot.nft_previous))
        state.save(netns_id, snapshot.record, list(snapshot.rules), list(snapshot.routes))


def _take_outcome(netns_id: int) -> tuple[str, float] | None:
    """The last guardian's outcome ("kept", "reverted", "revert failed: WHY") and when it
    came. A revert is reported once: reading it removes it (a kept change stays on record)."""
    data = state.read_json(netns_id, OUTCOME)
    if data is None:
        return None
    try:
        at = os.stat(state.file_path(netns_id, OUTCOME)).st_mtime
    except FileNotFoundError:
        at = time.time()
    text = str(data.get("outcome"))
    if text != "kept":
        state.remove(netns_id, OUTCOME)
    return (f"{text}: {data['error']}" if "error" in data else text), at


def confirm(netns_id: int, wait: float = 5.0, keep: bool = True) -> tuple[str, float | None]:
    """Tell the guardian to keep the change (or, with `keep=False`, to revert it now).
    Returns the outcome, "kept", "reverted", "revert failed: WHY" or "nothing pending", and
    when it came. A revert not yet reported is reported to the next call: a late
    confirmation learns that it came too late."""
    waiting = pending(netns_id)
    if waiting is None:
        late = _take_outcome(netns_id)
        if late is not None and late[0] != "kept":
            return late
        return "nothing pending", None
    said: dict[str, object] = {"pid": os.getpid()}
    if not keep:
        said["revert"] = True
    state.write_json(netns_id, CONFIRM, said)
    if waiting["guard"] == BY_WATCH:  # wake it (the guardian polls)
        from multihome.host import handoff

        handoff.signal_watch(netns_id, handoff.WAKE)
    end = time.monotonic() + wait + POLL
    while os.path.exists(state.file_path(netns_id, PENDING)) and time.monotonic() < end:
        time.sleep(POLL)
    outcome = _take_outcome(netns_id)
    if outcome is None:
        raise MultihomeError("the guardian did not acknowledge the confirmation in time")
    return outcome
