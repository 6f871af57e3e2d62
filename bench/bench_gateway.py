"""Benchmark: gateway mode's cost, printed (needs root, nft and conntrack).

In the gateway lab network (a router with two uplinks behind ISPs that drop spoofed sources, a
LAN client, a server on the "internet"), forwarded through the router:
1. connections per second: short TCP connections (connect, 64 bytes echoed, close), 50 in
   parallel, from the LAN client to the server;
2. throughput: one TCP stream from the client to the server for a few seconds;
each with a plain NAT router (main's default route, one masquerade rule: what a router has
without multihome) and with multihome's gateway mode (its rules, multipath route and nftables
table), alternating, several rounds; medians and the overhead. Target: under 5%.
3. the time to apply the whole gateway layout (`multihome apply`, a CLI process) and to remove
   it, median of several runs.

Usage: python bench/bench_gateway.py [--rounds N] [--connections N] [--seconds S]
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
import time

from multihome.lab import gateway as lab
from multihome.lab.gateway_workload import PORT
from multihome.lab.topology import Network

PLAIN_NAT = """\
table ip plainnat {
\tchain post {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tiifname "lan0" oifname "eth0" masquerade
\t}
}
"""

CONNECT = """
import asyncio, sys, time
address, total, parallel, PORT = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
failed = 0
async def one():
    global failed
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(address, PORT), 2)
        w.write(b"x" * 64); await w.drain()
        await asyncio.wait_for(r.readexactly(64), 2)
        w.close()
    except Exception:
        failed += 1
async def worker(n):
    for _ in range(n):
        await one()
async def main():
    start = time.perf_counter()
    await asyncio.gather(*(worker(total // parallel) for _ in range(parallel)))
    print(total // parallel * parallel / (time.perf_counter() - start), failed)
asyncio.run(main())
"""

SINK = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 9100)); s.listen(4); print("ready", flush=True)
while True:
    c, _ = s.accept()
    while c.recv(1 << 20):
        pass
    c.close()
"""

STREAM = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], 9100)); buf = b"x" * (1 << 20)
seconds = float(sys.argv[2]); sent = 0; start = time.perf_counter()
while time.perf_counter() - start < seconds:
    s.sendall(buf); sent += len(buf)
s.close(); print(sent * 8 / (time.perf_counter() - start))
"""


def netns_python(ns: str, code: str, *args: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout


def start_servers(ns: str) -> list[subprocess.Popen[str]]:
    """The echo server of the connections and the sink of the stream, in namespace `ns`."""
    procs: list[subprocess.Popen[str]] = []
    for argv in (
        [sys.executable, "-m", "multihome.lab.gateway_workload", "server", "--netns", ns],
        ["ip", "netns", "exec", ns, sys.executable, "-c", SINK],
    ):
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None and "ready" in proc.stdout.readline()
    return procs


def measure(
    net: Network, mode: str, config: str, args: argparse.Namespace
) -> tuple[float, float, list[float], list[float]]:
    router, client, server = net.ns("router"), net.ns("client"), net.ns("server")
    multihome = [sys.executable, "-m", "multihome", "--netns", router, "-c", config]
    nat = ["ip", "netns", "exec", router, "nft"]
    procs: list[subprocess.Popen[str]] = []
    applied: list[float] = []
    removed: list[float] = []
    try:
        procs += start_servers(server)
        if mode == "plain NAT":
            subprocess.run([*nat, "-f", "-"], input=PLAIN_NAT, text=True, check=True)
        else:
            start = time.perf_counter()
            subprocess.run([*multihome, "apply"], check=True, capture_output=True)
            applied.append(time.perf_counter() - start)
        rate, failed = netns_python(
            client, CONNECT, lab.SERVER_ADDRESS, str(args.connections), "50", str(PORT)
        ).split()
        if int(failed):
            print(f"warning: {failed} connections failed ({mode})")
        bps = float(netns_python(client, STREAM, lab.SERVER_ADDRESS, str(args.seconds)))
        if mode == "multihome":
            start = time.perf_counter()
            subprocess.run([*multihome, "remove"], check=True, capture_output=True)
            removed.append(time.perf_counter() - start)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
    return float(rate), bps, applied, removed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root")
    workdir = tempfile.mkdtemp(prefix="bench-gw-")
    atexit.register(shutil.rmtree, workdir, True)
    os.environ["MULTIHOME_STATE_DIR"] = workdir
    config = os.path.join(workdir, "multihome.toml")
    with open(config, "w", encoding="utf-8") as file:
        file.write(lab.CONFIG)
    os.chmod(config, 0o600)
    results: dict[str, dict[str, list[float]]] = {
        "plain NAT": {"cps": [], "bps": []},
        "multihome": {"cps": [], "bps": []},
    }
    apply_times: list[float] = []
    remove_times: list[float] = []
    for round_number in range(args.rounds):
        for mode in ("plain NAT", "multihome"):
            # a fresh network each time: no TIME_WAIT sockets or conntrack entries carry over
            prefix = f"bgw{os.getpid()}r{round_number}{mode[0]}-"
            with Network(lab.gateway(2), prefix=prefix) as net:
                cps, bps, applied, removed = measure(net, mode, config, args)
            results[mode]["cps"].append(cps)
            results[mode]["bps"].append(bps)
            apply_times += applied
            remove_times += removed
    print(f"forwarded through the router, {args.rounds} rounds alternating, medians:")
    medians = {m: {k: statistics.median(v) for k, v in r.items()} for m, r in results.items()}
    for mode, values in medians.items():
        print(
            f"  {mode:10} {values['cps']:8,.0f} connections/s   {values['bps'] / 1e9:6.2f} Gbit/s"
            f"  (rounds: {', '.join(f'{v:,.0f}' for v in results[mode]['cps'])} conn/s;"
            f" {', '.join(f'{v / 1e9:.2f}' for v in results[mode]['bps'])} Gbit/s)"
        )
    for key, what in (("cps", "connections/s"), ("bps", "throughput")):
        base, ours = medians["plain NAT"][key], medians["multihome"][key]
        print(f"  overhead, {what}: {(base - ours) / base:+.1%}")
    print(
        f"apply of the gateway layout (CLI process, 17 changes): median"
        f" {statistics.median(apply_times) * 1000:.0f} ms; remove: median"
        f" {statistics.median(remove_times) * 1000:.0f} ms"
    )
    print(json.dumps({"medians": medians, "apply_s": apply_times, "remove_s": remove_times}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
