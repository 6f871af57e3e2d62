"""`multihome lab gateway`: LAN clients behind a router with N uplinks, each behind its own
ISP that drops spoofed sources, and a server on the "internet" (lab/gateway.py). A fresh
network per phase:

round-robin-snat  the reader's set-up: SNAT over the uplinks' addresses in turn (nft numgen),
                  main's default route unchanged
policy            multihome gateway mode (`multihome apply` with [gateway])
failover          gateway mode and `multihome watch`; ISP 1's upstream dies a third of the way
                  through while the router's link stays up, and comes back at two thirds

The workload (gateway_workload.py) mixes short connections at a steady rate with long-lived
sessions that send a byte every 100 ms.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

from multihome.core.model import Counters
from multihome.core.records import asdict, field, record
from multihome.errors import MultihomeError
from multihome.kernel import discover, namespace
from multihome.kernel.processes import stop
from multihome.lab import gateway as topology
from multihome.lab.topology import Network, clean_stale

PHASES = ("round-robin-snat", "policy", "failover")
MASK = 0x0F000000
# seconds after the failure from which new connections must succeed: the failover phase's
# outage is past the gateway, found by the probes past it in 1.75-2 s (core/configkeys.py)
DETECTION_GRACE = 2.5


@record(frozen=True)
class GatewayOptions:
    nics: int = 2
    sessions: int = 20
    rate: float = 200.0  # short connections per second
    seconds: float = 9.0
    phases: tuple[str, ...] = PHASES


@record
class PhaseResult:
    name: str
    tx_packets: dict[str, int]  # per uplink, the router's TX
    connections: dict[str, int]  # per uplink, tracked by multihome's mark (0 without it)
    short_ok: int
    short_failed: int
    long_ok: int
    long_failed: int
    failure_at: float | None = None  # seconds after the start
    return_at: float | None = None
    detection_s: float | None = None
    long_on_dead: int = 0  # sessions on the failed uplink when it failed
    long_failed_elsewhere: int = 0  # sessions on other uplinks that failed (must be 0)
    short_failed_after_grace: int = 0  # new connections failed from failure + 2 s on
    events: list[str] = field(default_factory=list)

    @property
    def failed_share(self) -> float:
        total = self.short_ok + self.short_failed + self.long_ok + self.long_failed
        return (self.short_failed + self.long_failed) / total if total else 0.0

    def connection_shares(self) -> dict[str, float] | None:
        """Each uplink's share of the connections conntrack tracked by multihome's marks
        (None without gateway mode)."""
        total = sum(self.connections.values())
        return {n: v / total for n, v in self.connections.items()} if total else None

    def shares(self) -> dict[str, float]:
        total = sum(self.tx_packets.values())
        return {n: v / total if total else 0.0 for n, v in self.tx_packets.items()}


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def workload_client(
    netns: str, address: str, sessions: int, rate: float, seconds: float, size: int | None = None
) -> list[str]:
    """The gateway workload's client: `sessions` long-lived connections and `rate` new ones a
    second to `address` for `seconds` (each `size` bytes each way, if given)."""
    args = ["--netns", netns, "--address", address, "--sessions", str(sessions)]
    args += ["--rate", str(rate), "--seconds", str(seconds)]
    if size is not None:
        args += ["--size", str(size)]
    return python_module("multihome.lab.gateway_workload", "client", *args)


def run_checked(
    argv: list[str], stdin: str | None = None, env: dict[str, str] | None = None
) -> str:
    """Run a command; when it fails, a MultihomeError that carries its stderr (the cause)."""
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60, env=env)
    if result.returncode != 0:
        raise MultihomeError(f"{' '.join(argv[:6])} failed: {result.stderr.strip()}")
    return result.stdout


def round_robin_snat(nics: int) -> str:
    """The reader's rule: SNAT to the uplinks' addresses in turn (main's route unchanged)."""
    pairs = ", ".join(f"{i} : {topology.uplink_address(i)}" for i in range(nics))
    return (
        "table ip rrsnat {\n\tchain post {\n"
        "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
        f'\t\tiifname "lan0" snat to numgen inc mod {nics} map {{ {pairs} }}\n'
        "\t}\n}\n"
    )


def _tracked(ns: str, mark: int) -> set[int]:
    """The LAN client's source ports of the TCP connections conntrack holds with this mark."""
    mark_filter = f"{mark:#x}/{MASK:#x}"
    out = run_checked(
        ["ip", "netns", "exec", ns, "conntrack", "-L", "-p", "tcp", "--mark", mark_filter]
    )
    return {
        int(line.split("sport=")[1].split()[0])
        for line in out.splitlines()
        if f"src={topology.CLIENT_ADDRESS}" in line
    }


def read_counters(ns: str) -> dict[str, Counters]:
    with namespace.inside(ns):
        return discover.read_counters()


@contextlib.contextmanager
def process(argv: list[str], **kw: Any) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(argv, text=True, **kw)
    try:
        yield proc
    finally:
        stop(proc)


def echo_server(
    stack: contextlib.ExitStack, ns: str, lab: str, module: str = "multihome.lab.gateway_workload"
) -> None:
    """A workload's echo server in namespace `ns`, stopped with `stack`; returns once it
    listens (raises MultihomeError naming `lab` when it does not start)."""
    echo = stack.enter_context(
        process(python_module(module, "server", "--netns", ns), stdout=subprocess.PIPE)
    )
    assert echo.stdout is not None
    if "ready" not in echo.stdout.readline():
        raise MultihomeError(f"{lab}'s echo server did not start")


def balancing_devices(ns: str) -> int:
    result = subprocess.run(
        ["ip", "-n", ns, "-j", "route", "show", "table", "199"], capture_output=True, text=True
    )
    if result.returncode != 0 or not result.stdout.strip():
        return 0
    routes = json.loads(result.stdout)
    if not routes:
        return 0
    return len(routes[0].get("nexthops", [])) or 1


def _wait(condition: Any, seconds: float, what: str) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > seconds:
            raise MultihomeError(f"the lab waited {seconds:g} s for {what}")
        time.sleep(0.02)
    return time.monotonic() - start


def run_phase(name: str, options: GatewayOptions, workdir: str) -> PhaseResult:
    nics = options.nics
    with Network(topology.gateway(nics), prefix=f"mhgw{os.getpid()}-") as net:
        router, client, server = net.ns("router"), net.ns("client"), net.ns("server")
        config = os.path.join(workdir, f"{name}.toml")
        with open(config, "w", encoding="utf-8") as file:
            file.write(topology.uplinks_config(nics, probes=name == "failover"))
        os.chmod(config, 0o600)
        env = {**os.environ, "MULTIHOME_STATE_DIR": os.path.join(workdir, name)}
        events: list[str] = []
        with contextlib.ExitStack() as stack:
            echo_server(stack, server, "the gateway lab")
            multihome = python_module("multihome", "--netns", router, "-c", config)
            if name == "round-robin-snat":
                run_checked(
                    ["ip", "netns", "exec", router, "nft", "-f", "-"], stdin=round_robin_snat(nics)
                )
            elif name == "policy":
                run_checked([*multihome, "apply"], env=env)
            else:
                log = stack.enter_context(
                    open(os.path.join(workdir, "watch.log"), "w+", encoding="utf-8")
                )
                stack.enter_context(
                    process([*multihome, "watch"], env=env, stdout=log, stderr=subprocess.STDOUT)
                )
                _wait(lambda: balancing_devices(router) == nics, 15, "multihome watch")
            before = read_counters(router)
            argv = workload_client(
                client, topology.SERVER_ADDRESS, options.sessions, options.rate, options.seconds
            )
            work = stack.enter_context(process(argv, stdout=subprocess.PIPE))
            assert work.stdout is not None
            started = json.loads(work.stdout.readline())
            failure_at = return_at = detection = None
            on_dead: set[int] = set()
            if name == "failover":
                dead_mark = 2 * (MASK & -MASK)  # eth1, the second uplink
                isp = net.ns("isp1")
                time.sleep(max(0.0, started["started"] + options.seconds / 3 - time.time()))
                on_dead = _tracked(router, dead_mark) & set(started["long_ports"])
                failure_at = time.time() - started["started"]
                run_checked(["ip", "-n", isp, "link", "set", "dev", "up", "down"])
                detection = _wait(
                    lambda: balancing_devices(router) == nics - 1, 10, "the failure's detection"
                )
                events.append(
                    f"isp1 upstream down at {failure_at:.1f} s, detected in {detection:.2f} s"
                )
                time.sleep(max(0.0, started["started"] + 2 * options.seconds / 3 - time.time()))
                return_at = time.time() - started["started"]
                run_checked(["ip", "-n", isp, "link", "set", "dev", "up", "up"])
                back = _wait(lambda: balancing_devices(router) == nics, 10, "the return")
                events.append(f"isp1 upstream back at {return_at:.1f} s, rejoined in {back:.2f} s")
            outcome = json.loads(work.stdout.readline())
            after = read_counters(router)
            connections = {
                f"eth{i}": len(_tracked(router, (i + 1) * (MASK & -MASK)))
                if name != "round-robin-snat"
                else 0
                for i in range(nics)
            }
        short = outcome["short"]
        long = outcome["long"]
        result = PhaseResult(
            name=name,
            tx_packets={
                f"eth{i}": after[f"eth{i}"].tx_packets - before[f"eth{i}"].tx_packets
                for i in range(nics)
            },
            connections=connections,
            short_ok=sum(1 for _, ok in short if ok),
            short_failed=sum(1 for _, ok in short if not ok),
            long_ok=sum(1 for s in long if s["failed_at"] is None),
            long_failed=sum(1 for s in long if s["failed_at"] is not None)
            + outcome["long_failed_at_open"],
            failure_at=failure_at,
            return_at=return_at,
            detection_s=detection,
            events=events,
        )
        if failure_at is not None:
            result.long_on_dead = len(on_dead)
            result.long_failed_elsewhere = sum(
                1 for s in long if s["failed_at"] is not None and s["port"] not in on_dead
            )
            result.short_failed_after_grace = sum(
                1 for t, ok in short if not ok and t >= failure_at + DETECTION_GRACE
            )
        return result


def keep(nics: int, name: str) -> None:
    """`lab gateway --keep NAME`: a fresh gateway network left up (NAME-router, NAME-client,
    NAME-server, NAME-isp0, ...), with stock routing and forwarding on; `lab load NAME` runs
    downloads from the LAN client from the server on the "internet"."""
    from multihome.lab.run import keep_topology

    keep_topology(topology.gateway(nics), name, "gateway", nics, [topology.SERVER_ADDRESS])


def run(
    options: GatewayOptions, report: Callable[[str], None] = lambda text: None
) -> list[PhaseResult]:
    """Every phase on a fresh network; `report` hears one line as each starts and ends."""
    clean_stale()
    phases = []
    with tempfile.TemporaryDirectory(prefix="multihome-gw-") as workdir:
        for number, name in enumerate(options.phases, 1):
            report(
                f"phase {number}/{len(options.phases)} {name}: running"
                f" ({options.seconds:g} s of load)"
            )
            started = time.monotonic()
            phases.append(run_phase(name, options, workdir))
            report(f"phase {name}: done in {time.monotonic() - started:.0f} s")
    return phases


# -- report (pure) ---------------------------------------------------------------------------


def listing(phase: PhaseResult) -> list[str]:
    lines = []
    total = sum(phase.tx_packets.values())
    for name, packets in phase.tx_packets.items():
        share = packets / total if total else 0.0
        count = phase.connections[name]
        tracked = f", {count} connections tracked" if count else ""
        lines.append(f"  {name}: TX packets {packets:,} ({share:.1%}){tracked}")
    lines.append(
        f"  short connections: {phase.short_ok} ok, {phase.short_failed} failed;"
        f" long-lived sessions: {phase.long_ok} ok, {phase.long_failed} failed"
    )
    lines += [f"  {event}" for event in phase.events]
    if phase.failure_at is not None:
        lines.append(
            f"  sessions on the dead uplink: {phase.long_on_dead}; sessions elsewhere that"
            f" failed: {phase.long_failed_elsewhere}; new connections failed from"
            f" {DETECTION_GRACE:g} s after the failure on: {phase.short_failed_after_grace}"
        )
    return lines


def summary(phases: list[PhaseResult]) -> list[str]:
    names = list(phases[0].tx_packets)
    head = [
        "phase",
        *(f"{n} TX" for n in names),
        *(f"{n} conns" for n in names),
        "ok",
        "failed",
        "failed %",
    ]
    rows = [head]
    for phase in phases:
        shares = phase.shares()
        conns = phase.connection_shares()
        ok = phase.short_ok + phase.long_ok
        failed = phase.short_failed + phase.long_failed
        rows.append(
            [
                phase.name,
                *(f"{shares[n]:.2%}" for n in names),
                *(f"{conns[n]:.2%}" if conns else "-" for n in names),
                str(ok),
                str(failed),
                f"{phase.failed_share:.1%}",
            ]
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]


def to_json(options: GatewayOptions, phases: list[PhaseResult]) -> dict[str, Any]:
    return {
        "scenario": "gateway",
        "nics": options.nics,
        "sessions": options.sessions,
        "rate": options.rate,
        "seconds": options.seconds,
        "phases": [
            {
                **asdict(p),
                "shares": p.shares(),
                "connection_shares": p.connection_shares(),
                "failed_share": p.failed_share,
            }
            for p in phases
        ],
    }


def write_png(phases: list[PhaseResult], path: str) -> None:
    from multihome.lab.plot import _pyplot

    plt = _pyplot()
    names = list(phases[0].tx_packets)
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        positions = [n + (k - (len(names) - 1) / 2) * width for n in range(len(phases))]
        axes[0].bar(positions, [p.shares()[name] * 100 for p in phases], width, label=name)
    axes[0].set_xticks(range(len(phases)), [p.name for p in phases])
    axes[0].set_title("share of the router's TX packets per uplink (%)")
    axes[0].legend()
    axes[1].bar([p.name for p in phases], [p.failed_share * 100 for p in phases], color="#c0504d")
    axes[1].set_title("failed connections (%)")
    figure.suptitle(f"multihome lab gateway: {len(names)} uplinks")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
