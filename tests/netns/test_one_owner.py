"""One owner of the routing at a time, on the real kernel: `remove`, `apply` and a second
`watch` while `multihome watch` runs; `apply --confirm` handed to watch (failover goes on);
a dead confirm guardian found by its lock, not its pid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from multihome.lab import scenarios

from .helpers import PY, ip_json, multihome, selectors, snapshot, sysctl
from .test_watch import (
    BALANCE,
    GATEWAYS,
    Build,
    Watch,
    balancing_devices,
    config,
    wait_for,
    watching,
)

__all__ = ["watching"]  # the fixture, imported to be used here


def test_remove_while_watch_runs_stops_it_and_the_host_stays_stock(
    build: Build, watching: list[Watch], tmp_path: Path
) -> None:
    net = build(scenarios.two_isp(nics=2))
    server = net.ns("server")
    stock = snapshot(server)
    arp = sysctl(server, "net.ipv4.conf.eth0.arp_ignore")
    path = config(tmp_path, GATEWAYS)
    watching.append(Watch(server, "-c", path))
    assert {p for p in selectors(server) if ":" not in p} == {"192.0.2.0/27", "192.0.2.32/27"}
    result = multihome(server, "-c", path, "remove")
    assert f"multihome watch (pid {watching[0].proc.pid}) was stopped first" in result.stderr
    assert "remove:" in result.stdout and "made" in result.stdout
    assert watching[0].proc.wait(timeout=10) == 0  # a clean stop, no restart by systemd
    time.sleep(3)  # a watch that put things back would have done it by now
    assert snapshot(server) == stock
    assert sysctl(server, "net.ipv4.conf.eth0.arp_ignore") == arp
    assert not [r for r in ip_json(server, "rule") if r.get("protocol") == "77"]


def test_a_second_watch_refuses_and_names_the_first(
    build: Build, watching: list[Watch], tmp_path: Path
) -> None:
    net = build(scenarios.two_isp(nics=2))
    server = net.ns("server")
    path = config(tmp_path, GATEWAYS)
    watching.append(Watch(server, "-c", path))
    second = multihome(server, "-c", path, "watch", check=False)
    assert second.returncode == 2
    assert f"pid {watching[0].proc.pid}" in second.stderr
    assert "systemctl stop multihome-watch" in second.stderr
    assert "Traceback" not in second.stderr
    assert watching[0].proc.poll() is None  # the first goes on


def test_apply_is_handed_to_the_running_watch(
    build: Build, watching: list[Watch], tmp_path: Path
) -> None:
    net = build(scenarios.two_isp(nics=2))
    server = net.ns("server")
    path = config(tmp_path, GATEWAYS)
    watching.append(Watch(server, "-c", path))
    pid = watching[0].proc.pid
    result = multihome(server, "-c", path, "apply")
    assert f"handed to multihome watch (pid {pid})" in result.stdout
    # another config than the watch's: refused, with how to stop it
    other = tmp_path / "other.toml"
    other.write_text(GATEWAYS)
    refused = multihome(server, "-c", str(other), "apply", check=False)
    assert refused.returncode == 2 and f"pid {pid}" in refused.stderr
    assert "systemctl stop multihome-watch" in refused.stderr
    # install on the live host is refused too
    install = multihome(server, "-c", path, "install", check=False)
    assert install.returncode == 2 and "keeps this namespace's routing" in install.stderr


def _weights(ns: str) -> dict[str, int]:
    routes = ip_json(ns, "-4", "route", "show", "table", "199")
    hops = routes[0].get("nexthops", []) if routes else []
    return {h["dev"]: int(h.get("weight", 1)) for h in hops}


def test_apply_confirm_handed_to_watch_keeps_failing_over_and_reverts(
    build: Build, watching: list[Watch], tmp_path: Path
) -> None:
    net = build(scenarios.two_isp(nics=2))
    server, isp1 = net.ns("server"), net.ns("isp1")
    path = config(tmp_path, BALANCE.format(weight0=""))
    watching.append(Watch(server, "-c", path))
    wait_for(lambda: _weights(server) == {"eth0": 1, "eth1": 1}, 3)
    Path(path).write_text(BALANCE.format(weight0="weight = 3"))
    result = multihome(server, "-c", path, "apply", "--confirm", "4")
    assert f"handed to multihome watch (pid {watching[0].proc.pid})" in result.stdout
    assert "confirm` within 4 s" in result.stdout
    assert _weights(server) == {"eth0": 3, "eth1": 1}
    # while the change awaits confirmation, a dead path still fails over at once
    subprocess.run(["ip", "-n", isp1, "route", "add", "blackhole", "203.0.113.100/32"], check=True)
    assert wait_for(lambda: balancing_devices(server, 4) == {"eth0"}, 10) < 2.0
    subprocess.run(["ip", "-n", isp1, "route", "del", "blackhole", "203.0.113.100/32"], check=True)
    # no confirmation: at the deadline watch goes back to the config from before
    wait_for(lambda: _weights(server) == {"eth0": 1, "eth1": 1}, 8)
    late = multihome(server, "confirm", check=False)
    assert late.returncode == 1 and "too late" in late.stdout
    time.sleep(1.5)  # and keeps it (the file still says weight 3)
    assert _weights(server) == {"eth0": 1, "eth1": 1}
    # confirmed in time: kept
    Path(path).write_text(BALANCE.format(weight0="weight = 2"))
    multihome(server, "-c", path, "apply", "--confirm", "30")
    assert multihome(server, "confirm").stdout.strip() == "confirmed: the change is kept"
    assert _weights(server) == {"eth0": 2, "eth1": 1}
    assert "reverted" in watching[0].text() and "confirmed" in watching[0].text()


def _pending(tmp_path: Path) -> tuple[Path, dict[str, object]]:
    (found,) = tmp_path.glob("netns-*.pending")
    return found, json.loads(found.read_text())


def test_a_killed_guardian_is_found_by_its_lock_and_the_change_is_unguarded(
    build: Build, tmp_path: Path
) -> None:
    net = build(scenarios.two_isp(nics=2))
    server = net.ns("server")
    multihome(server, "apply", "--confirm", "60")
    found, data = _pending(tmp_path)
    pid = int(str(data["pid"]))
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 5)
    result = multihome(server, "confirm", check=False)
    assert result.returncode == 2 and "NOT reverted" in result.stdout, result.stdout
    assert not found.exists()
    assert selectors(server)  # the change stays applied
    # a pending file that names a live process that is not a guardian (a reused pid): the
    # lock is free, so it is no guard, and nothing waits for it
    sleeper = subprocess.Popen([PY, "-c", "import time; time.sleep(60)"])
    try:
        found.write_text(
            json.dumps({**data, "pid": sleeper.pid, "deadline": time.monotonic() + 60})
        )
        result = multihome(server, "apply", check=False)
        assert result.returncode == 0, result.stderr
        assert "unguarded" in multihome(server, "confirm", check=False).stdout
    finally:
        sleeper.kill()
        sleeper.wait()


def test_remove_as_execstop_while_the_watch_service_stops_too(
    build: Build, watching: list[Watch], tmp_path: Path
) -> None:
    """At shutdown systemd stops multihome.service (ExecStop: remove) and the watch
    service at once: remove waits for the stopping watch and removes after it."""
    net = build(scenarios.two_isp(nics=2))
    server = net.ns("server")
    stock = snapshot(server)
    path = config(tmp_path, GATEWAYS)
    watching.append(Watch(server, "-c", path))
    remove = subprocess.Popen(
        [PY, "-m", "multihome", "--netns", server, "-c", path, "remove"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watching[0].proc.send_signal(signal.SIGTERM)
    _, err = remove.communicate(timeout=30)
    assert remove.returncode == 0, err
    assert watching[0].proc.wait(timeout=10) == 0
    time.sleep(2)
    assert snapshot(server) == stock


def test_apply_json_handed_to_watch_keeps_its_shape(
    build: Build, watching: list[Watch], tmp_path: Path
) -> None:
    net = build(scenarios.two_isp(nics=2))
    server = net.ns("server")
    path = config(tmp_path, BALANCE.format(weight0=""))
    watching.append(Watch(server, "-c", path))
    Path(path).write_text(BALANCE.format(weight0="weight = 3"))
    data = json.loads(multihome(server, "-c", path, "--json", "apply").stdout)
    assert data["changed"] is True and data["changes"] == []
    assert data["by_watch"]["pid"] == watching[0].proc.pid
    assert any("weight 3" in line for line in data["by_watch"]["changes"])
