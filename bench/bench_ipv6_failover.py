"""Benchmark: how long LAN hosts take to move to the other ISP's prefix (RFC 8475), printed
(needs root and dnsmasq).

In the IPv6 router lab (lab/gateway6.py: two ISPs delegating 2001:db8:a::/48 and
2001:db8:b::/48, two LAN hosts with SLAAC from dnsmasq's RAs), under `multihome watch` with
dnsmasq as the RA daemon, the ISP whose prefix the hosts use loses its upstream. From the
hosts' view: the time from the failure until every new connection has its source in the other
prefix and succeeds (the health checks' detection, dnsmasq's restart, the RA, the hosts'
source selection); and the time from the deprecation on the LAN. Several rounds, each on a
fresh network; the median and the worst. Target: under 10 s.

Usage: python bench/bench_ipv6_failover.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile

from multihome.lab import gateway6_run as run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    options = run.Gateway6Options(rate=25.0, failover_seconds=14.0)
    moved, deprecated, failed_late = [], [], 0
    with tempfile.TemporaryDirectory(prefix="bench-gw6-") as workdir:
        os.environ["MULTIHOME_STATE_DIR"] = os.path.join(workdir, "state")
        for number in range(args.rounds):
            result = run.run_phase("failover", options, os.path.join(workdir, str(number)))
            assert result.moved_s is not None
            moved.append(result.moved_s)
            shown = next(e for e in result.events if "deprecated on the LAN" in e)
            deprecated.append(float(re.findall(r"([\d.]+) s after", shown)[0]))
            failed_late += result.failed_after_deadline
            print(
                f"round {number + 1}: new connections moved {result.moved_s:.1f} s after the"
                f" failure; prefix deprecated on the LAN after {deprecated[-1]:.1f} s",
                flush=True,
            )
    print(
        f"failover to the other prefix (LAN hosts' view), {args.rounds} rounds:"
        f" median {statistics.median(moved):.1f} s, worst {max(moved):.1f} s (target 10 s);"
        f" deprecation seen on the LAN: median {statistics.median(deprecated):.1f} s;"
        f" new connections failed from 10 s on: {failed_late}"
    )


if __name__ == "__main__":
    main()
