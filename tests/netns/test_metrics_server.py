"""The metrics endpoint of `multihome watch` under a hostile peer (issue 22, point 3): at the
file limit a systemd service gets (1024), 1,100 idle and half-sent connections to the metrics
port neither starve the daemon of descriptors nor delay its work: a new address still gets
its rules and a dead uplink is still failed over, on time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from multihome.lab import scenarios
from multihome.lab.description import Topology
from multihome.lab.topology import Network

from .helpers import PY
from .test_watch import BALANCE, balancing_devices, config, sources, wait_for

Build = Callable[[Topology], Network]
PORT = 9477

# Opens COUNT connections to the metrics port; every other one sends half a request (no
# blank line ends it), the rest send nothing. Holds them all until killed.
SLOWLORIS = """
import socket, sys, time
count, port = int(sys.argv[1]), int(sys.argv[2])
held, connected = [], 0
for n in range(count):  # one after the other, so the listener's short backlog drops none
    s = socket.socket()
    s.settimeout(0.5)
    try:
        s.connect(("127.0.0.1", port))
        connected += 1
        if n % 2:
            s.send(b"GET /metrics HTTP/1.1\\r\\nHost: x\\r\\n")
    except OSError:
        pass
    held.append(s)
print(connected, flush=True)
time.sleep(3600)
"""


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_slowloris_on_the_metrics_port_delays_no_reconcile_and_no_failover(
    build: Build, tmp_path: Path
) -> None:
    net = build(scenarios.two_isp(nics=2))
    server, isp1 = net.ns("server"), net.ns("isp1")
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (lives as long as the daemon)
    daemon = subprocess.Popen(
        [
            "prlimit",
            "--nofile=1024:1024",
            "--",
            PY,
            "-m",
            "multihome",
            "--netns",
            server,
            "watch",
            "-c",
            config(tmp_path, BALANCE.format(weight0="")),
            "--metrics",
            f":{PORT}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    attack = None

    def text() -> str:
        log.seek(0)
        return log.read()

    try:
        wait_for(lambda: "watching" in text(), 10)
        wait_for(lambda: balancing_devices(server, 4) == {"eth0", "eth1"}, 5)
        attack = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                server,
                "prlimit",
                "--nofile=4096:4096",
                "--",
                sys.executable,
                "-c",
                SLOWLORIS,
                "1100",
                str(PORT),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert attack.stdout is not None
        assert int(attack.stdout.readline()) > 500  # connected (those refused at once too)
        most = 0
        for _ in range(20):
            most = max(most, descriptors(daemon.pid))
            time.sleep(0.1)
        assert most < 100, f"the metrics connections hold {most} of the daemon's descriptors"
        # a new address gets its rules (normally within 0.5 s), under the attack
        subprocess.run(
            ["ip", "-n", server, "addr", "add", "192.0.2.43/27", "dev", "eth1"], check=True
        )
        assert wait_for(lambda: "192.0.2.43" in sources(server), 10) < 2.5
        # and a dead path is failed over (normally within 2 s)
        subprocess.run(
            ["ip", "-n", isp1, "route", "add", "blackhole", "203.0.113.100/32"], check=True
        )
        assert wait_for(lambda: balancing_devices(server, 4) == {"eth0"}, 20) < 10
        assert daemon.poll() is None and "Too many open files" not in text()
        assert descriptors(daemon.pid) < 100
    finally:
        if attack is not None:
            attack.kill()
            attack.wait()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=10)
    # once the attack is over, a scrape is answered again
    assert "Traceback" not in text(), text()


def test_a_metrics_port_out_of_range_is_one_line_and_exit_2(build: Build) -> None:
    net = build(scenarios.two_isp(nics=2))
    done = subprocess.run(
        [PY, "-m", "multihome", "--netns", net.ns("server"), "watch", "--metrics", "0.0.0.0:70000"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "70000" in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2  # the error and its hint
