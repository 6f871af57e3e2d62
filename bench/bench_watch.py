"""Benchmark: multihome watch's reaction times and its calm on a lossy line, printed (needs
root). The network: the two-ISP lab with a router one hop past each ISP
(scenarios.two_isp_routed); `balance = true`, default health settings, the second hop found
toward 198.18.0.1 and 2001:db8:ee::1 (the lab's far ranges).

1. Event to applied: address changes on an uplink (add, then remove); for each, the time from
   the `ip addr` command returning to the source rule being in the kernel (or gone), polled
   through netlink every millisecond. Target: median < 100 ms.
2. A dead gateway, per IP version: N times, at a random moment (a random wait of 0.5-2.5 s
   after the last recovery, so the outage falls at any phase of the probe rounds), ISP 1's
   router drops everything from the server (nft, that family); the time until that family's
   balancing route drops eth1 (detection), then the rule goes and the time until eth1 is back
   (recovery). Target: detection max < 1 s, recovery median < 2 s (by design 0.65-0.75 s).
3. A dead path one hop past a live gateway, per IP version: ISP 1 forwards nothing upstream
   (nft, that family), its router still answers. Target: detection < 5 s.
4. Lost rounds in a row: ISP 1's router drops exactly j gateway probes in a row (an nft
   quota of j probes), for j = down_after - 1 and down_after: does eth1 go down?
5. Random loss: ISP 1's router drops p % of the probes it gets from the server (both
   families, gateway and second-hop probes: `numgen random mod 100 < p`) for a stated time;
   the uplink's false downs counted, next to the formula's expectation.

Usage: python bench/bench_watch.py [--changes N] [--failures N] [--path-failures N]
       [--loss-seconds S] [--long]
The default run (20 outages of a gateway, 5 of a path, a minute at each loss) takes about 5
minutes; --long (20 outages of each kind, 10 minutes at each loss) about 30.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from multihome.core.config import Health
from multihome.core.health import false_downs
from multihome.kernel import namespace
from multihome.kernel.reader import Reader
from multihome.lab import scenarios
from multihome.lab.topology import Network

NFPROTO = {4: "ipv4", 6: "ipv6"}
ECHO = {4: "icmp type echo-request", 6: "icmpv6 type echo-request"}
GATEWAY = {4: "ip daddr 192.0.2.33", 6: "ip6 daddr 2001:db8:1::1"}
SOURCE = {4: "ip saddr 192.0.2.42", 6: "ip6 saddr 2001:db8:1::10"}
PROBE_BYTES = {4: 37, 6: 57}  # an echo probe's IP packet: header, ICMP header, "multihome"


def poll(condition: Callable[[], bool], limit: float = 30.0) -> float:
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > limit:
            raise TimeoutError("the watch did not react in time")
        time.sleep(0.001)
    return time.perf_counter() - start


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def figures(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):.2f} s, p90 {percentile(values, 0.9):.2f} s,"
        f" max {max(values):.2f} s"
    )


def nft(ns: str, text: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=text, text=True, check=True)


def drop(ns: str, hook: str, rule: str) -> None:
    """ISP 1's router drops what `rule` matches, in its own table (replaced whole)."""
    nft(
        ns,
        "table inet mhbench\ndelete table inet mhbench\n"
        f"table inet mhbench {{\n chain c {{\n type filter hook {hook} priority -300\n"
        f" {rule}\n }}\n}}\n",
    )


def lift(ns: str) -> None:
    nft(ns, "table inet mhbench\ndelete table inet mhbench\n")


