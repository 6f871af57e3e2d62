"""Benchmark: the lab's balance, bandwidth and speed, printed side by side (needs root).

1. Balance: the default seed run (20,000 requests); each NIC's TX share in the policy phase,
   against 1/N (target: within 0.5 %; the article: 0.03 %).
2. Bandwidth: every server NIC rate-limited to 100 Mbit/s (tc tbf), 2 and 4 NICs: goodput of
   the policy phase against the sum of the NIC rates (target 97 %) and against the
   destination phase (targets 1.9x and 3.8x). tbf meters whole frames, so HTTP goodput is at
   most 1448/1514 = 95.6 % of a link's rate with a 1500-byte MTU; the link utilisation (the
   server's TX bytes per second over the sum of the rates) is printed beside it.
3. Speed: wall-clock time of the default run (both phases; target under 60 s), and the built-in
   server's and client's throughput without a rate limit.

Usage: python bench/bench_lab.py [--quick]   (--quick: fewer requests, for a smoke test)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

MSS_EFFICIENCY = 1448 / 1514  # TCP payload per Ethernet frame (timestamps on, MTU 1500)


def lab(*args: str) -> tuple[dict[str, Any], float]:
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "multihome", "lab", *args, "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out), time.monotonic() - start


def phase(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in report["phases"] if p["name"] == name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    requests = 2000 if args.quick else 20000

    report, seconds = lab("--requests", str(requests))
    policy, destination = phase(report, "policy"), phase(report, "destination")
    print(f"== balance: seed, {requests} requests, 2 NICs")
    for name, data in policy["interfaces"].items():
        share = data["tx_share"]
        print(
            f"  {name}: {data['tx_packets']:>9} TX packets, share {share:.4%}, "
            f"off 1/N by {abs(share - 0.5):.4%}"
        )
    destination_tx = max(i["tx_share"] for i in destination["interfaces"].values())
    print(f"  destination phase: {destination_tx:.2%} of TX on one NIC")

    print(f"\n== speed: default run, both phases: {seconds:.1f} s wall clock")
    for p in (destination, policy):
        rate = p["requests"]["ok"] / p["seconds"]
        print(
            f"  {p['name']:>11}: {rate:,.0f} requests/s, goodput {p['goodput_bps'] / 1e6:,.1f}"
            " Mbit/s (built-in server and client, no rate limit)"
        )

    print("\n== bandwidth: every server NIC limited to 100 Mbit/s (tc tbf)")
    for nics in (2, 4):
        count = (500 if args.quick else 1500) * nics
        report, _ = lab("--nics", str(nics), "--link-rate", "100mbit", "--requests", str(count))
        dest, pol = phase(report, "destination"), phase(report, "policy")
        link_sum = 100e6 * nics
        tx_bps = sum(i["tx_bytes"] for i in pol["interfaces"].values()) * 8 / pol["seconds"]
        print(
            f"  {nics} NICs, {count} requests: policy goodput {pol['goodput_bps'] / 1e6:.1f} "
            f"Mbit/s = {pol['goodput_bps'] / link_sum:.1%} of {link_sum / 1e6:.0f} Mbit/s "
            f"({pol['goodput_bps'] / link_sum / MSS_EFFICIENCY:.1%} of the payload maximum); "
            f"link utilisation {tx_bps / link_sum:.1%}; destination goodput "
            f"{dest['goodput_bps'] / 1e6:.1f} Mbit/s; gain "
            f"{pol['goodput_bps'] / dest['goodput_bps']:.2f}x"
        )


if __name__ == "__main__":
    main()
