"""Benchmark: IPv6 source rules against a source-specific route (needs root, nft).

IPv6 has what IPv4 lacks: a route can select by source prefix (`default from P via G`,
IPV6_SUBTREES), so the layout of an uplink alone on its prefix lives in main with one rule
that looks it up there (plan.py). This measures what that wins over the rules: three
identical servers in throwaway namespaces, each with two uplinks eth0 (2001:db8:a::1/64) and
eth1 (2001:db8:b::1/64) to ISP namespaces, a default route per uplink in main (metric 100 and
200, as router advertisements install them):
  stock      no policy routing: the reply from eth1's address leaves by eth0 (wrong);
  rules      the layout of rules, written by `ip -batch` (multihome's before IPv6 took routes,
             and still where a prefix is shared): a table per uplink, main's suppress rule
             and a rule per uplink (1001, 1002);
  multihome  `multihome apply`: a route from each uplink's prefix in main and `from P lookup
             main` at 1002 (ahead of anyone's suppress rule, which would hide the route).
Measured: unconnected UDP sendto/s from eth1's address to 2001:db8:ff::10 beyond the gateway
(dropped at the ISP's ingress), per CPU second of a process pinned to one CPU, in rounds that
alternate the order; printed: the median rate and the median of the rounds' ratios to stock.

Usage: python bench/bench_datapath_ipv6.py [--rounds N] [--seconds S] [--cpu N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys

from bench_cli import MULTIHOME, PYTHON, netns

PEER, SOURCE = "2001:db8:ff::10", "2001:db8:b::1"
LOOP = r"""
import os, socket, sys, time
os.sched_setaffinity(0, {int(sys.argv[3])})
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 0))
data, target, done = bytes(64), (sys.argv[4], 9), 0
cpu, end = time.process_time(), time.perf_counter() + float(sys.argv[2])
while time.perf_counter() < end:
    for _ in range(500):
        s.sendto(data, target)
    done += 500
print(done / (time.process_time() - cpu))
"""
DROP = "table inet bench {\nchain sink {\ntype filter hook prerouting priority -300;\n" + (
    "udp dport 9 drop\n}\n}\n"
)


def run(ns: str, *command: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *command],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def build(server: str, isps: tuple[str, str]) -> None:
    """Two uplinks, each a veth to its ISP, with the ISP's default route in main."""
    run(server, "ip", "link", "set", "lo", "up")
    for k, isp in enumerate(isps):
        net = "ab"[k]
        veth = ("ip", "link", "add", f"eth{k}", "netns", server, "type", "veth")
        subprocess.run([*veth, "peer", "name", "wan", "netns", isp], check=True)
        run(server, "ip", "link", "set", f"eth{k}", "up")
        run(server, "ip", "-6", "addr", "add", f"2001:db8:{net}::1/64", "dev", f"eth{k}", "nodad")
        for line in ("link set lo up", "link set wan up"):
            run(isp, "ip", *line.split())
        run(isp, "ip", "-6", "addr", "add", f"2001:db8:{net}::fe/64", "dev", "wan", "nodad")
        run(isp, "ip", "-6", "addr", "add", f"{PEER}/128", "dev", "lo")
        run(isp, "nft", "-f", "-", stdin=DROP)
        run(
            server,
            *("ip", "-6", "route", "add", "default", "via", f"2001:db8:{net}::fe"),
            *("dev", f"eth{k}", "metric", str(100 * (k + 1))),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--cpu", type=int, default=min(1, (os.cpu_count() or 1) - 1))
    args = parser.parse_args()
    tag = f"mhb6{os.getpid()}"
    labels = ("stock", "rules", "multihome")
    with contextlib.ExitStack() as stack:
        servers = {}
        for index, label in enumerate(labels):
            server, isp0, isp1 = (
                stack.enter_context(netns(f"{tag}{index}{part}")) for part in "sab"
            )
            build(server, (isp0, isp1))
            servers[label] = server
        subprocess.run(
            [*MULTIHOME, "--netns", servers["multihome"], "apply"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        lines = ["rule add pref 1001 lookup main suppress_prefixlength 0 proto 77"]
        for k, net in enumerate("ab"):
            lines += [
                f"route add 2001:db8:{net}::/64 dev eth{k} table {100 + k} proto 77",
                f"route add default via 2001:db8:{net}::fe dev eth{k} table {100 + k} proto 77",
                f"rule add pref 1002 from 2001:db8:{net}::/64 lookup {100 + k} proto 77",
            ]
        run(servers["rules"], "ip", "-6", "-batch", "-", stdin="\n".join(lines) + "\n")
        print(
            f"IPv6 unconnected UDP sendto/s from {SOURCE} (eth1's); {args.rounds} rounds of"
            f" {args.seconds:g} s, pinned to CPU {args.cpu}; rates per CPU second"
        )
        for label, server in servers.items():
            got = run(server, "ip", "-6", "route", "get", PEER, "from", SOURCE).split()
            rules = len(json.loads(run(server, "ip", "-6", "-j", "rule")))
            print(f"  {label:<10} leaves by {got[got.index('dev') + 1]}, {rules} IPv6 rules")

        def rate(server: str, seconds: float) -> float:
            out = run(server, PYTHON, "-c", LOOP, SOURCE, str(seconds), str(args.cpu), PEER)
            return float(out)

        for server in servers.values():
            rate(server, 0.3)  # warm-up: neighbours resolved
        rates: dict[str, list[float]] = {label: [] for label in labels}
        for turn in range(args.rounds):
            order = list(servers.items())
            for label, server in order if turn % 2 == 0 else order[::-1]:
                rates[label].append(rate(server, args.seconds))
        for label in labels:
            ratios = [a / b for a, b in zip(rates[label], rates["stock"], strict=True)]
            print(
                f"  {label:<10} {statistics.median(rates[label]):>10,.0f}/s"
                f"  {statistics.median(ratios):.2f} of stock"
            )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
