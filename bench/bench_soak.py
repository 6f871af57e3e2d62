"""Benchmark: multihome watch under a long, hostile day, printed (needs root).

The gateway lab (a router with 2 uplinks, each behind its own ISP, a LAN client, probes to a
server behind both), `watch` with gateway mode on the router, in a private mount namespace
whose /proc/sys can be made read-only. In turn:
1. quiet: the daemon's CPU with nothing happening (probes only), and its RSS;
2. 1,000 address events on an uplink (500 adds, 500 removes, each waited for);
3. 100 flaps of the second uplink's link;
4. a failing sysctl for 30 s: /proc/sys read-only for the daemon, a sysctl it manages set
   back by hand, an address event every second (each wants a reconcile that fails);
5. 240,000 conntrack entries (UDP flows from the LAN client through the router), then quiet
   again, and a failover (ISP 1's upstream dies) timed as at the start.
Printed per phase: the daemon's CPU (its own and its children's: nft, conntrack) as a share of
one core, reconcile attempts and log lines; at the end the RSS growth and the failover times.
Targets: CPU in quiet periods <= 5 % of a core, RSS growth < 20 MB, failover time unchanged.

Usage: python bench/bench_soak.py [--entries N] [--events N] [--flaps N] [--failing S]
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from multihome.lab import gateway as lab
from multihome.lab.topology import Network

# one UDP flow per (source port, destination port): a conntrack entry each on the router,
# marked for the uplink it leaves by; paced so that no burst overflows a backlog queue
FLOWS = """
import socket, sys, time
count, sent = int(sys.argv[1]), 0
for source in range(20000, 65000):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", source))
    for port in range(1, 11):
        s.sendto(b"x", ("203.0.113.100", port))
        sent += 1
    s.close()
    if sent % 400 == 0:
        time.sleep(0.004)
    if sent >= count:
        break
