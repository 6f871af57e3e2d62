"""`multihome lab two-isp --fail eth1@10s`: failover, live. The two-ISP network with a router
one hop past each ISP (scenarios.two_isp_routed); `multihome watch` with `balance = true` and
the default health settings in the server; the server opens connections to the "internet"
client at a steady rate (each sends and reads back --size bytes) and keeps long-lived sessions
(gateway_workload.py). At the given second the ISP behind the uplink dies -- its router drops
everything from and to the server while the link stays up, as a dead modem or a dead ISP
does -- and optionally comes back. The report: per second, each uplink's traffic and the new
connections that failed; the time the uplink took to leave the balancing route (and to
rejoin it); the connections lost. IPv4 (the workload's echo server listens on IPv4).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

from multihome.core.records import asdict, field, record
from multihome.errors import MultihomeError
from multihome.lab import scenarios
from multihome.lab.gateway_run import (
    balancing_devices,
    echo_server,
    process,
    python_module,
    read_counters,
    run_checked,
    workload_client,
)
from multihome.lab.topology import Network, clean_stale

CLIENT_ADDRESS = "203.0.113.100"
FAIL = re.compile(r"(eth\d)@(\d+(?:\.\d+)?)s?(?:-(\d+(?:\.\d+)?)s?)?")
AFTER = 10.0  # seconds the run goes on after the last event
POLL = 0.01  # seconds between looks at the balancing route


def parse_fail(text: str, nics: int) -> tuple[str, float, float | None]:
    """`eth1@10s` (dies at 10 s) or `eth1@10s-20s` (and comes back at 20 s)."""
    match = FAIL.fullmatch(text)
    if not match:
        raise MultihomeError(
            f"--fail {text!r}: expected UPLINK@SECONDS[-SECONDS]",
            hint="for example --fail eth1@10s, or --fail eth1@10s-20s to bring it back",
        )
    uplink, at, back = match[1], float(match[2]), float(match[3]) if match[3] else None
    if int(uplink[3:]) >= nics:
        raise MultihomeError(f"--fail {text!r}: the lab's server has eth0-eth{nics - 1}")
    if at < 2 or (back is not None and back <= at):
        raise MultihomeError(
            f"--fail {text!r}: the failure comes at 2 s or later (the load must be running),"
            " and the return after it"
        )
    return uplink, at, back


@record(frozen=True)
class FailOptions:
    uplink: str = "eth1"
    at: float = 10.0
    back: float | None = None
    nics: int = 2
    rate: float = 100.0  # new connections a second
    size: int = 65536  # bytes each way per connection
    sessions: int = 20

    @property
    def seconds(self) -> float:
        return (self.back or self.at) + AFTER


@record
class FailResult:
    options: FailOptions
    mbits: list[dict[str, float]]  # per second: uplink -> Mbit/s (its bytes, both directions)
    failed: list[int]  # per second: new connections started then that failed
    started: list[int]
    left_after: float | None = None  # seconds from the failure to leaving the balancing route
    rejoined_after: float | None = None
    long_on_dead: int = 0
    long_failed_on_dead: int = 0
    long_failed_elsewhere: int = 0
    events: list[str] = field(default_factory=list)

    @property
    def short_failed(self) -> int:
        return sum(self.failed)


DEAD = """table inet mhlabfail {
  chain pre { type filter hook prerouting priority -300; iifname "cust" drop; }
  chain out { type filter hook output priority -300; oifname "cust" drop; }
}
"""


def _sessions_on(ns: str, address: str) -> set[int]:
    """The server's local ports of established sessions to the workload from `address`."""
    out = run_checked(
        ["ip", "netns", "exec", ns, "ss", "-Htn", "state", "established", "src", address]
    )
    return {int(line.split()[2].rpartition(":")[2]) for line in out.splitlines() if line.strip()}


