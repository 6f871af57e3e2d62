"""Benchmark: multihome watch's reaction times, printed (needs root).

1. Event to applied: 200 address changes on an uplink of the two-ISP lab network (add, then
   remove); for each, the time from the `ip addr` command returning to the source rule being
   in the kernel (or gone), polled through netlink every millisecond. Target: median < 100 ms.
2. Failover detection, per IP version: 20 times, blackhole the path behind ISP 1's gateway
   (its link stays up; the IPv4 or the IPv6 probe target) and time until that family's
   balancing route drops eth1; then lift it and time the recovery. Default health settings.
   Target: detection under 2 s.

Usage: python bench/bench_watch.py [--changes N] [--failures N]
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from multihome.kernel import namespace
from multihome.kernel.reader import Reader
from multihome.lab import scenarios
from multihome.lab.topology import Network

CONFIG = """[multihome]
balance = true
[uplinks.eth0]
gateway = "192.0.2.1"
probe = ["203.0.113.100"]
probe6 = ["2001:db8:ff::100"]
[uplinks.eth1]
gateway = "192.0.2.33"
probe = ["203.0.113.100"]
probe6 = ["2001:db8:ff::100"]
"""
TARGETS = {4: "203.0.113.100/32", 6: "2001:db8:ff::100/128"}


def poll(condition: Callable[[], bool], limit: float = 10.0) -> float:
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > limit:
            raise TimeoutError("the watch did not react in time")
        time.sleep(0.001)
    return time.perf_counter() - start


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--failures", type=int, default=20)
    args = parser.parse_args()
    state_dir = tempfile.mkdtemp(prefix="mhbench-watch-")
    atexit.register(shutil.rmtree, state_dir, True)
    os.environ["MULTIHOME_STATE_DIR"] = state_dir
    config = os.path.join(state_dir, "watch.toml")
    with open(config, "w") as file:
        file.write(CONFIG)
    os.chmod(config, 0o600)
    with Network(scenarios.two_isp(2), prefix=f"mhbw{os.getpid()}-") as net:
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

            poll(lambda: hops(4) == 2 and hops(6) == 2)
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

            for version in (4, 6):
                detect, recover = [], []
                blackhole = ["ip", "-n", isp1, f"-{version}", "route", "{}", "blackhole"]
                blackhole.append(TARGETS[version])
                for _ in range(args.failures):
                    subprocess.run([w.format("add") for w in blackhole], check=True)
                    detect.append(poll(lambda v=version: hops(v) == 1))  # type: ignore[misc]
                    subprocess.run([w.format("del") for w in blackhole], check=True)
                    recover.append(poll(lambda v=version: hops(v) == 2))  # type: ignore[misc]
                print(
                    f"IPv{version} failover, {args.failures} induced failures (interval 0.4 s,"
                    " timeout 0.4 s, down after 3, up after 2):"
                )
                print(
                    f"  detection median {statistics.median(detect):.2f} s,"
                    f" max {max(detect):.2f} s; recovery median"
                    f" {statistics.median(recover):.2f} s, max {max(recover):.2f} s"
                )
        finally:
            watch.send_signal(signal.SIGTERM)
            watch.wait(timeout=10)


if __name__ == "__main__":
    main()
