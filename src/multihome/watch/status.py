"""The daemon's status file (what `multihome status` and the metrics show), one per network
namespace beside the state file, with the namespace's cookie (state.write_json)."""

from __future__ import annotations

import os
import time
from typing import Any

from multihome.core.health import UplinkHealth
from multihome.core.records import field, record
from multihome.errors import StateError
from multihome.host import state
from multihome.kernel.processes import pid_alive

SUFFIX = "watch.json"


@record
class Status:
    pid: int = field(default_factory=os.getpid)
    started: float = field(default_factory=time.time)
    uplinks: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # name, family
    reconciles: int = 0
    errors: int = 0
    last_reconcile: float | None = None
    last_result: str = ""  # what the last reconcile did, and why it ran
    last_change: float | None = None  # the last reconcile that changed something
    last_change_result: str = ""
    # while reconciles fail: the cause, since when (wall clock), attempts failed in a row
    failure: str = ""
    failing_since: float | None = None
    failures_in_a_row: int = 0


def _ms(seconds: float | None) -> float | None:
    return round(seconds * 1000, 3) if seconds is not None else None


def status_entry(health: UplinkHealth, targets: list[str], path: str) -> dict[str, Any]:
    """What `status` and the metrics show of one uplink in one IP version: its state, the
    last round's RTT and the last minute's loss of the gateway probes and of those past it
    ("path": the second hop or the configured targets; its state is "unknown" until the
    second hop has answered once), and its up/down transitions since the daemon started."""
    return {
        "state": health.state.value,
        "since": health.since,
        "transitions": health.transitions,
        "last_rtt_ms": _ms(health.gateway.rtt),
        "loss": round(health.gateway.loss, 4),
        "probes_sent": health.sent,
        "probes_lost": health.lost,
        "targets": targets,
        "path": path,
        "path_state": health.path.state.value if health.path.armed else "unknown",
        "path_rtt_ms": _ms(health.path.rtt),
        "path_loss": round(health.path.loss, 4),
    }


def status_path(netns_id: int) -> str:
    return state.file_path(netns_id, SUFFIX)


def write_status(netns_id: int, data: dict[str, Any]) -> None:
    state.write_json(netns_id, SUFFIX, data)


def read_status(netns_id: int) -> dict[str, Any] | None:
    """The status of the daemon of this namespace, with "running"; None if it never ran
    here (a file left by a dead namespace with the same inode does not count)."""
    data = state.read_json(netns_id, SUFFIX)
    if data is None:
        return None
    data.pop("netns_cookie", None)
    # running: the daemon that wrote it still holds the namespace's watch lock (a pid alone
    # may have been given to another process since). The lock is root's: an ordinary user
    # is told whether the pid lives, which is all a status summary needs.
    try:
        pid = int(data.get("pid", 0))
    except (TypeError, ValueError):
        data["running"] = False
        return data
    try:
        data["running"] = state.holder(netns_id, state.WATCH_LOCK) == pid
    except StateError:
        data["running"] = pid_alive(pid)
    return data
