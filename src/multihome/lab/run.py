"""Run the lab: for each phase a fresh network, the workload, and the server's counters.

Phase `destination` runs on the network as built (stock routing); phase `policy` first runs
`multihome --netns <server> apply` -- the command users run, in a process of its own -- and
then the same workload. A fresh network per phase means no ARP cache or conntrack state
carries over from one phase to the other.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator

from multihome.core.counters import Link
from multihome.core.model import Counters
from multihome.core.records import record
from multihome.errors import MultihomeError, PrivilegeError
from multihome.host import state
from multihome.kernel import discover, namespace
from multihome.kernel.processes import pid_alive, stop
from multihome.lab import docker, scenarios
from multihome.lab.description import Topology
from multihome.lab.report import InterfaceResult, LabResult, PhaseResult
from multihome.lab.topology import LabRecord, Network, clean_stale, lab_networks, remove_network
from multihome.lab.workload import PORT

PHASES = ("destination", "policy")
Progress = Callable[[str, int, int], None]  # phase, requests done, requests in all


@record(frozen=True)
class LabOptions:
    scenario: str = "seed"
    nics: int = 2
    size: int = 92160
    requests: int = 20000
    concurrency: int = 40
    link_rate_bps: int | None = None
    keep: str | None = None  # the name of the network left up afterwards (NAME-server, ...)
    phases: tuple[str, ...] = PHASES

    def topology(self) -> Topology:
        build = scenarios.SCENARIOS[self.scenario]
        return build(self.nics, self.link_rate_bps)


def check_privileges() -> None:
    if os.geteuid() != 0:
        raise PrivilegeError(
            "the lab creates network namespaces and needs root",
            hint="run it as root (sudo multihome lab)",
        )


def _workload(role: str, ns: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "multihome.lab.workload", role, "--netns", ns, *args]


@contextlib.contextmanager
def _server(ns: str, path: str) -> Iterator[None]:
    procs = os.cpu_count() or 1
    proc = subprocess.Popen(
        _workload("server", ns, "--file", path, "--procs", str(procs)),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for _ in range(procs):
            if "ready" not in proc.stdout.readline():
                raise MultihomeError(f"the lab's web server did not start (port {PORT})")
        yield
    finally:
        stop(proc)


def _client(
    ns: str, addresses: list[str], options: LabOptions, phase: str, progress: Progress
) -> dict[str, object]:
    argv = _workload(
        "client",
        ns,
        *[f"--address={a}" for a in addresses],
        "--requests",
        str(options.requests),
        "--concurrency",
        str(options.concurrency),
        "--size",
        str(options.size),
    )
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    result: dict[str, object] | None = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            message = json.loads(line)
            if "progress" in message:
                progress(phase, int(message["progress"]), options.requests)
            elif "result" in message:
                result = message["result"]
        if proc.wait() != 0 or result is None:
            raise MultihomeError("the lab's load generator failed")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    progress(phase, options.requests, options.requests)
    return result


def _counters(ns: str) -> dict[str, Counters]:
    with namespace.inside(ns):
        return discover.read_counters()


def _listing(ns: str) -> dict[str, Link]:
    with namespace.inside(ns):
        return {link.name: link for link, _ in discover.read_links()}


def _apply(ns: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "multihome", "--netns", ns, "apply", "--json"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise MultihomeError(f"multihome apply in the lab failed: {result.stderr.strip()}")


def _forget_state(server_ns: str) -> None:
    """The namespace goes away; so must its state file (an inode can be reused later)."""
    ns_path = os.path.join(namespace.NETNS_DIR, server_ns)
    with contextlib.suppress(FileNotFoundError):
        state.forget(os.stat(ns_path).st_ino)


def run_phase(options: LabOptions, phase: str, path: str, progress: Progress) -> PhaseResult:
    topology = options.topology()
    network = Network(topology, prefix=f"mhlab{os.getpid()}{phase[0]}-")
    with network:
        server_ns = network.ns(scenarios.SERVER)
        try:
            if phase == "policy":
                _apply(server_ns)
            roles = topology.roles  # IPv4 first: eth i's address below is addresses[i]
            addresses = [*roles["server_addresses"], *roles.get("server_addresses6", [])]
            with _server(server_ns, path):
                before = _counters(server_ns)
                outcome = _client(network.ns(scenarios.CLIENT), addresses, options, phase, progress)
                after = _counters(server_ns)
                listed = _listing(server_ns)
        finally:
            _forget_state(server_ns)
    names = [f"eth{i}" for i in range(options.nics)]
    interfaces = tuple(
        InterfaceResult(name, addresses[i], after[name] - before[name], listed.get(name))
        for i, name in enumerate(names)
    )
    ok = outcome["ok"]
    failed = outcome["failed"]
    assert isinstance(ok, dict) and isinstance(failed, dict)
    seconds = outcome["seconds"]
    body = outcome["bytes"]
    assert isinstance(seconds, float) and isinstance(body, int)
    return PhaseResult(
        name=phase,
        interfaces=interfaces,
        ok=sum(ok.values()),
        failed=sum(failed.values()),
        seconds=seconds,
        body_bytes=body,
        failed_by_address={a: n for a, n in failed.items() if n},
        ok_by_address=dict(ok),
    )


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")


def check_name(name: str) -> None:
    """A kept network's name must make valid namespace names and be free."""
    if not NAME.fullmatch(name):
        raise MultihomeError(
            f"--keep {name!r}: a lab network's name is 1-32 letters, digits, '.', '_' or '-'",
            hint="for example --keep demo (namespaces demo-server, demo-client, ...)",
        )
    taken = [r for r in lab_networks() if r.name == name]
    taken_ns = (
        [n for n in os.listdir(namespace.NETNS_DIR) if n.startswith(name + "-")]
        if (os.path.isdir(namespace.NETNS_DIR))
        else []
    )
    if taken or taken_ns:
        raise MultihomeError(
            f"a lab network named {name!r} is up already"
            + (f" (namespaces {', '.join(sorted(taken_ns))})" if taken_ns else ""),
            hint=f"use it, remove it with `multihome lab clean {name}`, or name this one "
            "differently: --keep OTHER",
        )


