"""Benchmark: apply a plan for 1,000 source addresses, against `ip -batch`, side by side.

A namespace gets four uplinks (veth) with 250 addresses each (three IPv4 documentation
/24s and one IPv6 /64): 1,000 rules of band 1, 1,000 of band 3, the main rules and the
tables' routes. Each round:
  multihome   apply (read, plan, diff, batched netlink write, re-read, state file), then
              the write alone (writer.apply of the same changes), then remove;
  ip -batch   the same changes as `ip -batch` commands (rendered by multihome's own ip
              renderer), then their removal;
  no-op       a second apply on the applied state: in-process, and the whole CLI minus
              the interpreter's own start-up.
Prints medians over the rounds. Needs root. Usage: python bench/bench_apply.py [--rounds N]
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from multihome.core.config import Config
from multihome.core.diff import diff
from multihome.core.model import Desired, HostState
from multihome.core.plan import plan
from multihome.host import operations
from multihome.kernel import discover, namespace, writer
from multihome.render import ip as render_ip

NS = f"mhbench{os.getpid()}"
UPLINKS = [
    ("eth0", "192.0.2.{}/24", "192.0.2.254"),
    ("eth1", "198.51.100.{}/24", "198.51.100.254"),
    ("eth2", "203.0.113.{}/24", "203.0.113.254"),
    ("eth3", "2001:db8:3::{:x}/64", "2001:db8:3::ffff"),
]
PER_UPLINK = 250


def ip_batch(lines: list[str], family: str = "") -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".batch") as file:
        file.write("\n".join(lines) + "\n")
        file.flush()
        start = time.perf_counter()
        subprocess.run(
            ["ip", "-n", NS, *([family] if family else []), "-batch", file.name], check=True
        )
        return time.perf_counter() - start


def ip_batch_commands(commands: list[str]) -> float:
    """Rendered `ip -4 ...`/`ip -6 ...` commands as one `ip -batch` run per family."""
    total = 0.0
    for family in ("-4", "-6"):
        prefix = f"ip {family} "
        lines = [c.removeprefix(prefix) for c in commands if c.startswith(prefix)]
        if lines:
            total += ip_batch(lines, family)
    return total


def setup() -> None:
    subprocess.run(["ip", "netns", "add", NS], check=True)
    lines = []
    for k, (name, pattern, gateway) in enumerate(UPLINKS):
        lines += [
            f"link add {name} type veth peer name p{name}",
            f"link set {name} up",
            f"link set p{name} up",
        ]
        for i in range(1, PER_UPLINK + 1):
            lines.append(
                f"addr add {pattern.format(i)} dev {name}" + (" nodad" if ":" in pattern else "")
            )
        lines.append(f"route add default via {gateway} dev {name} metric {100 * (k + 1)}")
    ip_batch(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if "MULTIHOME_STATE_DIR" not in os.environ:
        state_dir = tempfile.mkdtemp(prefix="mhbench-state-")
        atexit.register(shutil.rmtree, state_dir, True)
        os.environ["MULTIHOME_STATE_DIR"] = state_dir
    setup()
    try:
        namespace.enter(NS)
        run(args.rounds)
    finally:
        subprocess.run(["ip", "netns", "del", NS], check=False)


def run(rounds: int) -> None:
    host = discover.read_state()
    desired = plan(Config(), host)
    changes = diff(desired, host)
    removal_cmds = render_ip.commands(diff(Desired(desired.ownership), _applied(desired, host)))
    add_cmds = render_ip.commands(changes)
    ops = len([c for c in changes if c.obj.__class__.__name__ != "Sysctl"])
    print(
        f"plan: {len(desired.rules)} rules, {len(desired.routes)} routes "
        f"({ops} netlink operations) for {len(host.addresses)} source addresses"
    )

    full, write, ipb, noop_inproc, remove_full, ipb_remove = [], [], [], [], [], []
    for _ in range(rounds):
        start = time.perf_counter()
        operations.apply(None)
        full.append(time.perf_counter() - start)
        start = time.perf_counter()
        operations.apply(None)
        noop_inproc.append(time.perf_counter() - start)
        start = time.perf_counter()
        operations.remove(None)
        remove_full.append(time.perf_counter() - start)

        fresh = discover.read_state()
        todo = [
            c for c in diff(plan(Config(), fresh), fresh) if c.obj.__class__.__name__ != "Sysctl"
        ]
        start = time.perf_counter()
        writer.apply(todo, fresh)
        write.append(time.perf_counter() - start)
        writer.apply([c.inverse() for c in reversed(todo)], fresh)

        ipb.append(ip_batch_commands(add_cmds))
        ipb_remove.append(ip_batch_commands(removal_cmds))

    operations.apply(None)
    python = [_time([sys.executable, "-c", "pass"]) for _ in range(rounds)]
    imports = [_time([sys.executable, "-c", "import multihome.cli"]) for _ in range(rounds)]
    cli = [_time([sys.executable, "-m", "multihome", "apply"]) for _ in range(rounds)]
    operations.remove(None)

    med = statistics.median
    print(f"{'':34}{'median':>10}{'per op':>10}")
    rows = [
        ("ip -batch (add)", med(ipb)),
        ("multihome write (writer.apply)", med(write)),
        ("multihome apply (read+plan+write)", med(full)),
        ("ip -batch (remove)", med(ipb_remove)),
        ("multihome remove", med(remove_full)),
        ("no-op re-apply, in process", med(noop_inproc)),
    ]
    for label, seconds in rows:
        print(f"{label:34}{seconds * 1000:8.1f} ms{seconds / ops * 1e6:7.1f} us")
    print(f"ratio write / ip -batch:          {med(write) / med(ipb):.2f}x")
    print(f"ratio apply / ip -batch:          {med(full) / med(ipb):.2f}x")
    print(f"ratio remove / ip -batch remove:  {med(remove_full) / med(ipb_remove):.2f}x")
    print(
        f"no-op CLI run: {med(cli) * 1000:.1f} ms; python start-up {med(python) * 1000:.1f} ms;"
        f" imports {(med(imports) - med(python)) * 1000:.1f} ms;"
        f" beyond interpreter start-up {(med(cli) - med(python)) * 1000:.1f} ms"
    )


def _applied(desired: Desired, host: HostState) -> HostState:
    from multihome.core.records import replace

    return replace(host, rules=host.rules + desired.rules, routes=host.routes + desired.routes)


def _time(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
