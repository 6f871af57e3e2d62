"""The real Docker for the netns tests: the lab's two-ISP server running docker.io's dockerd
(multihome.lab.dockerd, the recipe of DESIGN.md) with a container publishing port 8080, and
the readers the tests check Docker with: its tables as iptables-save and nft print them, and
the connections that complete through each ISP.

One dockerd serves a whole test module (it costs a second to start and seconds to stop): the
module's network and daemon are built once, and every test leaves the server as it found it
(stock routing, nothing of multihome's). Without Docker's packages the tests skip, which CI
refuses (.ci/run): scripts/test.sh installs them.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from multihome.lab import docker as lab_docker
from multihome.lab import dockerd, scenarios
from multihome.lab.topology import Network

UPLINKS = ("eth0", "eth1")
ADDRESSES = {"eth0": "192.0.2.10", "eth1": "192.0.2.42"}  # two_isp's, where the ISPs lead
CLIENT = "203.0.113.100"
SIZE = 30000  # the published file
CONNECTIONS = 20  # per ISP


class DockerHost:
    """The two-ISP network, and dockerd with the web container in its server."""

    def __init__(self, network: Network, daemon: dockerd.Dockerd) -> None:
        self.network = network
        self.daemon = daemon
        self.server = network.ns(scenarios.SERVER)
        self.client = network.ns(scenarios.CLIENT)

    def answered(self, count: int = CONNECTIONS) -> dict[str, int]:
        """Connections to the published port that brought the whole file, per ISP (`count`
        to each uplink's address)."""
        addresses = [ADDRESSES[u] for u in UPLINKS]
        concurrency = lab_docker.DockerOptions().concurrency
        ok = lab_docker.connections(self.client, addresses, count * len(UPLINKS), concurrency, SIZE)
        return dict(zip(UPLINKS, ok, strict=True))

    def tables(self) -> str:
        """Docker's tables, counters aside: iptables-save and ip6tables-save (without their
        dated comments), and `nft list table` of each table iptables-nft made."""
        parts = []
        for tool in ("iptables-save", "ip6tables-save"):
            out = self.run(tool)
            parts.append("\n".join(x for x in out.splitlines() if not x.startswith("#")))
        for family, table in (("ip", "nat"), ("ip", "filter")):
            out = self.run("nft", "list", "table", family, table)
            parts.append(re.sub(r"counter packets \d+ bytes \d+", "counter", out))
        return re.sub(r"\[\d+:\d+\]", "[-]", "\n".join(parts))

    def run(self, *argv: str) -> str:
        return subprocess.run(
            ["ip", "netns", "exec", self.server, *argv],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout

    def container_egress(self, port: int) -> int:
        """Bytes the container reads from the client's TCP server (tcpserve.py on `port`),
        through docker0 and Docker's masquerade, with busybox's nc."""
        out = self.daemon.docker(
            "exec", lab_docker.CONTAINER, "/bin/sh", "-c", f"nc {CLIENT} {port} | wc -c"
        )
        return int(out.strip() or 0)


def cgroups(name: str) -> list[str]:
    """The cgroup directories of the dockerd named `name` on this host (v1, hybrid or v2)."""
    with open("/proc/self/mountinfo", encoding="utf-8") as file:
        return dockerd.cgroup_directories(dockerd.cgroup_mounts(file.read()), name)


def need_docker() -> None:
    """Skip without root or without Docker's packages; under CI that is a failure."""
    why = None
    if os.geteuid() != 0:
        why = "needs root (network namespaces)"
    elif lacking := dockerd.missing():
        why = f"needs the real Docker: {', '.join(lacking)}"
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}, and CI must run the Docker tests")
        pytest.skip(why)


@contextlib.contextmanager
def docker_host(directory: Path) -> Iterator[DockerHost]:
    """The module's Docker host: a network of its own (state directory included), dockerd
    and the container; removed at the end, also when a test failed."""
    need_docker()
    prefix = f"mhtd{os.getpid() % 100000}-"
    state = directory / "state"
    work = directory / "dockerd"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MULTIHOME_STATE_DIR", str(state))
        try:
            with lab_docker.docker_host(2, prefix, str(work), SIZE, lambda text: None) as (
                network,
                daemon,
            ):
                yield DockerHost(network, daemon)
        finally:
            shutil.rmtree(work, ignore_errors=True)