"""


def poll(condition: Callable[[], bool], limit: float = 30.0) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > limit:
            raise TimeoutError("the watch did not react in time")
        time.sleep(0.005)
    return time.monotonic() - start


def run(*argv: str, stdin: str | None = None) -> str:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=True).stdout


class Daemon:
    """The watch process: its CPU time, memory and log."""

    def __init__(self, router: str, config: str, log: Any) -> None:
        self.log = log
        script = (
            "mount --bind /proc/sys /proc/sys"
            f" && exec {sys.executable} -m multihome watch -c {config}"
        )
        self.proc = subprocess.Popen(
            [
                *("ip", "netns", "exec", router, "unshare", "-m", "--propagation", "private"),
                *("sh", "-c", script),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def cpu(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as file:
            fields = file.read().rsplit(")", 1)[1].split()
        return sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as file:
            for line in file:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def lines(self) -> int:
        self.log.seek(0)
        return len(self.log.read().splitlines())

    def text(self) -> str:
        self.log.seek(0)
        return str(self.log.read())

    def proc_sys(self, mode: str) -> None:
        run("nsenter", "-t", str(self.proc.pid), "-m", "mount", "-o", f"remount,bind,{mode}",
            "/proc/sys")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=240_000)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--flaps", type=int, default=100)
    parser.add_argument("--failing", type=float, default=30.0)
    parser.add_argument("--quiet", type=float, default=20.0, help="seconds per quiet period")
    args = parser.parse_args()
    state_dir = tempfile.mkdtemp(prefix="mhbench-soak-")
    atexit.register(shutil.rmtree, state_dir, True)
    os.environ["MULTIHOME_STATE_DIR"] = state_dir
    config = os.path.join(state_dir, "soak.toml")
    with open(config, "w") as file:
        file.write(lab.uplinks_config())
    os.chmod(config, 0o600)
    with Network(lab.gateway(2), prefix=f"mhsk{os.getpid()}-") as net:
        router, client, isp1 = net.ns("router"), net.ns("client"), net.ns("isp1")
        run("ip", "netns", "exec", router, "sysctl", "-qw",
            "net.netfilter.nf_conntrack_udp_timeout=3600")
        planned = json.loads(run(sys.executable, "-m", "multihome", "--netns", router, "-c",
                                 config, "plan", "--json"))
        sysctls = [c for c in planned["changes"] if c["kind"] == "sysctl"]
        log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (lives as long as the daemon)
        daemon = Daemon(router, config, log)
        try:
            soak(args, daemon, router, client, isp1, sysctls)
        finally:
            daemon.proc.send_signal(signal.SIGTERM)
            daemon.proc.wait(timeout=60)


def status(router: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "multihome", "--netns", router, "status", "--json"],
        capture_output=True, text=True,
    ).stdout
    data: dict[str, Any] = json.loads(out)
    return data


def hops(router: str) -> list[str]:
    out = subprocess.run(["ip", "-n", router, "-j", "route", "show", "table", "199"],
                         capture_output=True, text=True).stdout
    routes = json.loads(out) if out.strip() else []
    if not routes:
        return []
    route = routes[0]
    return sorted(h["dev"] for h in route["nexthops"]) if "nexthops" in route else [route["dev"]]


def has_rule(router: str, address: str) -> bool:
    rules = json.loads(run("ip", "-n", router, "-j", "rule"))
    return any(r.get("src") == address for r in rules)


def soak(args: argparse.Namespace, daemon: Daemon, router: str, client: str,
         isp1: str, sysctls: list[dict[str, Any]]) -> None:
    poll(lambda: "watching" in daemon.text())
    poll(lambda: hops(router) == ["eth0", "eth1"])

    def quiet(label: str) -> float:
        time.sleep(2)  # the last action's work is over
        before, start = daemon.cpu(), time.monotonic()
        time.sleep(args.quiet)
        share = (daemon.cpu() - before) / (time.monotonic() - start)
        verdict = "MET" if share <= 0.05 else "NOT MET"
        print(f"  quiet {args.quiet:.0f} s {label}: CPU {share:.1%} of a core"
              f" (target <= 5 %) {verdict}")
        return share

    def phase(label: str, work: Callable[[], None]) -> None:
        reconciles, lines = status(router)["reconciles"], daemon.lines()
        before, start = daemon.cpu(), time.monotonic()
        work()
        took = time.monotonic() - start
        cpu = daemon.cpu() - before
        print(f"{label}: {took:.1f} s, daemon CPU {cpu:.1f} s ({cpu / took:.0%} of a core),"
              f" {status(router)['reconciles'] - reconciles} reconciles,"
              f" {daemon.lines() - lines} log lines; RSS {daemon.rss_mb():.1f} MB")

    def failover() -> float:
        run("ip", "-n", isp1, "link", "set", "dev", "up", "down")
        took = poll(lambda: hops(router) == ["eth0"])
        run("ip", "-n", isp1, "link", "set", "dev", "up", "up")
        poll(lambda: hops(router) == ["eth0", "eth1"])
        return took

    print("start:")
    rss0 = daemon.rss_mb()
    print(f"  RSS {rss0:.1f} MB")
    quiet("(2 uplinks probed)")
    first = failover()
    print(f"  failover (ISP 1's upstream dies): {first:.2f} s")

    def events() -> None:
        for i in range(args.events // 2):
            address = f"192.0.2.{43 + (i % 15)}"
            run("ip", "-n", router, "addr", "add", f"{address}/27", "dev", "eth1")
            poll(lambda a=address: has_rule(router, a))  # type: ignore[misc]
            run("ip", "-n", router, "addr", "del", f"{address}/27", "dev", "eth1")
            poll(lambda a=address: not has_rule(router, a))  # type: ignore[misc]

    phase(f"{args.events} address events", events)
    quiet("after the events")

    def flaps() -> None:
        for _ in range(args.flaps):
            run("ip", "-n", router, "link", "set", "eth1", "down")
            time.sleep(0.05)
            run("ip", "-n", router, "link", "set", "eth1", "up")
            time.sleep(0.15)
        poll(lambda: hops(router) == ["eth0", "eth1"], 60)

    phase(f"{args.flaps} link flaps", flaps)
    quiet("after the flaps")

    def failing() -> None:
        daemon.proc_sys("ro")
        if sysctls:  # set one of the daemon's sysctls back: it must write it, and cannot
            name = sysctls[0]["object"]["path"].replace("/", ".")
            run("ip", "netns", "exec", router, "sysctl", "-qw",
                f"{name}={sysctls[0]['previous']}")
        end = time.monotonic() + args.failing
        step = 0
        while time.monotonic() < end:
            address = f"192.0.2.{43 + (step // 2) % 15}"
            verb = "add" if step % 2 == 0 else "del"
            run("ip", "-n", router, "addr", verb, f"{address}/27", "dev", "eth1")
            step += 1
            time.sleep(0.5)
        failure = status(router).get("failure", "")
        print(f"  while failing, status says: {failure[:100]}")
        daemon.proc_sys("rw")
        poll(lambda: not status(router).get("failure"), 30)

    phase(f"a failing sysctl for {args.failing:.0f} s", failing)
    quiet("after the failure")

    def entries() -> None:
        subprocess.run(["ip", "netns", "exec", client, sys.executable, "-c", FLOWS,
                        str(args.entries)], check=True, timeout=600)

    phase(f"{args.entries:,} conntrack entries made", entries)
    count = run("ip", "netns", "exec", router, "conntrack", "-C").strip()
    print(f"  conntrack entries on the router: {int(count):,}")
    quiet(f"with {int(count):,} conntrack entries")
    loaded = failover()
    print(f"  failover with {int(count):,} entries: {loaded:.2f} s (at the start {first:.2f} s)")
    time.sleep(5)  # the flush of ISP 1's entries, on the worker thread
    flushed = [line for line in daemon.text().splitlines() if "flushed" in line]
    print(f"  {flushed[-1].split('watch: ')[-1] if flushed else 'no flush logged'}")
    quiet("after the failover")
    rss1 = daemon.rss_mb()
    growth = rss1 - rss0
    print(f"RSS {rss0:.1f} MB -> {rss1:.1f} MB: growth {growth:.1f} MB (target < 20 MB)"
          f" {'MET' if growth < 20 else 'NOT MET'}")


if __name__ == "__main__":
    main()
