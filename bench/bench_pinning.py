"""Benchmark: the cost of host mode's inbound pinning on forwarded traffic, printed (needs
root, iptables, nft and conntrack).

In the VM-host lab network (lab.gateway.vm_host: a server with two uplinks behind ISPs that
drop spoofed sources, a VM behind its bridge virbr0, a hand-made iptables-nft port forward
to the VM on each uplink), from a host on the "internet" through the port forward on eth0
(the uplink stock routing serves too):
1. connections per second: short TCP connections (connect, 64 bytes echoed, close), 50 in
   parallel;
2. throughput: one TCP stream for a few seconds;
each stock (no multihome) and pinned (plain `multihome apply`: source rules, fwmark rules,
multihome's nftables table with its forward chain), in two networks built alike side by
side, measured in pairs moments apart (ABBA order); the medians, and the median of the
pairs' ratios (the cost, robust to a machine whose load changes while it runs). Besides
the rates, the CPU time the workload's processes spend per connection and per bit: on
veth the forwarding runs in the sending task's softirq, so this holds the cost of the
path, and other load on the machine disturbs it much less than the rates. Target: under
5 %.

Usage: python bench/bench_pinning.py [--pairs N] [--connections N] [--seconds S]
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile

from bench_gateway import CONNECT, STREAM, netns_python, start_servers

from multihome.lab import gateway as lab
from multihome.lab.gateway_workload import PORT
from multihome.lab.topology import Network

SINK_PORT = 9100  # bench_gateway's SINK and STREAM


def run_in(ns: str, *argv: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv], check=True, capture_output=True, text=True
    ).stdout


def cpu_seconds(servers: list[subprocess.Popen[str]]) -> float:
    """CPU time (user and system) of this process's finished children and of `servers` (on
    veth, the forwarding through the router runs in the softirq of the sending task, so it
    is charged to these processes: the CPU per connection holds the cost of the path, and
    is much less disturbed than rates by other load on the machine)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = children.ru_utime + children.ru_stime
    for proc in servers:
        with open(f"/proc/{proc.pid}/stat", encoding="ascii") as file:
            fields = file.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def workload(
    outside: str, servers: list[subprocess.Popen[str]], args: argparse.Namespace
) -> tuple[float, float, float, float]:
    """Through eth0's port forward: connections per second, bits per second, CPU seconds
    per 1,000 connections and per 10 Gbit (client and servers)."""
    address = lab.uplink_address(0)
    start = cpu_seconds(servers)
    rate, failed = netns_python(
        outside, CONNECT, address, str(args.connections), "50", str(PORT)
    ).split()
    if int(failed):
        print(f"warning: {failed} connections failed")
    middle = cpu_seconds(servers)
    bps = float(netns_python(outside, STREAM, address, str(args.seconds)))
    end = cpu_seconds(servers)
    per_conn = (middle - start) / args.connections * 1000
    per_bit = (end - middle) / (bps * args.seconds) * 1e10
    return float(rate), bps, per_conn, per_bit


def prepare(net: Network) -> list[subprocess.Popen[str]]:
    """The port forward and the VM's servers."""
    router, vm, outside = net.ns(lab.ROUTER), net.ns(lab.CLIENT), net.ns(lab.SERVER)
    for argv in lab.port_forward((PORT, SINK_PORT)):
        run_in(router, *argv)
    # many short connections from one client: more ports, and TIME_WAIT ones reused
    run_in(outside, "sysctl", "-qw", "net.ipv4.ip_local_port_range=10000 65000")
    run_in(outside, "sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1")
    return start_servers(vm)


def pin(net: Network) -> None:
    """A plain `multihome apply`, which finds the port forward and pins."""
    done = subprocess.run(
        [sys.executable, "-m", "multihome", "--netns", net.ns(lab.ROUTER), "apply"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert "inbound pinning: eth0, eth1: DNAT to virbr0" in done.stdout, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root")
    workdir = tempfile.mkdtemp(prefix="bench-pin-")
    atexit.register(shutil.rmtree, workdir, True)
    os.environ["MULTIHOME_STATE_DIR"] = workdir
    figures: dict[str, list[tuple[float, float, float, float]]] = {"stock": [], "pinned": []}
    procs: list[subprocess.Popen[str]] = []
    servers: dict[str, list[subprocess.Popen[str]]] = {}
    prefix = f"bpin{os.getpid()}"
    with (
        Network(lab.vm_host(2), prefix=f"{prefix}s-") as stock,
        Network(lab.vm_host(2), prefix=f"{prefix}p-") as pinned,
    ):
        try:
            for mode, net in (("stock", stock), ("pinned", pinned)):
                servers[mode] = prepare(net)
                procs += servers[mode]
            pin(pinned)
            nets = {"stock": stock, "pinned": pinned}
            for index in range(args.pairs):
                # ABBA: neither mode always goes first
                order = ("stock", "pinned") if index % 2 == 0 else ("pinned", "stock")
                for mode in order:
                    figures[mode].append(workload(nets[mode].ns(lab.SERVER), servers[mode], args))
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=10)
    print(
        f"through a DNAT port forward to a VM behind virbr0 (via eth0), {args.pairs} pairs"
        " measured moments apart, in two networks built alike (one stock, one after a plain"
        " `multihome apply`), medians:"
    )
    for mode, rows in figures.items():
        print(
            f"  {mode:7} {statistics.median(r[0] for r in rows):8,.0f} connections/s"
            f"   {statistics.median(r[1] for r in rows) / 1e9:6.2f} Gbit/s"
            f"   CPU {statistics.median(r[2] for r in rows):.3f} s per 1,000 connections,"
            f" {statistics.median(r[3] for r in rows):.3f} s per 10 Gbit"
        )
    pairs = list(zip(figures["stock"], figures["pinned"], strict=True))
    for what, index, better in (
        ("connections/s", 0, "higher"),
        ("throughput", 1, "higher"),
        ("CPU per connection", 2, "lower"),
        ("CPU per bit", 3, "lower"),
    ):
        ratios = [p[index] / s[index] for s, p in pairs]
        ratio = statistics.median(ratios)
        quartiles = statistics.quantiles(ratios, n=4)
        cost = 1 - ratio if better == "higher" else ratio - 1
        print(
            f"  pinned / stock, {what:18}: median of the pairs' ratios {ratio:.3f}"
            f" (cost {cost:+.1%}; quartiles {quartiles[0]:.2f}-{quartiles[2]:.2f})"
        )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
