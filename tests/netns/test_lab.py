"""`multihome lab`: short runs of both scenarios, a kept network with its load, teardown on
failure and on signals, and a plot that cannot be written.

Every run here records its networks in a state directory of its own (MULTIHOME_STATE_DIR), so
that its `lab clean`, and each run's removal of dead runs' networks, only ever sees what this
test made.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from multihome.lab import scenarios
from multihome.lab.topology import Network

from .helpers import ip_json, multihome

LAB = [sys.executable, "-m", "multihome", "lab"]


@pytest.fixture(autouse=True)
def _own_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MULTIHOME_STATE_DIR", str(tmp_path / "state"))


def _lab_namespaces(pid: int) -> list[str]:
    return [n for n in os.listdir("/run/netns") if n.startswith(f"mhlab{pid}")]


def _server_tx_packets(pid: int) -> int:
    """The packets the server of a lab run has sent so far (0 while it is being built)."""
    servers = [n for n in _lab_namespaces(pid) if n.endswith("server")]
    if len(servers) != 1:
        return 0
    out = subprocess.run(
        ["ip", "-n", servers[0], "-j", "-s", "link"], capture_output=True, text=True
    ).stdout
    try:
        links = json.loads(out) if out.strip() else []
    except ValueError:
        return 0
    return sum(link["stats64"]["tx"]["packets"] for link in links if link["ifname"] != "lo")


def _wait_for_the_workload(proc: subprocess.Popen[Any]) -> None:
    """Until the lab's network is built and the server is answering requests."""
    deadline = time.monotonic() + 30
    while _server_tx_packets(proc.pid) < 1000 and time.monotonic() < deadline:
        assert proc.poll() is None
        time.sleep(0.05)
    assert len(_lab_namespaces(proc.pid)) == 4 and _server_tx_packets(proc.pid) >= 1000


def _run_lab(*args: str) -> dict[str, Any]:
    result = subprocess.run([*LAB, *args, "--json"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def _lab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LAB, *args], capture_output=True, text=True, timeout=300)


def test_seed_reproduces_the_article_in_miniature() -> None:
    report = _run_lab("--requests", "400", "--nics", "3")
    assert report["scenario"] == "seed" and report["nics"] == 3
    destination, policy = report["phases"]
    assert destination["name"] == "destination" and policy["name"] == "policy"
    for phase in (destination, policy):
        assert phase["requests"] == {"ok": 400, "failed": 0}
        assert set(phase["interfaces"]) == {"eth0", "eth1", "eth2"}
        assert phase["goodput_bps"] > 0
    tx = {n: i["tx_packets"] for n, i in destination["interfaces"].items()}
    assert max(tx.values()) >= 0.95 * sum(tx.values())
    tx = {n: i["tx_packets"] for n, i in policy["interfaces"].items()}
    for name, packets in tx.items():
        assert abs(packets / sum(tx.values()) - 1 / 3) < 0.05, (name, tx)
    # the article's packets: ~67 MTU-sized packets per 90 KB response
    assert 60 * 400 < sum(tx.values()) < 80 * 400


