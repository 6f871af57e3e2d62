"""`multihome lab docker`: the seed's problem as it is met most often today, a Docker host with
two ISPs. The two-ISP network (lab/scenarios.py: one ISP per server NIC, each dropping spoofed
sources) with the real dockerd in the server (lab/dockerd.py) and a container publishing port
8080 (busybox httpd serving one file), by Docker's own iptables-nft DNAT.

The client on the "internet" opens connections to the published port on every uplink's
address, with stock routing (phase stock), then after `multihome apply` with no config in the
server (phase multihome), on the same network and the same dockerd (its start and stop cost
more than a phase). A connection counts when the whole file arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from multihome.core.records import record
from multihome.kernel import namespace
from multihome.lab import dockerd, scenarios
from multihome.lab.dockerd import Dockerd, check_installed
from multihome.lab.gateway_run import read_counters, run_checked
from multihome.lab.topology import Network, clean_stale

PHASES = ("stock", "multihome")
PHASE_TITLES = {
    "stock": "stock routing (Docker alone)",
    "multihome": "after `multihome apply` in the server (no config)",
}
IMAGE = "multihome-lab/busybox:1"
CONTAINER = "web"
PORT = 8080  # published: -p 8080:80
# A SYN is answered in microseconds here; 2 s leave room for one retransmission (at 1 s) of
# a SYN lost on the way, not for a reply that an ISP drops every time.
CONNECT_TIMEOUT = 2.0
REQUEST_TIMEOUT = 10.0
PER_UPLINK = 20  # connections per uplink address and phase, by default


@record(frozen=True)
class DockerOptions:
    nics: int = 2
    requests: int = 2 * PER_UPLINK  # per phase, spread evenly over the uplinks' addresses
    # busybox httpd listens with a backlog of 9: more SYNs at once overflow it, and wait a
    # second for their retransmission
    concurrency: int = 8
    size: int = 92160


@record(frozen=True)
class PhaseResult:
    name: str
    ok: dict[str, int]  # per uplink: connections to its address that completed
    failed: dict[str, int]
    tx_packets: dict[str, int]  # per uplink, the server's, during the phase
    pinning: tuple[str, ...] = ()  # what apply said of inbound pinning: why it is on, notes

    def shares(self) -> dict[str, float]:
        total = sum(self.tx_packets.values())
        return {n: v / total if total else 0.0 for n, v in self.tx_packets.items()}


@record(frozen=True)
class DockerResult:
    options: DockerOptions
    docker_version: str
    storage_driver: str
    addresses: dict[str, str]  # uplink: its address, where the client connects
    phases: tuple[PhaseResult, ...]


def network_prefix(pid: int) -> str:
    """The namespaces' prefix of the run with this pid; without its dash, also its dockerd's
    cgroup name."""
    return f"mhlab{pid}k-"


def remove_leftovers(network: str) -> None:
    """After a lab network was removed: the empty cgroups its dockerd left if it was a
    `lab docker` run's (killed with SIGKILL). By the run's name only, never another's."""
    if re.fullmatch(r"mhlab\d+k", network):
        dockerd.remove_cgroups(network)


# -- the container and the client ------------------------------------------------------------


def web_files(size: int) -> dict[str, bytes]:
    """The image's web root: one file of `size` bytes."""
    return {"www/file": os.urandom(size)}


def start_web(daemon: Dockerd, size: int) -> None:
    """The image (no registry: `docker import`) and the container publishing port 8080, with
    a restart policy, so that it comes back when dockerd restarts."""
    daemon.import_image(IMAGE, web_files(size))
    daemon.docker(
        "run", "--detach", "--init", "--restart=always", f"--name={CONTAINER}",
        f"--publish={PORT}:80", IMAGE, "/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www",
    )  # fmt: skip


async def _fetch(address: str, size: int) -> bool:
    """One request on a new connection: did the whole file arrive?"""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(address, PORT), CONNECT_TIMEOUT
        )
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(b"GET /file HTTP/1.0\r\n\r\n")
        async with asyncio.timeout(REQUEST_TIMEOUT):
            head = await reader.readuntil(b"\r\n\r\n")  # at most the stream's limit, 64 KB
            received = 0
            while chunk := await reader.read(1 << 18):  # counted, not kept: --size is free
                received += len(chunk)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return False
    finally:
        writer.close()
    return head.split(b"\r\n")[0].split(b" ")[1:2] == [b"200"] and received == size


async def _fetch_all(addresses: list[str], requests: int, concurrency: int, size: int) -> list[int]:
    ok = [0] * len(addresses)
    order = iter(range(requests))

    async def worker() -> None:
        for index in order:
            which = index % len(addresses)
            done = await _fetch(addresses[which], size)  # before reading ok[which]: others
            ok[which] += done  # add to it while this one waits

    await asyncio.gather(*(worker() for _ in range(min(concurrency, requests))))
    return ok


def connections(
    client_ns: str, addresses: list[str], requests: int, concurrency: int, size: int
) -> list[int]:
    """From `client_ns`, `requests` connections to the published port spread evenly over
    `addresses`, `concurrency` at a time; per address, how many brought the whole file
    (`size` bytes)."""
    with namespace.inside(client_ns):  # the sockets are made in the client's namespace
        return asyncio.run(_fetch_all(addresses, requests, concurrency, size))


