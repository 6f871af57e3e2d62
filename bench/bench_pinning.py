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
multihome's nftables table with its forward chain), alternating, several rounds, a fresh
network each time; medians and the cost. Target: under 5 %.

Usage: python bench/bench_pinning.py [--rounds N] [--connections N] [--seconds S]
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


def measure(net: Network, mode: str, args: argparse.Namespace) -> tuple[float, float]:
    router, vm, outside = net.ns(lab.ROUTER), net.ns(lab.CLIENT), net.ns(lab.SERVER)
    for argv in lab.port_forward((PORT, SINK_PORT)):
        subprocess.run(["ip", "netns", "exec", router, *argv], check=True)
    procs: list[subprocess.Popen[str]] = []
    try:
        for argv in (
            [sys.executable, "-m", "multihome.lab.gateway_workload", "server", "--netns", vm],
            ["ip", "netns", "exec", vm, sys.executable, "-c", SINK],
        ):
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
            procs.append(proc)
            assert proc.stdout is not None and "ready" in proc.stdout.readline()
        if mode == "pinned":
            done = subprocess.run(
                [sys.executable, "-m", "multihome", "--netns", router, "apply"],
                check=True,
                capture_output=True,
                text=True,
            )
            assert "inbound pinning: eth0, eth1: DNAT to virbr0" in done.stdout, done.stdout
        address = lab.uplink_address(0)
        rate, failed = netns_python(
            outside, CONNECT, address, str(args.connections), "50", str(PORT)
        ).split()
        if int(failed):
            print(f"warning: {failed} connections failed ({mode})")
        bps = float(netns_python(outside, STREAM, address, str(args.seconds)))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
    return float(rate), bps


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root")
    workdir = tempfile.mkdtemp(prefix="bench-pin-")
    atexit.register(shutil.rmtree, workdir, True)
    os.environ["MULTIHOME_STATE_DIR"] = workdir
    results: dict[str, dict[str, list[float]]] = {
        "stock": {"cps": [], "bps": []},
        "pinned": {"cps": [], "bps": []},
    }
    for round_number in range(args.rounds):
        for mode in results:
            prefix = f"bpin{os.getpid()}r{round_number}{mode[0]}-"
            with Network(lab.vm_host(2), prefix=prefix) as net:
                cps, bps = measure(net, mode, args)
            results[mode]["cps"].append(cps)
            results[mode]["bps"].append(bps)
    print(
        f"through a DNAT port forward to a VM behind virbr0 (via eth0), {args.rounds} rounds"
        " alternating, medians:"
    )
    medians = {m: {k: statistics.median(v) for k, v in r.items()} for m, r in results.items()}
    for mode, values in medians.items():
        print(
            f"  {mode:7} {values['cps']:8,.0f} connections/s   {values['bps'] / 1e9:6.2f} Gbit/s"
            f"  (rounds: {', '.join(f'{v:,.0f}' for v in results[mode]['cps'])} conn/s;"
            f" {', '.join(f'{v / 1e9:.2f}' for v in results[mode]['bps'])} Gbit/s)"
        )
    for key, what in (("cps", "connections/s"), ("bps", "throughput")):
        base, ours = medians["stock"][key], medians["pinned"][key]
        print(f"  pinned / stock, {what}: {ours / base:.3f} (cost {(base - ours) / base:+.1%})")
    print(json.dumps({"medians": medians, "rounds": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
