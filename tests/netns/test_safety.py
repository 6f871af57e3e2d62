"""Safety on remote servers: confirm-or-revert, one apply at a time, config permissions."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

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
    assert multihome(server, "confirm").stdout.strip() == "confirmed: the change is kept"
    time.sleep(2.5)
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
    from multihome import state

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
