"""multihome watch's health checks past the gateway, against the real kernel: the second hop
found by a TTL-limited probe, the quorum of configured targets, the up/down transitions
counter, and a per-uplink RTT that is the probe's own (IPv4 and IPv6).

The two-ISP lab's "internet" is a bridge; in scenarios.two_isp_routed its client also routes
and the ISPs send the benchmark ranges (198.18.0.0/15, 2001:db8:ee::/48) to it: a probe
toward 198.18.0.1 with hop limit 2 expires there, at the second hop, which answers with time
exceeded."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from multihome.lab import scenarios
from multihome.lab.description import Topology
from multihome.lab.topology import Network

from .helpers import PY
from .test_watch import Watch, balancing_devices, config, status, wait_for, watching

__all__ = ["watching"]  # the fixture, used by name

Build = Callable[[Topology], Network]
CLIENT = {4: "203.0.113.100", 6: "2001:db8:ff::100"}
def run(*args: str) -> None:
    subprocess.run(list(args), check=True)


def uplink(ns: str, name: str, version: int) -> dict[str, Any]:
    return dict(status(ns)["uplinks"][name][f"ipv{version}"])


def scrape(ns: str, url: str) -> str:
    fetch = f"import urllib.request; print(urllib.request.urlopen({url!r}).read().decode())"
    return subprocess.run(
        ["ip", "netns", "exec", ns, PY, "-c", fetch], capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.parametrize("version", [4, 6])
def test_an_outage_one_hop_past_a_live_gateway(
    build: Build, watching: list[Watch], tmp_path: Path, version: int
) -> None:
    net = build(scenarios.two_isp_routed(nics=2))
    server, isp1 = net.ns("server"), net.ns("isp1")
    watch = Watch(server, "-c", config(tmp_path, scenarios.routed_config()), "--metrics", "127.0.0.1:9478")
    watching.append(watch)
    wait_for(lambda: balancing_devices(server, version) == {"eth0", "eth1"}, 5)
    # the TTL-limited probe found the client as the second hop of both uplinks
    wait_for(lambda: uplink(server, "eth1", version)["path_state"] == "up", 10)
    seen = uplink(server, "eth1", version)
    assert seen["path"] == CLIENT[version] and seen["path_rtt_ms"] is not None
    assert seen["transitions"] == 0
    gateway = "192.0.2.33" if version == 4 else "2001:db8:1::1"
    assert seen["targets"] == [gateway]

    # ISP 1's upstream dies; its router (the gateway) still answers
    run("ip", "-n", isp1, "link", "set", "dev", "up", "down")
    taken = wait_for(lambda: balancing_devices(server, version) == {"eth0"}, 25)
    assert taken < 10.0  # by design 1.75-2 s (issue: within 5 s; tests bound generously)
    seen = uplink(server, "eth1", version)
    assert seen["state"] == "down" and seen["path_state"] == "down"
    assert seen["loss"] < 0.2  # the gateway probes are still answered
    assert f"eth1 IPv{version}: up -> down (probes to {CLIENT[version]} lost)" in watch.text()
    assert uplink(server, "eth0", version)["state"] == "up"

    run("ip", "-n", isp1, "link", "set", "dev", "up", "up")
    wait_for(lambda: balancing_devices(server, version) == {"eth0", "eth1"}, 25)
    wait_for(lambda: uplink(server, "eth1", version)["transitions"] == 2, 5)
    text = scrape(server, "http://127.0.0.1:9478/metrics")
    line = f'multihome_uplink_transitions_total{{uplink="eth1",family="ipv{version}"}} 2'
    assert line in text.splitlines(), text
    assert f'multihome_path_up{{uplink="eth1",family="ipv{version}"}} 1' in text.splitlines()
    assert watch.stop() == 0


QUORUM = """[multihome]
balance = true
[health]
second_hop = false
[uplinks.eth0]
gateway = "192.0.2.1"
[uplinks.eth1]
gateway = "192.0.2.33"
probe = ["203.0.113.100", "203.0.113.101", "203.0.113.102"]
probe6 = ["2001:db8:ff::100", "2001:db8:ff::101", "2001:db8:ff::102"]
"""


@pytest.mark.parametrize("version", [4, 6])
def test_quorum_down_when_fewer_than_two_of_three_targets_answer(
    build: Build, watching: list[Watch], tmp_path: Path, version: int
) -> None:
    net = build(scenarios.two_isp(nics=2))
    server, isp1, client = net.ns("server"), net.ns("isp1"), net.ns("client")
    prefix = "203.0.113." if version == 4 else "2001:db8:ff::"
    length = "/24" if version == 4 else "/64"
    for last in ("101", "102"):
        run("ip", "-n", client, "addr", "add", f"{prefix}{last}{length}", "dev", "eth0")
    watch = Watch(server, "-c", config(tmp_path, QUORUM))
    watching.append(watch)
    wait_for(lambda: balancing_devices(server, version) == {"eth0", "eth1"}, 5)
    wait_for(lambda: uplink(server, "eth1", version)["path_rtt_ms"] is not None, 10)
    assert uplink(server, "eth1", version)["path"].startswith("2 of ")
    host = "/32" if version == 4 else "/128"
    blackhole = ["ip", "-n", isp1, f"-{version}", "route", "add", "blackhole"]
    # one target of three dead: 2 of 3 still answer, nothing changes for 5 s (> detection)
    run(*blackhole, f"{prefix}101{host}")
    time.sleep(5)
    seen = uplink(server, "eth1", version)
    assert seen["state"] == "up" and seen["transitions"] == 0, seen
    assert balancing_devices(server, version) == {"eth0", "eth1"}
    # a second one: fewer than 2 of 3 answer
    run(*blackhole, f"{prefix}102{host}")
    assert wait_for(lambda: balancing_devices(server, version) == {"eth0"}, 25) < 10.0
    assert uplink(server, "eth1", version)["path_state"] == "down"
    assert watch.stop() == 0


FLOOD = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("192.0.2.42", 0))
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    try:
        s.sendto(b"x" * 1400, ("203.0.113.100", 9))
    except OSError:  # the queue is full: ENOBUFS
        time.sleep(0.0005)
"""