def test_two_isp_fails_with_stock_routing_only() -> None:
    report = _run_lab("two-isp", "--requests", "120")
    destination, policy = report["phases"]
    # dual stack: 30 requests to each of 192.0.2.10, 192.0.2.42, 2001:db8::10, 2001:db8:1::10
    assert destination["failed_by_address"] == {"192.0.2.42": 30, "2001:db8:1::10": 30}
    assert destination["requests_by_family"] == {
        "ipv4": {"ok": 30, "failed": 30},
        "ipv6": {"ok": 30, "failed": 30},
    }
    assert policy["requests"] == {"ok": 120, "failed": 0}
    assert policy["requests_by_family"] == {
        "ipv4": {"ok": 60, "failed": 0},
        "ipv6": {"ok": 60, "failed": 0},
    }


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_run_removes_everything(signum: int) -> None:
    # Ctrl-C as from a terminal: a test run started in the background by a shell without
    # job control has SIGINT ignored, and a child would inherit that (Python then installs
    # no handler, and the lab rightly keeps running, as any program would)
    with tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(
            [*LAB, "--requests", "1000000"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
            preexec_fn=_default_sigint,
        )
        try:
            _wait_for_the_workload(proc)
            proc.send_signal(signum)
            assert proc.wait(timeout=30) == 2
            stderr.seek(0)
            assert "Traceback" not in stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
    assert _lab_namespaces(proc.pid) == []


def test_sigkilled_run_is_cleaned_up_by_lab_clean() -> None:
    proc = subprocess.Popen([*LAB, "--requests", "1000000"], stdout=subprocess.DEVNULL)
    try:
        _wait_for_the_workload(proc)
    finally:
        proc.kill()
        proc.wait()
    payload = os.path.join(tempfile.gettempdir(), f"multihome-lab-{proc.pid}-*")
    try:
        left = _lab_namespaces(proc.pid)
        assert len(left) == 4
        assert len(glob.glob(payload)) == 1  # the served file's directory, left by the kill
        out = _lab("clean")
        assert out.returncode == 0, out.stderr
        name = f"mhlab{proc.pid}d"
        assert f"removed lab network {name} (its run, pid {proc.pid}, is gone): " in out.stdout
        assert set(left) <= set(out.stdout.split())
        assert _lab_namespaces(proc.pid) == []
        assert not glob.glob(payload)
    finally:  # what the killed run made, also when an assertion above failed
        for ns in _lab_namespaces(proc.pid):
            subprocess.run(["ip", "netns", "delete", ns], check=False)
        for path in glob.glob(payload):
            shutil.rmtree(path, ignore_errors=True)


def test_keep_leaves_a_stock_network_by_name_with_its_load_and_clean() -> None:
    name = f"mhk{os.getpid()}"
    try:
        run = _lab("two-isp", "--requests", "40", "--keep", name)
        assert run.returncode == 0, run.stderr
        # the commands to use it, with its name; progress and the duration went to stderr
        assert f"multihome --netns {name}-server show" in run.stdout
        assert f"multihome lab load {name} --requests 400" in run.stdout
        assert "lab: two-isp: with stock routing 20 of the 40 requests fail" in run.stderr
        assert "lab: destination: 40/40 requests done" in run.stderr
        server = f"{name}-server"
        assert {server, f"{name}-client", f"{name}-isp1"} <= set(os.listdir("/run/netns"))
        # stock routing, as the README's walk-through starts: nothing of multihome's
        rules = ip_json(server, "rule") + ip_json(server, "-6", "rule")
        assert [r for r in rules if r.get("protocol") == "77"] == []
        assert multihome(server, "plan", "--check", check=False).returncode == 1
        # a second network of that name is refused before anything runs
        again = _lab("--keep", name, "--requests", "10")
        assert again.returncode == 2 and f"named {name!r} is up already" in again.stderr
        # the load: with stock routing, the second ISP's address fails
        load = _lab("load", name, "--requests", "40", "--json")
        assert load.returncode == 0, load.stderr
        outcome = json.loads(load.stdout)
        # over every server address, both families, as the lab's own phases fetch
        assert outcome["ok"]["192.0.2.10"] == 10 and outcome["failed"]["192.0.2.42"] == 10
        assert outcome["ok"]["2001:db8:0::10"] == 10 and outcome["failed"]["2001:db8:1::10"] == 10
        multihome(server, "apply")
        outcome = json.loads(_lab("load", name, "--requests", "40", "--json").stdout)
        assert outcome["ok"] == {
            "192.0.2.10": 10,
            "192.0.2.42": 10,
            "2001:db8:0::10": 10,
            "2001:db8:1::10": 10,
        }
        # `lab clean` leaves kept networks alone, and says so; by name it removes them
        clean = _lab("clean")
        assert clean.stdout.splitlines()[0] == "no lab network to remove"
        assert f"left up (kept with --keep): {name}" in clean.stdout
        assert server in os.listdir("/run/netns")
        clean = _lab("clean", name)
        assert clean.stdout.startswith(f"removed lab network {name} (kept with --keep): {server}")
        assert not [n for n in os.listdir("/run/netns") if n.startswith(f"{name}-")]
    finally:
        for ns in os.listdir("/run/netns"):
            if ns.startswith(f"{name}-"):
                subprocess.run(["ip", "netns", "delete", ns], check=False)


def test_a_plot_that_cannot_be_written_costs_no_results(tmp_path: Path) -> None:
    # a 4 KB file system: the path passes every check, then the figure does not fit
    full = tmp_path / "full"
    full.mkdir()
    script = (
        f"mount -t tmpfs -o size=4k none {full} && exec {sys.executable} -m multihome lab "
        f"--requests 40 --json --plot {full}/p.png"
    )
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert json.loads(result.stdout)["phases"][1]["requests"]["ok"] == 40  # results printed
    error = json.loads(result.stderr.splitlines()[-1])  # --json: the error is JSON too
    assert error["error"].startswith(f"could not write the plot {full}/p.png"), error
    assert "Traceback" not in result.stderr


def test_failure_inside_a_network_removes_it() -> None:
    network = Network(scenarios.seed(2), prefix=f"mhfail{os.getpid()}-")
    with pytest.raises(RuntimeError), network:
        assert len(os.listdir("/run/netns")) >= 4
        raise RuntimeError("a test step failed")
    assert not [n for n in os.listdir("/run/netns") if n.startswith(f"mhfail{os.getpid()}-")]