# -- the run ---------------------------------------------------------------------------------


@contextlib.contextmanager
def docker_host(
    nics: int, prefix: str, directory: str, size: int, report: Callable[[str], None]
) -> Iterator[tuple[Network, Dockerd]]:
    """The two-ISP network with dockerd and the web container in its server; everything
    removed at the end (dockerd first, then the namespaces)."""
    with Network(scenarios.two_isp(nics), prefix=prefix) as network:
        report("starting dockerd in the server")
        started = time.monotonic()
        with Dockerd(network.ns(scenarios.SERVER), directory, prefix.rstrip("-")) as daemon:
            start_web(daemon, size)
            report(
                f"dockerd (storage driver {daemon.storage_driver}) and the container are up in"
                f" {time.monotonic() - started:.1f} s"
            )
            yield network, daemon
        report("dockerd stopped")


def run(options: DockerOptions, report: Callable[[str], None] = lambda text: None) -> DockerResult:
    """Both phases on one network with one dockerd; `report` hears a line at each step."""
    from multihome.lab.run import _payload_directory, check_privileges

    check_installed()  # first: it is the answer also for a user without root
    check_privileges()
    clean_stale()
    uplinks = [f"eth{i}" for i in range(options.nics)]
    topology = scenarios.two_isp(options.nics)
    addresses = [str(a) for a in topology.roles["server_addresses"]]
    phases = []
    with _payload_directory() as workdir:
        prefix = network_prefix(os.getpid())
        with docker_host(options.nics, prefix, workdir, options.size, report) as (net, daemon):
            server, client = net.ns(scenarios.SERVER), net.ns(scenarios.CLIENT)
            version = daemon.version()
            report(f"dockerd {version}")
            env = {**os.environ, "MULTIHOME_STATE_DIR": os.path.join(workdir, "state")}
            for name in PHASES:
                pinning: tuple[str, ...] = ()
                if name == "multihome":
                    report("multihome apply in the server")
                    multihome = [sys.executable, "-m", "multihome", "--netns", server]
                    applied = json.loads(run_checked([*multihome, "apply", "--json"], env=env))
                    pinning = (
                        *(f"inbound pinning: {r}" for r in applied.get("pinning", [])),
                        *(f"note: {n}" for n in applied.get("notes", [])),
                    )
                report(f"phase {name}: {options.requests} connections")
                before = read_counters(server)
                ok = connections(
                    client, addresses, options.requests, options.concurrency, options.size
                )
                after = read_counters(server)
                tried = [len(range(i, options.requests, len(addresses))) for i in range(len(ok))]
                phases.append(
                    PhaseResult(
                        name=name,
                        ok=dict(zip(uplinks, ok, strict=True)),
                        failed={u: t - n for u, t, n in zip(uplinks, tried, ok, strict=True)},
                        tx_packets={u: after[u].tx_packets - before[u].tx_packets for u in uplinks},
                        pinning=pinning,
                    )
                )
            driver = daemon.storage_driver
    return DockerResult(
        options=options,
        docker_version=version,
        storage_driver=driver,
        addresses=dict(zip(uplinks, addresses, strict=True)),
        phases=tuple(phases),
    )


# -- report (pure) ---------------------------------------------------------------------------


def title(result: DockerResult) -> str:
    options = result.options
    return (
        f"multihome lab docker: the real dockerd in a server with {options.nics} ISPs that"
        f" drop spoofed sources, a container publishing port {PORT} (-p {PORT}:80: Docker's"
        f" iptables-nft DNAT); {options.requests} connections per phase to that port on the"
        f" uplinks' addresses, {options.size} bytes each, {options.concurrency} in parallel"
    )


def summary(result: DockerResult) -> list[str]:
    """The seed's table for this case: per uplink, the connections that completed through
    it, and its share of the server's TX packets."""
    uplinks = list(result.addresses)
    head = [
        "phase",
        *(f"via {u} ({result.addresses[u]}:{PORT})" for u in uplinks),
        *(f"{u} TX" for u in uplinks),
    ]
    rows = [head]
    for phase in result.phases:
        shares = phase.shares()
        rows.append(
            [
                phase.name,
                *(f"{phase.ok[u]}/{phase.ok[u] + phase.failed[u]}" for u in uplinks),
                *(f"{shares[u]:.2%}" for u in uplinks),
            ]
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
    return [
        "  ".join(
            c.rjust(w) if k else c.ljust(w) for k, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]


def to_json(result: DockerResult) -> dict[str, Any]:
    return {
        "scenario": "docker",
        "nics": result.options.nics,
        "requests": result.options.requests,
        "concurrency": result.options.concurrency,
        "size": result.options.size,
        "port": PORT,
        "docker_version": result.docker_version,
        "storage_driver": result.storage_driver,
        "phases": [
            {
                "name": phase.name,
                "pinning": list(phase.pinning),
                "uplinks": {
                    u: {
                        "address": result.addresses[u],
                        "ok": phase.ok[u],
                        "failed": phase.failed[u],
                        "tx_packets": phase.tx_packets[u],
                        "tx_share": round(phase.shares()[u], 6),
                    }
                    for u in result.addresses
                },
            }
            for phase in result.phases
        ],
    }
