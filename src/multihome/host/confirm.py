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
from multihome.kernel.processes import pid_alive

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


def pending(netns_id: int) -> dict[str, float] | None:
    """The change awaiting confirmation in this namespace (guardian pid, seconds left), if
    any."""
    data = state.read_json(netns_id, PENDING)
    if data is None:
        return None
    try:
        pid, deadline = int(data["pid"]), float(data["deadline"])
    except (KeyError, TypeError, ValueError):
        pid, deadline = 0, 0.0  # damaged, like a file read_json cannot parse: discarded
    if not pid_alive(pid):  # a guardian that died (reboot, SIGKILL): nothing pending
        with contextlib.suppress(OSError):
            state.remove(netns_id, PENDING)
        return None
    # CLOCK_MONOTONIC is one clock for every process of the system, and never steps
    return {"pid": pid, "left": max(0.0, deadline - time.monotonic())}


def refuse_if_pending(netns_id: int) -> None:
    waiting = pending(netns_id)
    if waiting is not None:
        raise MultihomeError(
            f"a change is awaiting confirmation ({waiting['left']:.0f} s left, guardian pid"
            f" {int(waiting['pid'])})",
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
        state.write_json(netns_id, PENDING, {"pid": os.getpid(), "deadline": deadline})
        os.write(ready_w, str(os.getpid()).encode())
        os.close(ready_w)
        while time.monotonic() < deadline:
            answer = state.read_json(netns_id, CONFIRM)
            if answer is not None:
                if answer.get("revert") is True:  # `no` at the prompt: revert now
                    break
                outcome = {"outcome": "kept"}
                return
            time.sleep(POLL)
        revert(netns_id, snapshot)
    except BaseException as error:  # the guardian has no terminal: the outcome file tells
        code = 1
        outcome = {"outcome": "revert failed", "error": _explain(error)}
    finally:
        # The outcome is written before the pending file goes, so a confirmation that came
        # too late learns what happened.
        with contextlib.suppress(BaseException):
            state.write_json(netns_id, OUTCOME, outcome)
        for leftover in (PENDING, CONFIRM):
            with contextlib.suppress(BaseException):
                state.remove(netns_id, leftover)
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
    if pending(netns_id) is None:
        late = _take_outcome(netns_id)
        if late is not None and late[0] != "kept":
            return late
        return "nothing pending", None
    answer: dict[str, object] = {"pid": os.getpid()}
    if not keep:
        answer["revert"] = True
    state.write_json(netns_id, CONFIRM, answer)
    end = time.monotonic() + wait + POLL
    while os.path.exists(state.file_path(netns_id, PENDING)) and time.monotonic() < end:
        time.sleep(POLL)
    outcome = _take_outcome(netns_id)
    if outcome is None:
        raise MultihomeError("the guardian did not acknowledge the confirmation in time")
    return outcome
