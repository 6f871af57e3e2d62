"""Ctrl-C in the first moments of `multihome lab` leaves nothing behind: the network being
built is removed whatever instant the interrupt comes (the namespace creation and its record
happen together), and a record that describes nothing any more does not block a name."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from multihome.kernel import namespace

TRIES = 24


def _namespaces(prefix: str) -> list[str]:
    return sorted(n for n in os.listdir(namespace.NETNS_DIR) if n.startswith(prefix))


def test_ctrl_c_in_the_first_moments_of_lab_leaks_no_namespace(tmp_path: Path) -> None:
    env = {**os.environ, "MULTIHOME_STATE_DIR": str(tmp_path / "state")}
    leaks: dict[int, list[str]] = {}
    records: dict[int, list[str]] = {}
    started: list[int] = []
    try:
        for attempt in range(TRIES):
            lab = subprocess.Popen(
                [sys.executable, "-m", "multihome", "lab", "two-isp", "--requests", "40"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # its own process group, as a terminal's job
            )
            started.append(lab.pid)
            prefix = f"mhlab{lab.pid}"
            # the interrupt at a spread of instants while the network is being built: from
            # the moment its first namespace appears to 0.1 s later
            deadline = time.monotonic() + 30
            while not _namespaces(prefix) and lab.poll() is None and time.monotonic() < deadline:
                time.sleep(0.001)
            time.sleep(0.1 * attempt / TRIES)
            os.killpg(lab.pid, signal.SIGINT)  # Ctrl-C: the whole foreground job
            lab.wait(timeout=60)
            left = _namespaces(prefix)
            if left:
                leaks[attempt] = left
            lab_dir = tmp_path / "state" / "lab"
            mine = [p.name for p in lab_dir.glob(f"{prefix}*.json")] if lab_dir.exists() else []
            if mine:
                records[attempt] = mine
        assert not leaks, f"namespaces left behind by interrupted runs: {leaks}"
        assert not records, f"records left behind by interrupted runs: {records}"
    finally:
        for pid in started:
            for name in _namespaces(f"mhlab{pid}"):
                subprocess.run(["ip", "netns", "delete", name], check=False)


def test_a_record_whose_run_and_namespaces_are_gone_does_not_block_keep(tmp_path: Path) -> None:
    state = tmp_path / "state"
    lab_dir = state / "lab"
    lab_dir.mkdir(parents=True, mode=0o700)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    name = f"mhgone{os.getpid() % 10000}"
    # a kept network's record, its run long dead, its namespaces deleted by hand
    record = lab_dir / f"{name}.json"
    record.write_text(
        json.dumps(
            {"pid": int(dead.stdout), "namespaces": [f"{name}-server"], "keep": True, "info": {}}
        )
    )
    record.chmod(0o600)
    env = {**os.environ, "MULTIHOME_STATE_DIR": str(state)}
    try:
        kept = subprocess.run(
            [sys.executable, "-m", "multihome", "lab", "--requests", "20", "--keep", name],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert kept.returncode == 0, kept.stderr
        assert f"lab network {name} is up (--keep)" in kept.stdout
        assert f"{name}-server" in _namespaces(name)
    finally:
        subprocess.run(
            [sys.executable, "-m", "multihome", "lab", "clean", name], env=env, capture_output=True
        )
        for leftover in _namespaces(f"{name}-"):
            subprocess.run(["ip", "netns", "delete", leftover], check=False)