def test_rtt_is_each_uplinks_own(build: Build, watching: list[Watch], tmp_path: Path) -> None:
    """ISP 1's link is slow (tbf at 5 Mbit/s, eth1 of the server: up to ~100 ms of queue,
    under the gateway probes' 0.15 s timeout) and loaded with traffic:
    its probes wait in the queue, ISP 0's do not, and status shows each its own RTT."""
    net = build(scenarios.two_isp(nics=2, rate_bps=5_000_000))
    server = net.ns("server")
    watch = Watch(server, "-c", config(tmp_path, scenarios.routed_config()))
    watching.append(watch)
    wait_for(lambda: balancing_devices(server, 4) == {"eth0", "eth1"}, 5)
    flood = subprocess.Popen(["ip", "netns", "exec", server, PY, "-c", FLOOD, "30"])
    try:
        time.sleep(2)
        rtts = []
        for _ in range(5):  # the status file is written once a second
            seen = status(server)["uplinks"]
            rtts.append((seen["eth0"]["ipv4"]["last_rtt_ms"], seen["eth1"]["ipv4"]["last_rtt_ms"]))
            time.sleep(1)
        assert uplink(server, "eth1", 4)["state"] == "up"  # slower, not dead
    finally:
        flood.kill()
        flood.wait()
    fast = max(r[0] for r in rtts)
    slow = sorted(r[1] for r in rtts)[len(rtts) // 2]
    # the loaded uplink's probes wait in tbf's queue; the other's answer at once
    assert slow > 10.0 and slow > 5 * fast, rtts
    assert watch.stop() == 0


def test_lab_fail_shows_the_failover_live(tmp_path: Path) -> None:
    """`multihome lab two-isp --fail eth1@3s-6s`: eth1's ISP dies under load at 3 s and comes
    back at 6 s; the report has each second's traffic per uplink and the failures."""
    result = subprocess.run(
        [PY, "-m", "multihome", "lab", "two-isp", "--fail", "eth1@3s-6s", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MULTIHOME_STATE_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    mbits, failed = report["mbits"], report["failed"]
    assert len(mbits) == 16 and sum(report["started"]) == 1600  # 100 a second for 16 s
    assert report["left_after"] < 5.0  # by design 0.65-0.75 s (issue: under 1 s)
    assert report["rejoined_after"] is not None and report["rejoined_after"] < 10.0
    # both uplinks carry the load before; eth1 nothing while its ISP is dead; eth0 all of it
    assert all(row["eth0"] > 1 and row["eth1"] > 1 for row in mbits[:3]), mbits
    assert mbits[4]["eth1"] < 0.5 and mbits[5]["eth1"] < 0.5, mbits
    assert all(row["eth1"] > 1 for row in mbits[12:15]), mbits  # back in the balancing
    # new connections fail only around the failure (those hashed to eth1 before it left)
    assert sum(failed[:3]) == 0 and 0 < failed[3] + failed[4] < 100, failed
    assert sum(failed[6:]) == 0, failed
    assert report["long_on_dead"] > 0 and report["long_failed_on_dead"] == report["long_on_dead"]
    assert report["long_failed_elsewhere"] == 0