def run(options: FailOptions, report: Callable[[str], None] = lambda text: None) -> FailResult:
    clean_stale()
    nics, index = options.nics, int(options.uplink[3:])
    dead_address = f"192.0.2.{32 * index + 10}"
    with (
        tempfile.TemporaryDirectory(prefix="multihome-fail-") as workdir,
        Network(scenarios.two_isp_routed(nics), prefix=f"mhfail{os.getpid()}-") as net,
        contextlib.ExitStack() as stack,
    ):
        server, client, isp = net.ns("server"), net.ns("client"), net.ns(f"isp{index}")
        config = os.path.join(workdir, "watch.toml")
        with open(config, "w", encoding="utf-8") as file:
            file.write(scenarios.routed_config(nics))
        os.chmod(config, 0o600)
        env = {**os.environ, "MULTIHOME_STATE_DIR": workdir}
        log = stack.enter_context(open(os.path.join(workdir, "watch.log"), "w+"))
        watch = python_module("multihome", "--netns", server, "watch", "-c", config)
        stack.enter_context(process(watch, env=env, stdout=log, stderr=subprocess.STDOUT))
        echo_server(stack, client, "the failover lab")
        start = time.monotonic()
        while balancing_devices(server) != nics:
            if time.monotonic() - start > 15:
                raise MultihomeError("multihome watch did not balance over every uplink")
            time.sleep(0.05)
        report(f"load for {options.seconds:g} s, {options.uplink}'s ISP dies at {options.at:g} s")
        argv = workload_client(
            server, CLIENT_ADDRESS, options.sessions, options.rate, options.seconds, options.size
        )
        work = stack.enter_context(process(argv, stdout=subprocess.PIPE))
        assert work.stdout is not None
        began = json.loads(work.stdout.readline())["started"]
        names = [f"eth{i}" for i in range(nics)]
        result = FailResult(options, [], [], [])
        on_dead: set[int] = set()
        failed_at = back_at = None
        last = read_counters(server)
        second = 1
        while second <= options.seconds:
            now = time.time() - began
            if failed_at is None and now >= options.at:
                on_dead = _sessions_on(server, dead_address)
                run_checked(["ip", "netns", "exec", isp, "nft", "-f", "-"], stdin=DEAD)
                failed_at = time.time() - began
                result.events.append(f"{options.uplink}'s ISP dead at {failed_at:.1f} s")
            left = failed_at is not None and result.left_after is None
            if left and failed_at is not None and balancing_devices(server) == nics - 1:
                result.left_after = time.time() - began - failed_at
            if options.back is not None and back_at is None and now >= options.back:
                run_checked(
                    ["ip", "netns", "exec", isp, "nft", "delete", "table", "inet", "mhlabfail"]
                )
                back_at = time.time() - began
                result.events.append(f"{options.uplink}'s ISP back at {back_at:.1f} s")
            rejoining = back_at is not None and result.rejoined_after is None
            if rejoining and back_at is not None and balancing_devices(server) == nics:
                result.rejoined_after = time.time() - began - back_at
            if now >= second:
                counters = read_counters(server)
                result.mbits.append(
                    {
                        n: (counters[n].rx_bytes + counters[n].tx_bytes)
                        - (last[n].rx_bytes + last[n].tx_bytes)
                        for n in names
                    }
                )
                last, second = counters, second + 1
            time.sleep(POLL)
        outcome = json.loads(work.stdout.readline())
    result.mbits = [{n: b * 8 / 1e6 for n, b in row.items()} for row in result.mbits]
    buckets = len(result.mbits)  # one a second, the last one's sample after the load ended
    result.failed, result.started = [0] * buckets, [0] * buckets
    for started, ok in outcome["short"]:
        bucket = min(int(started), buckets - 1)
        result.started[bucket] += 1
        result.failed[bucket] += not ok
    failures = {s["port"]: s["failed_at"] for s in outcome["long"]}
    result.long_on_dead = len(on_dead & set(failures))
    result.long_failed_on_dead = sum(1 for p in on_dead if failures.get(p) is not None)
    result.long_failed_elsewhere = sum(
        1 for p, f in failures.items() if f is not None and p not in on_dead
    )
    return result


# -- report (pure) ---------------------------------------------------------------------------


def listing(result: FailResult) -> list[str]:
    options = result.options
    names = list(result.mbits[0]) if result.mbits else []
    head = ["second", *(f"{n} Mbit/s" for n in names), "new connections", "failed"]
    rows = [head]
    for second, row in enumerate(result.mbits):
        mark = ""
        if int(options.at) == second:
            mark = f"  <- {options.uplink}'s ISP dies"
        elif options.back is not None and int(options.back) == second:
            mark = f"  <- {options.uplink}'s ISP is back"
        rows.append(
            [
                f"{second}-{second + 1}",
                *(f"{row[n]:.1f}" for n in names),
                str(result.started[second]),
                str(result.failed[second]) + mark,
            ]
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(head) - 1)]
    lines = [
        "  "
        + "  ".join(cell.rjust(w) for cell, w in zip(r[:-1], widths, strict=False))
        + "  "
        + r[-1]
        for r in rows
    ]
    lines.append("")
    lines += [f"  {event}" for event in result.events]
    left = f"{result.left_after:.2f} s" if result.left_after is not None else "never"
    lines.append(f"  time to leave: {options.uplink} left the balancing route after {left}")
    if options.back is not None:
        back = f"{result.rejoined_after:.2f} s" if result.rejoined_after is not None else "never"
        lines.append(f"  time to return: it rejoined after {back}")
    total = sum(result.started)
    lines.append(
        f"  new connections lost: {result.short_failed} of {total}; long-lived sessions lost:"
        f" {result.long_failed_on_dead} of the {result.long_on_dead} on {options.uplink}"
        f" (their address is {options.uplink}'s: they cannot move), {result.long_failed_elsewhere}"
        " elsewhere"
    )
    return lines


def to_json(result: FailResult) -> dict[str, Any]:
    return {"scenario": "two-isp", **asdict(result), "short_failed": result.short_failed}
