"""`multihome lab gateway --ipv6`: LAN hosts with an address from each ISP's delegated prefix
(SLAAC from dnsmasq's router advertisements) behind a router with N uplinks, each ISP dropping
sources outside its delegation (lab/gateway6.py). A fresh network per phase:

stock      the router forwards by destination: main's default route (ISP 0) carries every
           prefix, and ISP 0 drops the others' (the hosts use every prefix in turn)
multihome  `multihome apply` with the delegations in the config: each prefix leaves by its
           own uplink
failover   `multihome watch` with dnsmasq as the RA daemon; the hosts let the kernel choose
           the source (as they do). The ISP whose prefix they use loses its upstream; watch
           finds it dead, dnsmasq announces that prefix deprecated (RFC 8475), and the hosts'
           new connections move to another prefix. The ISP comes back later and the prefix
           is announced preferred again.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from multihome.core.records import asdict, field, record
from multihome.errors import MultihomeError
from multihome.lab import gateway6 as topology
from multihome.lab.gateway_run import echo_server, process, python_module, run_checked
from multihome.lab.topology import Network, clean_stale

PHASES = ("stock", "multihome", "failover")
DEADLINE = 10.0  # seconds after the failure by which new connections must have moved


@record(frozen=True)
class Gateway6Options:
    nics: int = 2
    hosts: int = 2
    rate: float = 25.0  # new connections per second per host
    seconds: float = 4.0  # of load in the stock and multihome phases
    failover_seconds: float = 16.0
    phases: tuple[str, ...] = PHASES


@record
class Phase6Result:
    name: str
    by_prefix: dict[str, list[int]]  # delegated prefix -> [ok, failed]
    failure_at: float | None = None  # seconds after the load started
    failed_prefix: str | None = None
    moved_s: float | None = None  # from the failure until every new connection used
    #                               another prefix and succeeded
    failed_after_deadline: int = 0  # new connections failed DEADLINE s after the failure on
    return_at: float | None = None
    restored_s: float | None = None  # from the return until the prefix was preferred again
    events: list[str] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return sum(ok for ok, _ in self.by_prefix.values())

    @property
    def failed(self) -> int:
        return sum(failed for _, failed in self.by_prefix.values())


def prefix_of(address: str, nics: int) -> str:
    """The delegated prefix an address is in ("other" for none)."""
    ip = ipaddress.ip_address(address) if address else None
    for i in range(nics):
        if ip is not None and ip in ipaddress.ip_network(topology.delegated(i)):
            return topology.delegated(i)
    return "other"


def wait_until(condition: Callable[[], Any], seconds: float, what: str) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > seconds:
            raise MultihomeError(f"the lab waited {seconds:g} s for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def addresses6(ns: str) -> list[dict[str, Any]]:
    """A namespace's global IPv6 addresses as `ip -j` shows them (an independent reader)."""
    out = run_checked(["ip", "-n", ns, "-j", "-6", "addr", "show", "scope", "global"])
    return [a for link in json.loads(out) for a in link.get("addr_info", []) if "local" in a]


def is_deprecated(ns: str, prefix: str) -> bool | None:
    """Whether a host's address in `prefix` is deprecated (None: it has none)."""
    network = ipaddress.ip_network(prefix)
    states = [
        a.get("preferred_life_time") == 0 or bool(a.get("deprecated"))
        for a in addresses6(ns)
        if ipaddress.ip_address(a["local"]) in network
    ]
    return None if not states else all(states)


