"""Safety on remote servers: confirm-or-revert, one apply at a time, config permissions."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from multihome.lab import scenarios
from multihome.lab.description import Topology
from multihome.lab.topology import Network

from .helpers import PY, multihome, snapshot, sysctl

Build = Callable[[Topology], Network]


def _wait_for(condition: Callable[[], bool], seconds: float) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > seconds:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
    return time.monotonic() - start


def _file(ns: str, suffix: str) -> Path:
    inode = os.stat(f"/run/netns/{ns}").st_ino
    return Path(os.environ["MULTIHOME_STATE_DIR"]) / f"netns-{inode}.{suffix}"


def _pending(ns: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_file(ns, "pending").read_text())
    return data


def _outcome(ns: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_file(ns, "outcome").read_text())
    data.pop("netns_cookie")
    return data


def _alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def test_unconfirmed_apply_is_reverted_in_time(build: Build) -> None:
    net = build(scenarios.seed(nics=2))
    server = net.ns("server")
    before = snapshot(server)
    result = multihome(server, "apply", "--confirm", "2")
    assert "run `multihome --netns" in result.stdout and "confirm` within 2 s" in result.stdout
    applied = snapshot(server)
    assert applied != before and sysctl(server, "net.ipv4.conf.eth1.arp_ignore") == "1"
    # a second change is refused while this one awaits confirmation
    refused = multihome(server, "remove", check=False)
    assert refused.returncode == 2 and "awaiting confirmation" in refused.stderr
    start = time.monotonic()
    _wait_for(lambda: snapshot(server) == before, 4.0)
    assert time.monotonic() - start <= 2 + 1
    assert sysctl(server, "net.ipv4.conf.eth1.arp_ignore") == "0"
    # a confirmation after the revert says so, once, and fails
    late = multihome(server, "confirm", check=False)
    assert late.returncode == 1, late.stdout + late.stderr
    assert re.fullmatch(r"too late: the change was reverted at \d\d:\d\d:\d\d", late.stdout.strip())
    assert multihome(server, "confirm").stdout.strip() == "nothing awaits confirmation"
    # the host is as if nothing happened: a plain apply starts from scratch
    assert len(multihome(server, "apply").stdout.splitlines()) == 14


def test_confirmed_apply_stays(build: Build) -> None:
    net = build(scenarios.seed(nics=2))
    server = net.ns("server")
    multihome(server, "apply", "--confirm", "2")
    applied = snapshot(server)
    guardian = _pending(server)["pid"]
    assert multihome(server, "confirm").stdout.strip() == "confirmed: the change is kept"
    _wait_for(lambda: not _alive(guardian), 3.0)  # it has left, and will revert nothing
    assert _outcome(server) == {"outcome": "kept"}
    assert snapshot(server) == applied
    assert multihome(server, "plan", "--check").returncode == 0


def test_killing_the_applying_session_still_reverts(build: Build) -> None:
    """The guardian is detached: the SSH session dying mid-way does not keep the change."""
    net = build(scenarios.seed(nics=2))
    server = net.ns("server")
    before = snapshot(server)
    session = subprocess.Popen(
        ["setsid", PY, "-m", "multihome", "--netns", server, "apply", "--confirm", "2"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert session.stdout is not None
    while "confirm` within" not in session.stdout.readline():
        pass
    os.killpg(session.pid, signal.SIGKILL)
    session.wait()
    assert snapshot(server) != before
    _wait_for(lambda: snapshot(server) == before, 4.0)


def test_confirmed_remove_and_reverted_remove(build: Build) -> None:
    net = build(scenarios.seed(nics=2))
    server = net.ns("server")
    multihome(server, "apply")
    applied = snapshot(server)
    multihome(server, "remove", "--confirm", "1")
    assert snapshot(server) != applied
    _wait_for(lambda: snapshot(server) == applied, 3.0)  # the removal was taken back
    assert sysctl(server, "net.ipv4.conf.eth1.arp_ignore") == "1"
    multihome(server, "remove")  # and the record still restores the original sysctls
    assert sysctl(server, "net.ipv4.conf.eth1.arp_ignore") == "0"


def test_concurrent_applies_end_in_one_consistent_state(build: Build) -> None:
    net = build(scenarios.two_isp(nics=3))
    server = net.ns("server")
    procs = [
        subprocess.Popen(
            [PY, "-m", "multihome", "--netns", server, "apply", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
    changed = ['"changed": true' in out for out, _ in outputs]
    assert changed.count(True) == 1  # one made the changes, the others found nothing to do
    assert multihome(server, "plan", "--check").returncode == 0
    rules = subprocess.run(["ip", "-n", server, "rule"], capture_output=True, text=True).stdout
    assert rules.count("lookup main suppress_prefixlength 0") == 1


def test_config_writable_by_others_is_refused(build: Build, tmp_path: Path) -> None:
    net = build(scenarios.seed(nics=2))
    server = net.ns("server")
    config = tmp_path / "multihome.toml"
    config.write_text("[sysctls]\narp = false\n")
    config.chmod(0o666)
    result = multihome(server, "apply", "-c", str(config), check=False)
    assert result.returncode == 2
    assert "writable by group and others (mode 666)" in result.stderr
    assert f"hint: chmod go-w {config}" in result.stderr
    config.chmod(0o600)
    multihome(server, "apply", "-c", str(config))
    assert sysctl(server, "net.ipv4.conf.eth1.arp_ignore") == "0"  # arp = false honoured


def test_a_held_lock_fails_with_the_holders_pid(build: Build) -> None:
    from multihome.host import state

    net = build(scenarios.seed(nics=2))
    server = net.ns("server")
    inode = os.stat(f"/run/netns/{server}").st_ino
    with state.lock(inode):  # this test process holds the namespace's lock
        start = time.monotonic()
        result = multihome(server, "apply", check=False)
        waited = time.monotonic() - start
    assert result.returncode == 2
    assert f"another multihome (pid {os.getpid()}) is changing this namespace" in result.stderr
    assert waited >= state.LOCK_WAIT
    assert multihome(server, "apply").returncode == 0  # and once it is free, apply works


def test_the_deadline_is_on_the_monotonic_clock(build: Build) -> None:
    """A step of the wall clock (NTP, an admin) neither shortens nor lengthens the window."""
    net = build(scenarios.seed(nics=2))
    server = net.ns("server")
    before = time.monotonic()
    multihome(server, "apply", "--confirm", "30")
    deadline = _pending(server)["deadline"]
    assert before + 30 <= deadline <= time.monotonic() + 30
    assert multihome(server, "confirm").stdout.strip() == "confirmed: the change is kept"


def test_a_failed_revert_says_why(build: Build) -> None:
    net = build(scenarios.seed(nics=2))
    server = net.ns("server")
    multihome(server, "apply", "--confirm", "1")
    guardian = _pending(server)["pid"]
    # the record of the revert cannot be written: a directory stands where it goes
    _file(server, "json").unlink()
    _file(server, "json").mkdir()
    _wait_for(lambda: not _alive(guardian), 4.0)
    outcome = _outcome(server)
    assert outcome["outcome"] == "revert failed"
    assert (
        outcome["error"].startswith("StateError: cannot write")
        and "Is a directory" in (outcome["error"])
    )
    confirmed = multihome(server, "confirm", check=False)
    assert confirmed.returncode == 2
    assert "the guardian reported: revert failed: StateError: cannot write" in confirmed.stdout
    _file(server, "json").rmdir()


def test_a_guardian_that_cannot_start_says_the_change_is_not_guarded(build: Build) -> None:
    net = build(scenarios.seed(nics=2))
    server = net.ns("server")
    before = snapshot(server)
    _file(server, "confirm").mkdir()  # the guardian cannot clear the way for its files
    result = multihome(server, "apply", "--confirm", "5", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "the change is applied and NOT guarded" in result.stderr
    # the hint's commands carry the user's own --netns
    assert f"multihome --netns {server} remove" in result.stderr
    assert f"multihome --netns {server} confirm" in result.stderr
    assert snapshot(server) != before
    _file(server, "confirm").rmdir()
    multihome(server, "remove")
    assert snapshot(server) == before


def test_a_change_that_cannot_be_recorded_is_undone(build: Build, tmp_path: Path) -> None:
    """The state directory is full (a tmpfs of 64 KiB, in a mount namespace of the command's
    own): the kernel change succeeds, its record cannot be written, so the change goes."""
    net = build(scenarios.seed(nics=2))
    server = net.ns("server")
    before = snapshot(server)
    inode = os.stat(f"/run/netns/{server}").st_ino
    full = tmp_path / "full"
    full.mkdir()
    script = (
        'set -e; mount -t tmpfs -o size=64k,mode=0755 tmpfs "$1";'
        ' echo 0 > "$1/netns-$2.lock";'  # the lock file keeps its page: locking works
        ' dd if=/dev/zero of="$1/fill" bs=4k 2>/dev/null || true;'
        ' exec "$3" -m multihome --netns "$4" apply'
    )
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", str(full), str(inode), PY, server],
        capture_output=True,
        text=True,
        env={**os.environ, "MULTIHOME_STATE_DIR": str(full)},
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "No space left on device; the change was undone" in result.stderr
    assert snapshot(server) == before
    assert sysctl(server, "net.ipv4.conf.eth1.arp_ignore") == "0"
