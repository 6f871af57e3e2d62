"""The daemon's status file (what `multihome status` and the metrics show), one per network
namespace beside the state file."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from multihome import state


@dataclass
class Status:
    pid: int = field(default_factory=os.getpid)
    started: float = field(default_factory=time.time)
    uplinks: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # name, family
    reconciles: int = 0
    errors: int = 0
    last_reconcile: float | None = None
    last_result: str = ""


def status_path(netns_id: int) -> str:
    return state.file_path(netns_id, "watch.json")


def write_status(netns_id: int, data: dict[str, Any]) -> None:
    os.makedirs(state.STATE_DIR, exist_ok=True)
    path = status_path(netns_id)
    with open(path + ".tmp", "w", encoding="utf-8") as file:
        json.dump(data, file, indent=1)
    os.replace(path + ".tmp", path)


def read_status(netns_id: int) -> dict[str, Any] | None:
    try:
        with open(status_path(netns_id), encoding="utf-8") as file:
            data: dict[str, Any] = json.load(file)
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(int(data.get("pid", 0)), 0)
        data["running"] = True
    except (ProcessLookupError, ValueError):
        data["running"] = False
    return data
