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
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from multihome import discover, namespace, state
from multihome.errors import MultihomeError, PrivilegeError
from multihome.lab import scenarios
from multihome.lab.description import Topology
from multihome.lab.report import InterfaceResult, LabResult, PhaseResult
from multihome.lab.topology import Network, clean_stale
from multihome.lab.workload import PORT
from multihome.model import Counters

PHASES = ("destination", "policy")
Progress = Callable[[str, int, int], None]  # phase, requests done, requests in all


@dataclass(frozen=True)
class LabOptions:
    scenario: str = "seed"
    nics: int = 2
    size: int = 92160
    requests: int = 20000
    concurrency: int = 40
    link_rate_bps: int | None = None
    keep: bool = False
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
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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


def _apply(ns: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "multihome", "--netns", ns, "apply", "--json"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise MultihomeError(f"multihome apply in the lab failed: {result.stderr.strip()}")


def _forget_state(network: Network) -> None:
    """The namespace goes away; so must its state file (an inode can be reused later)."""
    ns_path = os.path.join(namespace.NETNS_DIR, network.ns(scenarios.SERVER))
    with contextlib.suppress(FileNotFoundError):
        state.forget(os.stat(ns_path).st_ino)


def run_phase(
    options: LabOptions, phase: str, path: str, progress: Progress, keep: bool
) -> tuple[PhaseResult, Network]:
    topology = options.topology()
    prefix = f"mhlab{os.getpid()}{phase[0]}-"
    network = Network(topology, prefix=prefix, keep=keep)
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
        finally:
            if not keep:
                _forget_state(network)
    names = [f"eth{i}" for i in range(options.nics)]
    interfaces = tuple(
        InterfaceResult(name, addresses[i], after[name] - before[name])
        for i, name in enumerate(names)
    )
    ok = outcome["ok"]
    failed = outcome["failed"]
    assert isinstance(ok, dict) and isinstance(failed, dict)
    seconds = outcome["seconds"]
    body = outcome["bytes"]
    assert isinstance(seconds, float) and isinstance(body, int)
    return (
        PhaseResult(
            name=phase,
            interfaces=interfaces,
            ok=sum(ok.values()),
            failed=sum(failed.values()),
            seconds=seconds,
            body_bytes=body,
            failed_by_address={a: n for a, n in failed.items() if n},
            ok_by_address=dict(ok),
        ),
        network,
    )


def run(options: LabOptions, progress: Progress) -> tuple[LabResult, Network | None]:
    """Both phases; with `keep`, the last phase's network stays up and is returned."""
    check_privileges()
    clean_stale()
    phases = []
    kept = None
    with tempfile.TemporaryDirectory(prefix="multihome-lab-") as tmp:
        path = os.path.join(tmp, "file.bin")
        with open(path, "wb") as file:
            file.write(os.urandom(options.size))
        for index, phase in enumerate(options.phases):
            last = index == len(options.phases) - 1
            result, network = run_phase(options, phase, path, progress, options.keep and last)
            phases.append(result)
            if options.keep and last:
                kept = network
    return (
        LabResult(
            scenario=options.scenario,
            nics=options.nics,
            link_rate_bps=options.link_rate_bps,
            size=options.size,
            requests=options.requests,
            concurrency=options.concurrency,
            phases=tuple(phases),
        ),
        kept,
    )


def clean() -> list[str]:
    """`multihome lab clean`: remove every lab network left behind (kept ones too)."""
    check_privileges()
    return clean_stale(include_kept=True)
