"""Benchmark: the doctor's own CPU time as the number of addresses grows.

A host with four uplinks (each with a default route in main) and N addresses spread over
them, twice: stock (no rules) and applied (multihome's 2N source rules and tables in place,
as after `multihome apply`). The route lookups are given as the kernel would answer them,
so only the doctor's work is timed: `probes` (which lookups to ask) and `diagnose` (the
findings). Prints the median CPU time per size and the ratio per doubling of N (2.0 is
linear; a pairwise comparison of addresses would give 4.0).

As root, also runs the whole `multihome doctor` (read, plan, kernel route lookups,
findings) in a namespace with 1,000 addresses and prints its wall clock and CPU time.
Usage: python bench/bench_doctor.py [--rounds N]
"""

from __future__ import annotations

import argparse
import atexit
import ipaddress
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial

from multihome.core.config import Config
from multihome.core.diff import diff
from multihome.core.doctor import diagnose, probes
from multihome.core.model import (
    TABLE_MAIN,
    Address,
    Change,
    Desired,
    Family,
    HostState,
    Interface,
    IPAddress,
    Lookup,
    Route,
)
from multihome.core.plan import plan
from multihome.core.records import replace

UPLINKS = 4
SIZES = (250, 500, 1000, 2000)


def host(addresses: int) -> HostState:
    """Four uplinks, uplink k on 198.18.2k.0/23 with its gateway .1, N addresses in all."""
    names = [f"eth{k}" for k in range(UPLINKS)]
    interfaces = (
        Interface(1, "lo", loopback=True),
        *(Interface(k + 2, name) for k, name in enumerate(names)),
    )
    networks = [ipaddress.IPv4Network(f"198.18.{2 * k}.0/23") for k in range(UPLINKS)]
    listed = tuple(
        Address(name, ipaddress.IPv4Interface((int(network.network_address) + 2 + i, 23)))
        for name, network in zip(names, networks, strict=True)
        for i in range(addresses // UPLINKS)
    )
    routes = []
    for k, (name, network) in enumerate(zip(names, networks, strict=True)):
        gateway = network.network_address + 1
        routes += [
            Route(
                Family.INET,
                TABLE_MAIN,
                Family.INET.any,
                dev=name,
                gateway=gateway,
                protocol=16,
                metric=100 * (k + 1),
            ),
            Route(Family.INET, TABLE_MAIN, network, dev=name, protocol=2, scope=253),
        ]
    sysctls = {
        f"net/ipv4/conf/{n}/{key}": "0"
        for n in ["all", *names]
        for key in ("arp_ignore", "arp_announce", "rp_filter")
    }
    return HostState(interfaces=interfaces, addresses=listed, routes=tuple(routes), sysctls=sysctls)


def answers(
    state: HostState, wanted: list[tuple[IPAddress, IPAddress]], own: bool
) -> dict[tuple[IPAddress, IPAddress], Lookup]:
    """The kernel's answers: by the owning uplink (applied) or all by eth0 (stock)."""
    owner = {a.ip.ip: a.ifname for a in state.addresses}
    return {(d, s): Lookup(d, s, dev=owner[s] if own else "eth0", table=254) for d, s in wanted}


def doctor(
    state: HostState,
    lookups: dict[tuple[IPAddress, IPAddress], Lookup],
    desired: Desired,
    changes: list[Change],
    uplinks: list[str],
) -> None:
    """The doctor's own work: which lookups to ask, then the findings."""
    probes(state, uplinks)
    diagnose(state, lookups, desired, changes, uplinks)


def cpu(action: Callable[[], None], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.process_time()
        action()
        times.append(time.process_time() - start)
    return statistics.median(times)


def pure(rounds: int) -> None:
    uplinks = [f"eth{k}" for k in range(UPLINKS)]
    print(f"doctor CPU time, {UPLINKS} uplinks, route lookups given (median of {rounds})")
    print(f"{'addresses':>10}{'rules':>8}{'stock':>12}{'applied':>12}{'applied/address':>17}")
    previous: tuple[float, float] | None = None
    ratios = []
    for size in SIZES:
        stock = host(size)
        desired = plan(Config(), stock)
        applied = replace(
            stock,
            rules=desired.rules,
            routes=stock.routes + desired.routes,
            sysctls={**stock.sysctls, **{s.path: s.value for s in desired.sysctls}},
        )
        figures = []
        for state, own in ((stock, False), (applied, True)):
            changes = diff(desired, state)
            wanted = probes(state, uplinks)
            lookups = answers(state, wanted, own)

            figures.append(cpu(partial(doctor, state, lookups, desired, changes, uplinks), rounds))
        print(
            f"{size:>10}{len(applied.rules):>8}{figures[0] * 1e3:>9.1f} ms"
            f"{figures[1] * 1e3:>9.1f} ms{figures[1] / size * 1e6:>14.1f} us"
        )
        if previous is not None:
            ratios.append((size, figures[0] / previous[0], figures[1] / previous[1]))
        previous = (figures[0], figures[1])
    for size, stock_ratio, applied_ratio in ratios:
        print(
            f"ratio {size} / {size // 2} addresses: stock {stock_ratio:.2f}x,"
            f" applied {applied_ratio:.2f}x (linear: 2.00x, pairwise: 4.00x)"
        )


NS = f"mhbenchdoc{os.getpid()}"


def whole_command(rounds: int) -> None:
    """`multihome doctor` in a namespace with 1,000 addresses on four veth uplinks."""
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        lines = []
        for k in range(UPLINKS):
            lines += [f"link add eth{k} type veth peer name p{k}", f"link set eth{k} up"]
            lines += [f"link set p{k} up"]
            lines += [f"addr add 198.18.{k}.{i}/24 dev eth{k}" for i in range(2, 252)]
            lines.append(f"route add default via 198.18.{k}.1 dev eth{k} metric {100 * (k + 1)}")
        with tempfile.NamedTemporaryFile("w", suffix=".batch") as file:
            file.write("\n".join(lines) + "\n")
            file.flush()
            subprocess.run(["ip", "-n", NS, "-batch", file.name], check=True)
        state_dir = tempfile.mkdtemp(prefix="mhbenchdoc-")
        atexit.register(shutil.rmtree, state_dir, True)
        env = {**os.environ, "MULTIHOME_STATE_DIR": state_dir}
        command = [sys.executable, "-m", "multihome", "--netns", NS, "doctor"]
        for label, setup in (("stock", None), ("applied", "apply")):
            if setup:
                subprocess.run([*command[:-1], setup], env=env, check=True, capture_output=True)
            walls, cpus = [], []
            for _ in range(rounds):
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                subprocess.run(command, env=env, capture_output=True)
                walls.append(time.perf_counter() - start)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            print(
                f"multihome doctor, 1000 addresses, {label}: wall {statistics.median(walls):.3f} s,"
                f" CPU {statistics.median(cpus):.3f} s (whole process: start-up, read, plan,"
                " 2000 kernel route lookups, findings)"
            )
    finally:
        subprocess.run(["ip", "netns", "del", NS], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    pure(args.rounds)
    if os.geteuid() == 0:
        print()
        whole_command(args.rounds)


if __name__ == "__main__":
    main()
