"""The real Docker on a host with two ISPs (issue 24): docker.io's dockerd in the server of the
two-ISP network (eth0 via ISP 1, eth1 via ISP 2, both dropping spoofed sources), its own
iptables-nft rules and docker0, and a container publishing `-p 8080:80`.

- stock routing: the published port answers through eth0's ISP only (0 of 20 through eth1's:
  the reply is forwarded from the container and leaves by main's default route);
- `doctor` names that before apply, with its evidence, and is clean after;
- plain `multihome apply` (no config): 20 of 20 through each ISP, the container still reaches
  the internet, and Docker's tables are byte-identical (counters aside) before, during and
  after apply, watch and remove, and across a restart of dockerd under `multihome watch`;
- `remove`: stock again.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from multihome.lab import docker as lab_docker

from .docker import CONNECTIONS, DockerHost, cgroups, docker_host
from .helpers import TcpServer, multihome, owned_rules
from .test_watch import Watch, wait_for

STOCK = {"eth0": CONNECTIONS, "eth1": 0}
EVERY_ISP = {"eth0": CONNECTIONS, "eth1": CONNECTIONS}
EGRESS_PORT, EGRESS_SIZE = 9000, 1000


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerHost]:
    with docker_host(tmp_path_factory.mktemp("docker")) as built:
        yield built


@pytest.fixture(autouse=True)
def _stock_again(host: DockerHost) -> Iterator[None]:
    """Each test starts from, and leaves, the server as Docker alone made it."""
    assert owned_rules(host.server) == []
    yield
    multihome(host.server, "remove")
    assert owned_rules(host.server) == []


def doctor(host: DockerHost) -> tuple[int, list[dict[str, Any]], str]:
    result = multihome(host.server, "doctor", "--json", check=False)
    assert result.returncode in (0, 1), result.stderr
    text = multihome(host.server, "doctor", check=False).stdout
    return result.returncode, json.loads(result.stdout)["findings"], text


def egress(host: DockerHost) -> int:
    with TcpServer(host.client, port=EGRESS_PORT, size=EGRESS_SIZE):
        return host.container_egress(EGRESS_PORT)


def test_stock_routing_answers_through_the_first_isp_only_and_doctor_says_why(
    host: DockerHost,
) -> None:
    assert host.answered() == STOCK
    code, findings, text = doctor(host)
    assert code == 1
    # the published port's replies: Docker's DNAT rule (its chain and its container), and
    # the uplink whose ISP drops them
    dnat = [f for f in findings if "DNAT" in json.dumps(f)]
    assert dnat, findings
    evidence = json.dumps(dnat)
    for named in ("chain DOCKER", "198.19.0.2", "docker0", "eth1"):
        assert named in evidence, (named, dnat)
    assert all(f["fix"] for f in dnat)
    assert "DNAT" in text and "eth1" in text
    assert egress(host) == EGRESS_SIZE


def test_plain_apply_answers_through_every_isp_and_leaves_docker_alone(host: DockerHost) -> None:
    docker_tables = host.tables()
    multihome(host.server, "apply")
    assert host.answered() == EVERY_ISP
    assert egress(host) == EGRESS_SIZE
    code, findings, text = doctor(host)
    assert (code, findings) == (0, []), text
    assert host.tables() == docker_tables
    multihome(host.server, "remove")
    assert host.answered() == STOCK
    assert host.tables() == docker_tables
    assert egress(host) == EGRESS_SIZE


def test_watch_keeps_every_isp_answering_across_a_restart_of_dockerd(host: DockerHost) -> None:
    # Docker alone first: a restarted dockerd lists its nft chains in another order than a
    # fresh one (iptables-save shows no difference); a second restart changes nothing more
    host.daemon.restart()
    host.daemon.wait_running(lab_docker.CONTAINER)
    wait_for(lambda: "--to-destination 198.19.0.2:80" in host.tables(), 10)
    docker_tables = host.tables()
    watch = Watch(host.server)
    try:
        wait_for(lambda: owned_rules(host.server) != [], 10)
        assert host.answered() == EVERY_ISP
        assert host.tables() == docker_tables
        host.daemon.restart()  # as `systemctl restart docker`: docker0 and its veth go and
        host.daemon.wait_running(lab_docker.CONTAINER)  # come back, the container with its
        # restart policy, and Docker writes its port's rules again (a moment after it runs)
        wait_for(lambda: host.tables() == docker_tables, 10)
        assert host.answered() == EVERY_ISP
        assert egress(host) == EGRESS_SIZE
        assert watch.proc.poll() is None, watch.text()
    finally:
        assert watch.stop() == 0, watch.text()
    assert host.tables() == docker_tables
    multihome(host.server, "remove")
    assert host.answered() == STOCK
    assert host.tables() == docker_tables


def test_lab_docker_shows_stock_and_multihome_per_isp(tmp_path: Path) -> None:
    lab = subprocess.Popen(
        [sys.executable, "-m", "multihome", "lab", "docker", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MULTIHOME_STATE_DIR": str(tmp_path)},
    )
    try:
        out, err = lab.communicate(timeout=300)
    finally:
        if lab.poll() is None:
            lab.kill()  # dockerd follows (it dies with the lab), the namespaces below
            lab.wait()
        for ns in os.listdir("/run/netns"):
            if ns.startswith(lab_docker.network_prefix(lab.pid)):
                subprocess.run(["ip", "netns", "delete", ns], check=False)
    assert lab.returncode == 0, err
    report = json.loads(out)
    assert report["scenario"] == "docker" and report["port"] == 8080
    per_isp = {
        phase["name"]: {u: (v["ok"], v["failed"]) for u, v in phase["uplinks"].items()}
        for phase in report["phases"]
    }
    assert per_isp == {
        "stock": {"eth0": (20, 0), "eth1": (0, 20)},
        "multihome": {"eth0": (20, 0), "eth1": (20, 0)},
    }
    (why,) = report["phases"][1]["pinning"]  # what apply said: why pinning is on
    assert why.startswith("inbound pinning: eth0, eth1: DNAT to docker0 found"), why
    assert "chain DOCKER" in why and report["phases"][0]["pinning"] == []
    multihome_phase = report["phases"][1]["uplinks"]
    for uplink in ("eth0", "eth1"):  # the replies leave by the uplink they came in by
        assert multihome_phase[uplink]["tx_share"] > 0.4, multihome_phase
    # what the run made is gone: its namespaces, its dockerd's cgroups, its directory
    assert "dockerd stopped" in err
    prefix = lab_docker.network_prefix(lab.pid)
    assert not [n for n in os.listdir("/run/netns") if n.startswith(prefix)]
    assert cgroups(prefix.rstrip("-")) == []
    assert not glob.glob(os.path.join(tempfile.gettempdir(), f"multihome-lab-{lab.pid}-*"))


def test_a_killed_lab_docker_leaves_nothing_after_lab_clean(tmp_path: Path) -> None:
    env = {**os.environ, "MULTIHOME_STATE_DIR": str(tmp_path)}
    lab = subprocess.Popen(
        [sys.executable, "-m", "multihome", "lab", "docker", "--requests", "100000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    name = lab_docker.network_prefix(lab.pid).rstrip("-")
    try:
        assert lab.stderr is not None
        for line in lab.stderr:
            if "phase stock" in line:
                break
        (pidfile,) = glob.glob(
            os.path.join(tempfile.gettempdir(), f"multihome-lab-{lab.pid}-*/dockerd.pid")
        )
        daemon = int(Path(pidfile).read_text())
    finally:
        lab.kill()
        lab.wait()
    # dockerd stops with its lab (PR_SET_PDEATHSIG: SIGTERM), its container with it
    wait_for(lambda: not os.path.exists(f"/proc/{daemon}"), 30)
    assert cgroups(name)  # left by the kill: empty, for lab clean
    out = subprocess.run(
        [sys.executable, "-m", "multihome", "lab", "clean"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    assert f"removed lab network {name} (its run, pid {lab.pid}, is gone)" in out
    assert not [n for n in os.listdir("/run/netns") if n.startswith(f"{name}-")]
    assert cgroups(name) == []
    assert not glob.glob(os.path.join(tempfile.gettempdir(), f"multihome-lab-{lab.pid}-*"))