PAYLOAD_PREFIX = "multihome-lab-"


@contextlib.contextmanager
def _payload_directory() -> Iterator[str]:
    """A temporary directory for the served file, named with this process's pid: a run that
    is SIGKILLed cannot remove it, so the next run or `lab clean` does (_remove_stale_payloads)."""
    with tempfile.TemporaryDirectory(prefix=f"{PAYLOAD_PREFIX}{os.getpid()}-") as tmp:
        yield tmp


def _remove_stale_payloads() -> list[str]:
    """The payload directories of lab runs whose process is gone; returns their paths."""
    import shutil

    removed = []
    top = tempfile.gettempdir()
    for entry in os.listdir(top):
        match = re.fullmatch(rf"{PAYLOAD_PREFIX}(\d+)-\w+", entry)
        path = os.path.join(top, entry)
        if match and not pid_alive(int(match[1])) and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def run(options: LabOptions, progress: Progress) -> LabResult:
    """Both phases, each on a network of its own, removed at its end."""
    check_privileges()
    clean_stale()
    _remove_stale_payloads()
    if options.keep is not None:
        check_name(options.keep)
    phases = []
    with _payload_directory() as tmp:
        path = _payload(tmp, options.size)
        for phase in options.phases:
            phases.append(run_phase(options, phase, path, progress))
    return LabResult(
        scenario=options.scenario,
        nics=options.nics,
        link_rate_bps=options.link_rate_bps,
        size=options.size,
        requests=options.requests,
        concurrency=options.concurrency,
        phases=tuple(phases),
    )


