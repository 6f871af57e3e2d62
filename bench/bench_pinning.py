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
multihome's nftables table with its forward chain), in pairs taken moments apart (apply,
measure, remove), several pairs per network, a fresh network per round; the medians, and
the median of the pairs' ratios (the cost, robust to a machine whose load changes while it
runs). Target: under 5 %.

Usage: python bench/bench_pinning.py [--rounds N] [--pairs N] [--connections N] [--seconds S]
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

from bench_gateway import CONNECT, SINK, STREAM, netns_python

from multihome.lab import gateway as lab
from multihome.lab.gateway_workload import PORT
from multihome.lab.topology import Network

SINK_PORT = 9100  # bench_gateway's SINK and STREAM


def run_in(ns: str, *argv: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv], check=True, capture_output=True, text=True
    ).stdout


def workload(outside: str, args: argparse.Namespace) -> tuple[float, float]:
    """Connections per second and bits per second through eth0's port forward."""
    address = lab.uplink_address(0)
    rate, failed = netns_python(
        outside, CONNECT, address, str(args.connections), "50", str(PORT)
    ).split()
    if int(failed):
        print(f"warning: {failed} connections failed")
    return float(rate), float(netns_python(outside, STREAM, address, str(args.seconds)))


def measure_round(net: Network, args: argparse.Namespace) -> list[tuple[str, float, float]]:
    """Stock and pinned, alternating `args.pairs` times in one network (apply, measure,
    remove): each pair's two figures are taken moments apart, so their ratio is what the
    pinning costs, whatever else the machine does meanwhile."""
    router, vm, outside = net.ns(lab.ROUTER), net.ns(lab.CLIENT), net.ns(lab.SERVER)
    for argv in lab.port_forward((PORT, SINK_PORT)):
        run_in(router, *argv)
    # many short connections from one client: more ports, and TIME_WAIT ones reused
    run_in(outside, "sysctl", "-qw", "net.ipv4.ip_local_port_range=10000 65000")
    run_in(outside, "sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1")
    multihome = [sys.executable, "-m", "multihome", "--netns", router]
    procs: list[subprocess.Popen[str]] = []
    found: list[tuple[str, float, float]] = []
    try:
        for argv in (
            [sys.executable, "-m", "multihome.lab.gateway_workload", "server", "--netns", vm],
            ["ip", "netns", "exec", vm, sys.executable, "-c", SINK],
        ):
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
            procs.append(proc)
            assert proc.stdout is not None and "ready" in proc.stdout.readline()
        for _ in range(args.pairs):
            found.append(("stock", *workload(outside, args)))
            done = subprocess.run(
                [*multihome, "apply"], check=True, capture_output=True, text=True
            )
            assert "inbound pinning: eth0, eth1: DNAT to virbr0" in done.stdout, done.stdout
            found.append(("pinned", *workload(outside, args)))
            subprocess.run([*multihome, "remove"], check=True, capture_output=True)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
    return found


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root")
    workdir = tempfile.mkdtemp(prefix="bench-pin-")
    atexit.register(shutil.rmtree, workdir, True)
    os.environ["MULTIHOME_STATE_DIR"] = workdir
    figures: list[tuple[str, float, float]] = []
    for round_number in range(args.rounds):
        with Network(lab.vm_host(2), prefix=f"bpin{os.getpid()}r{round_number}-") as net:
            figures += measure_round(net, args)
    stock = [f for f in figures if f[0] == "stock"]
    pinned = [f for f in figures if f[0] == "pinned"]
    print(
        f"through a DNAT port forward to a VM behind virbr0 (via eth0), {args.rounds} networks"
        f" x {args.pairs} pairs (stock, then pinned), medians:"
    )
    for mode, rows in (("stock", stock), ("pinned", pinned)):
        print(
            f"  {mode:7} {statistics.median(r[1] for r in rows):8,.0f} connections/s"
            f"   {statistics.median(r[2] for r in rows) / 1e9:6.2f} Gbit/s"
            f"  (each: {', '.join(f'{r[1]:,.0f}' for r in rows)} conn/s;"
            f" {', '.join(f'{r[2] / 1e9:.2f}' for r in rows)} Gbit/s)"
        )
    pairs = list(zip(stock, pinned, strict=True))
    for what, ratios in (
        ("connections/s", [p[1] / s[1] for s, p in pairs]),
        ("throughput", [p[2] / s[2] for s, p in pairs]),
    ):
        ratio = statistics.median(ratios)
        print(
            f"  pinned / stock, {what}: median of the pairs' ratios {ratio:.3f}"
            f" (cost {1 - ratio:+.1%}; pairs: {', '.join(f'{r:.2f}' for r in ratios)})"
        )
    print(json.dumps({"figures": figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