def dropped(ns: str) -> int:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-j", "list", "table", "inet", "mhbench"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(
        e["counter"]["packets"]
        for item in json.loads(out)["nftables"]
        if "rule" in item
        for e in item["rule"]["expr"]
        if "counter" in e
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--failures", type=int, default=20)
    parser.add_argument("--path-failures", type=int, default=5)
    parser.add_argument("--loss-seconds", type=float, default=60.0)
    parser.add_argument("--long", action="store_true", help="20 path outages, 10 min of loss")
    args = parser.parse_args()
    if args.long:
        args.path_failures, args.loss_seconds = 20, 600.0
    state_dir = tempfile.mkdtemp(prefix="mhbench-watch-")
    atexit.register(shutil.rmtree, state_dir, True)
    os.environ["MULTIHOME_STATE_DIR"] = state_dir
    config = os.path.join(state_dir, "watch.toml")
    with open(config, "w") as file:
        file.write(scenarios.routed_config())
    os.chmod(config, 0o600)
    health = Health()
    rng = random.Random()
    with Network(scenarios.two_isp_routed(2), prefix=f"mhbw{os.getpid()}-") as net:
        server, isp1 = net.ns("server"), net.ns("isp1")
        watch = subprocess.Popen(
            [sys.executable, "-m", "multihome", "--netns", server, "watch", "-c", config],
            stdout=subprocess.DEVNULL,
        )
        try:
            with namespace.inside(server):
                rtnl = Reader()

            def has_rule(address: str) -> bool:
                return any(str(r.src) == f"{address}/32" for r in rtnl.rules())

            def hops(version: int = 4) -> int:
                routes = [
                    r for r in rtnl.routes({}) if r.table == 199 and r.family.version == version
                ]
                return len(routes[0].nexthops) if routes and routes[0].nexthops else len(routes)

            def eth1(version: int) -> dict[str, Any]:
                out = subprocess.run(
                    [sys.executable, "-m", "multihome", "--netns", server, "status", "--json"],
                    capture_output=True,
                    text=True,
                ).stdout
                entry: dict[str, Any] = json.loads(out)["uplinks"]["eth1"][f"ipv{version}"]
                return entry

            poll(lambda: hops(4) == 2 and hops(6) == 2)
            poll(lambda: eth1(4)["path_state"] == "up" and eth1(6)["path_state"] == "up")
            print(
                f"health settings: gateway probes every {health.interval} s (+-5 % jitter),"
                f" timeout {health.timeout} s, down after {health.down_after}, up after"
                f" {health.up_after}; second-hop probes every {health.path_interval} s,"
                f" timeout {health.path_timeout} s, down after {health.path_down_after}, up"
                f" after {health.path_up_after}"
            )
            print(
                f"probe traffic: {1 / health.interval + 1 / health.path_interval:.0f} echo"
                " requests/s per uplink and IP version"
            )

            latencies = []
            for i in range(args.changes):
                address = f"192.0.2.{43 + (i % 15)}"
                subprocess.run(
                    ["ip", "-n", server, "addr", "add", f"{address}/27", "dev", "eth1"], check=True
                )
                latencies.append(poll(lambda a=address: has_rule(a)))  # type: ignore[misc]
                subprocess.run(
                    ["ip", "-n", server, "addr", "del", f"{address}/27", "dev", "eth1"], check=True
                )
                latencies.append(poll(lambda a=address: not has_rule(a)))  # type: ignore[misc]
            ms = [t * 1000 for t in latencies]
            print(f"event to applied, {len(ms)} address changes (add and remove):")
            print(
                f"  median {statistics.median(ms):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms,"
                f" max {max(ms):.1f} ms (includes the 30 ms debounce)"
            )

            outages = [
                ("dead gateway", args.failures, "prerouting", 'iifname "cust" drop'),
                ("dead path past a live gateway", args.path_failures, "forward", "drop"),
            ]
            for what, count, hook, rule in outages:
                for version in (4, 6):
                    detect, recover = [], []
                    for _ in range(count):
                        time.sleep(rng.uniform(0.5, 2.5))  # a random phase of the rounds
                        drop(isp1, hook, f"meta nfproto {NFPROTO[version]} {rule}")
                        detect.append(poll(lambda v=version: hops(v) == 1))  # type: ignore[misc]
                        lift(isp1)
                        recover.append(poll(lambda v=version: hops(v) == 2))  # type: ignore[misc]
                    print(f"IPv{version} {what}, {count} outages at random phases:")
                    print(f"  detection {figures(detect)}")
                    print(f"  recovery  {figures(recover)}")

            k = health.down_after
            print(f"exactly j gateway probes of eth1 dropped in a row (down after {k}):")
            for version in (4, 6):
                for j in (k - 1, k):
                    went_down = 0
                    for _ in range(3):
                        time.sleep(rng.uniform(0.5, 1.5))
                        before = eth1(version)["transitions"]
                        quota = PROBE_BYTES[version] * j + 1  # matches while under it
                        drop(
                            isp1,
                            "prerouting",
                            f"{SOURCE[version]} {GATEWAY[version]} {ECHO[version]}"
                            f" quota until {quota} bytes counter drop",
                        )
                        time.sleep(j * health.interval + 1.5)
                        assert dropped(isp1) == j, dropped(isp1)
                        lift(isp1)
                        went_down += eth1(version)["transitions"] > before
                        poll(lambda v=version: hops(v) == 2)  # type: ignore[misc]
                    print(f"  IPv{version} j = {j}: down in {went_down} of 3")

            for percent in (5, 10):
                p = percent / 100
                before = {v: eth1(v) for v in (4, 6)}
                rule = f'iifname "cust" {{echo}} numgen random mod 100 < {percent} counter drop'
                nft(
                    isp1,
                    "table inet mhbench\ndelete table inet mhbench\n"
                    "table inet mhbench {\n chain c {\n type filter hook prerouting priority -300\n"
                    f" {rule.format(echo=ECHO[4])}\n {rule.format(echo=ECHO[6])}\n }}\n}}\n",
                )
                time.sleep(args.loss_seconds)
                probes_dropped = dropped(isp1)
                after = {v: eth1(v) for v in (4, 6)}
                lift(isp1)
                poll(lambda: hops(4) == 2 and hops(6) == 2)
                expected = false_downs(
                    args.loss_seconds, 1 / health.interval, p, health.down_after
                ) + false_downs(
                    args.loss_seconds, 1 / health.path_interval, p, health.path_down_after
                )
                month = false_downs(30 * 86400, 1 / health.interval, p, health.down_after)
                month += false_downs(
                    30 * 86400, 1 / health.path_interval, p, health.path_down_after
                )
                print(
                    f"{percent} % random probe loss at ISP 1 for {args.loss_seconds:.0f} s"
                    f" ({probes_dropped} probes dropped):"
                )
                for v in (4, 6):
                    flips = after[v]["transitions"] - before[v]["transitions"]
                    sent = after[v]["probes_sent"] - before[v]["probes_sent"]
                    lost = after[v]["probes_lost"] - before[v]["probes_lost"]
                    print(
                        f"  eth1 IPv{v}: {(flips + 1) // 2} false downs ({flips} transitions);"
                        f" gateway probes lost {lost} of {sent} ({lost / max(sent, 1):.1%});"
                        f" formula: {expected:.2g} expected in this time, {month:.2g} in 30 days"
                    )
        finally:
            watch.send_signal(signal.SIGTERM)
            watch.wait(timeout=10)


if __name__ == "__main__":
    main()