class Dnsmasq:
    """dnsmasq as the router's RA daemon, kept running by the lab as a service manager would:
    multihome's restart command (`pkill -F PIDFILE`) stops it, and the lab starts it again."""

    def __init__(self, ns: str, workdir: str, nics: int) -> None:
        self.conf_dir = os.path.join(workdir, "dnsmasq.d")
        os.makedirs(self.conf_dir, mode=0o755, exist_ok=True)
        os.chmod(self.conf_dir, 0o755)
        self.pidfile = os.path.join(workdir, "dnsmasq.pid")
        conf = os.path.join(workdir, "dnsmasq.conf")
        with open(conf, "w", encoding="utf-8") as file:
            file.write(topology.dnsmasq_config(nics, self.conf_dir))
        self.argv = ["ip", "netns", "exec", ns, "dnsmasq", "--keep-in-foreground", "--port=0"]
        self.argv += ["--interface=lan0", "--bind-interfaces", f"--conf-file={conf}"]
        self.argv += ["--user=root", f"--pid-file={self.pidfile}"]
        self.argv += [f"--dhcp-leasefile={os.path.join(workdir, 'leases')}"]
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._keep, name="dnsmasq", daemon=True)
        self.lock = threading.Lock()

    @property
    def restart(self) -> list[str]:
        return ["pkill", "--pidfile", self.pidfile]

    def _start(self) -> subprocess.Popen[bytes]:
        with self.lock:
            self.proc = subprocess.Popen(
                self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            self.starts += 1
            return self.proc

    def _keep(self) -> None:
        proc = self.proc
        while proc is not None:
            proc.wait()
            if self.stopping.is_set():
                return
            proc = self._start()

    def __enter__(self) -> Dnsmasq:
        self._start()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        with self.lock:
            proc = self.proc
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.thread.join(5)


def _client(ns: str, options: Gateway6Options, seconds: float, sources: str) -> list[str]:
    args = ["--netns", ns, "--address", topology.SERVER6, "--rate", str(options.rate)]
    args += ["--seconds", str(seconds), "--sources", sources]
    return python_module("multihome.lab.gateway6_workload", "client", *args)


def _tally(connections: list[list[Any]], nics: int) -> dict[str, list[int]]:
    by_prefix = {topology.delegated(i): [0, 0] for i in range(nics)}
    for _, source, ok in connections:
        counts = by_prefix.setdefault(prefix_of(source, nics), [0, 0])
        counts[0 if ok else 1] += 1
    return by_prefix


@contextlib.contextmanager
def _loads(
    net: Network, options: Gateway6Options, seconds: float, sources: str
) -> Iterator[tuple[float, Callable[[], list[list[Any]]]]]:
    """The hosts' workloads, started together: (their start, a call that returns every
    connection, with the time on the first host's clock)."""
    with contextlib.ExitStack() as stack:
        procs = [
            stack.enter_context(
                process(_client(net.ns(h), options, seconds, sources), stdout=subprocess.PIPE)
            )
            for h in topology.clients(options.hosts)
        ]
        starts = []
        for proc in procs:
            assert proc.stdout is not None
            starts.append(json.loads(proc.stdout.readline())["started"])

        def results() -> list[list[Any]]:
            found = []
            for proc, start in zip(procs, starts, strict=True):
                assert proc.stdout is not None
                for t, source, ok in json.loads(proc.stdout.readline())["connections"]:
                    found.append([t + start - starts[0], source, ok])
            return sorted(found)

        yield starts[0], results


def run_phase(name: str, options: Gateway6Options, workdir: str) -> Phase6Result:
    nics = options.nics
    phase_dir = os.path.join(workdir, name)
    os.makedirs(phase_dir, mode=0o700, exist_ok=True)
    prefix = f"mhg6{os.getpid()}-"
    with Network(topology.gateway6(nics, options.hosts), prefix=prefix) as net:
        router = net.ns(topology.ROUTER)
        for args in topology.pd_routes(nics):
            run_checked(["ip", "-n", router, "-6", "route", "add", *args])
        events: list[str] = []
        with contextlib.ExitStack() as stack:
            echo_server(
                stack, net.ns("server"), "the IPv6 lab", "multihome.lab.gateway6_workload"
            )
            dnsmasq = stack.enter_context(Dnsmasq(router, phase_dir, nics))
            hosts = [net.ns(h) for h in topology.clients(options.hosts)]
            wait_until(
                lambda: all(len(addresses6(h)) >= nics for h in hosts), 10, "SLAAC addresses"
            )
            config = os.path.join(phase_dir, "multihome.toml")
            with open(config, "w", encoding="utf-8") as file:
                ra = name == "failover"
                file.write(
                    topology.config(
                        nics, dnsmasq.conf_dir if ra else None, dnsmasq.restart if ra else None
                    )
                )
            os.chmod(config, 0o600)
            env = {**os.environ, "MULTIHOME_STATE_DIR": os.path.join(phase_dir, "state")}
            multihome = python_module("multihome", "--netns", router, "-c", config)
            if name == "multihome":
                run_checked([*multihome, "apply"], env=env)
            elif name == "failover":
                log = stack.enter_context(
                    open(os.path.join(workdir, "watch6.log"), "w+", encoding="utf-8")
                )
                stack.enter_context(
                    process([*multihome, "watch"], env=env, stdout=log, stderr=subprocess.STDOUT)
                )
                try:
                    wait_until(lambda: _owned_rules(router) >= nics, 15, "multihome watch")
                except MultihomeError as error:
                    log.seek(0)
                    raise MultihomeError(
                        f"{error.message}; its log: {log.read()[-2000:]}"
                    ) from None
            if name != "failover":
                with _loads(net, options, options.seconds, "each") as (_, results):
                    connections = results()
                return Phase6Result(name, _tally(connections, nics), events=events)
            return _failover(net, options, dnsmasq, events)


def _owned_rules(ns: str) -> int:
    out = run_checked(["ip", "-n", ns, "-j", "-6", "rule"])
    return sum(
        1 for r in json.loads(out) if r.get("protocol") in ("77", "multihome") and "srclen" in r
    )


def _failover(
    net: Network, options: Gateway6Options, dnsmasq: Dnsmasq, events: list[str]
) -> Phase6Result:
    nics = options.nics
    seconds = options.failover_seconds
    first = net.ns(topology.clients(options.hosts)[0])
    with _loads(net, options, seconds, "kernel") as (start, results):
        time.sleep(max(0.0, start + seconds / 5 - time.time()))
        # the prefix the hosts use now: the one whose ISP fails
        used = _source_prefix(first, nics)
        dead = next(i for i in range(nics) if topology.delegated(i) == used)
        failure_at = time.time() - start
        run_checked(["ip", "-n", net.ns(f"isp{dead}"), "link", "set", "dev", "up", "down"])
        events.append(f"isp{dead} upstream down at {failure_at:.1f} s ({used} in use)")
        starts = dnsmasq.starts
        wait_until(lambda: dnsmasq.starts > starts, DEADLINE, "the RA daemon's restart")
        wait_until(
            lambda: is_deprecated(first, topology.lan_prefix(dead)), DEADLINE, "the deprecation"
        )
        events.append(
            f"{topology.lan_prefix(dead)} deprecated on the LAN"
            f" {time.time() - start - failure_at:.1f} s after the failure"
        )
        time.sleep(max(0.0, start + 3 * seconds / 5 - time.time()))
        return_at = time.time() - start
        run_checked(["ip", "-n", net.ns(f"isp{dead}"), "link", "set", "dev", "up", "up"])
        restored = wait_until(
            lambda: is_deprecated(first, topology.lan_prefix(dead)) is False,
            DEADLINE + 5,
            "the prefix's return",
        )
        events.append(
            f"isp{dead} back at {return_at:.1f} s, its prefix preferred again in {restored:.1f} s"
        )
        connections = results()
    after = [c for c in connections if c[0] >= failure_at]
    bad = [
        t
        for t, source, ok in after
        if t < return_at and (not ok or prefix_of(source, nics) == used)
    ]
    moved = (max(bad) - failure_at) if bad else 0.0
    return Phase6Result(
        "failover",
        _tally(connections, nics),
        failure_at=failure_at,
        failed_prefix=used,
        moved_s=moved,
        failed_after_deadline=sum(1 for t, _, ok in after if not ok and t >= failure_at + DEADLINE),
        return_at=return_at,
        restored_s=restored,
        events=events,
    )


def _source_prefix(ns: str, nics: int) -> str:
    """The delegated prefix of the source the kernel picks in `ns` for the server."""
    out = run_checked(["ip", "-n", ns, "-j", "-6", "route", "get", topology.SERVER6])
    routes = json.loads(out)
    return prefix_of(routes[0].get("prefsrc", "") if routes else "", nics)


def run(
    options: Gateway6Options, report: Callable[[str], None] = lambda text: None
) -> list[Phase6Result]:
    """Every phase on a fresh network; `report` hears one line as each starts and ends."""
    clean_stale()
    phases = []
    with tempfile.TemporaryDirectory(prefix="multihome-gw6-") as workdir:
        for number, name in enumerate(options.phases, 1):
            report(f"phase {number}/{len(options.phases)} {name}: running")
            started = time.monotonic()
            phases.append(run_phase(name, options, workdir))
            report(f"phase {name}: done in {time.monotonic() - started:.0f} s")
    return phases


# -- report (pure) ---------------------------------------------------------------------------


def listing(phase: Phase6Result) -> list[str]:
    lines = [
        f"  from {prefix}: {ok} ok, {failed} failed"
        for prefix, (ok, failed) in phase.by_prefix.items()
    ]
    lines += [f"  {event}" for event in phase.events]
    if phase.moved_s is not None:
        lines.append(
            f"  new connections all from another prefix and all ok {phase.moved_s:.1f} s after"
            f" the failure; failed from {DEADLINE:g} s after it on: {phase.failed_after_deadline}"
        )
    return lines


def summary(phases: list[Phase6Result]) -> list[str]:
    rows = [["phase", "ok", "failed", "failed %"]]
    for p in phases:
        total = p.ok + p.failed
        rows.append([p.name, str(p.ok), str(p.failed), f"{p.failed / total:.1%}" if total else "-"])
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def to_json(options: Gateway6Options, phases: list[Phase6Result]) -> dict[str, Any]:
    return {
        "scenario": "gateway --ipv6",
        "nics": options.nics,
        "hosts": options.hosts,
        "rate": options.rate,
        "phases": [{**asdict(p), "ok": p.ok, "failed": p.failed} for p in phases],
    }