def _payload(directory: str, size: int) -> str:
    path = os.path.join(directory, "file.bin")
    with open(path, "wb") as file:
        file.write(os.urandom(size))
    return path


def keep(options: LabOptions, name: str) -> Network:
    """Build a fresh network of the scenario and leave it up as NAME-server, NAME-client, ...:
    stock routing, nothing applied, no load yet -- the state the destination phase starts
    from, and the README's walk-through."""
    topology = options.topology()
    roles = topology.roles  # both families, as the lab's own phases fetch over them
    addresses = [*roles["server_addresses"], *roles.get("server_addresses6", [])]
    return keep_topology(topology, name, options.scenario, options.nics, addresses)


def keep_topology(
    topology: Topology, name: str, scenario: str, nics: int, server_addresses: list[str]
) -> Network:
    """Build `topology` and leave it up as NAME-HOST for each host, recorded as kept (what
    `lab load NAME` needs: the addresses its server serves on)."""
    check_privileges()
    check_name(name)
    info = {"scenario": scenario, "nics": nics, "server_addresses": list(server_addresses)}
    network = Network(topology, prefix=f"{name}-", keep=True, info=info)
    with network:
        pass
    return network


def kept_network(name: str) -> LabRecord:
    for network in lab_networks():
        if network.name == name and network.kept:
            return network
    kept = [r.name for r in lab_networks() if r.kept]
    raise MultihomeError(
        f"no kept lab network named {name!r}",
        hint=(f"kept networks: {', '.join(kept)}" if kept else "none is kept")
        + "; `multihome lab two-isp --keep NAME` (or seed) leaves one up",
    )


def load(
    name: str, requests: int, concurrency: int, size: int, progress: Progress
) -> dict[str, object]:
    """`multihome lab load NAME`: the lab's workload on a kept network, as it is now (stock
    routing, or whatever was applied since): the built-in web server in NAME-server, and
    `requests` downloads from NAME-client spread over every server address."""
    check_privileges()
    record = kept_network(name)
    if "server_addresses" not in record.info:
        raise MultihomeError(
            f"the kept lab network {name!r} was kept by an older multihome and cannot be loaded",
            hint=f"remove it with `multihome lab clean {name}` and keep a new one",
        )
    server_ns = f"{name}-{scenarios.SERVER}"
    client_ns = f"{name}-{scenarios.CLIENT}"
    missing = [
        n
        for n in (server_ns, client_ns)
        if not os.path.exists(os.path.join(namespace.NETNS_DIR, n))
    ]
    if missing:
        raise MultihomeError(
            f"the kept lab network {name!r} lacks {', '.join(missing)}",
            hint=f"remove it with `multihome lab clean {name}` and keep a new one",
        )
    addresses = [str(a) for a in record.info["server_addresses"]]
    options = LabOptions(requests=requests, concurrency=concurrency, size=size)
    with _payload_directory() as tmp:
        path = _payload(tmp, size)
        with _server(server_ns, path):
            return _client(client_ns, addresses, options, "load", progress)


def clean(names: tuple[str, ...] = (), everything: bool = False) -> list[LabRecord]:
    """`multihome lab clean`: the networks of dead runs always; kept ones by name, or all of
    them with `everything`. Returns what was removed."""
    check_privileges()
    records = lab_networks()
    known = {r.name for r in records if r.kept}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise MultihomeError(
            f"no kept lab network named {', '.join(repr(n) for n in unknown)}",
            hint=f"kept networks: {', '.join(sorted(known))}" if known else "none is kept",
        )
    chosen = [r for r in records if r.stale() or (r.kept and (everything or r.name in names))]
    _remove_stale_payloads()
    for network in chosen:
        _forget_state(f"{network.name}-{scenarios.SERVER}")
        remove_network(network)
        docker.remove_leftovers(network.name)  # a killed `lab docker` run's cgroups
    return chosen
