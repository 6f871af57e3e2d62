"""SIGHUP to `multihome watch`: a line in the log and a reconcile that reads the config
again; the daemon keeps running (it used to die without a word)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

from multihome.lab import scenarios
from multihome.lab.description import Topology
from multihome.lab.topology import Network

from .test_watch import GATEWAYS, Watch, config, sources, wait_for, watching  # noqa: F401

Build = Callable[[Topology], Network]


def test_sighup_is_logged_and_reconciles_with_the_config_on_disk(
    build: Build, watching: list[Watch], tmp_path: Path  # noqa: F811
) -> None:
    net = build(scenarios.two_isp(nics=2))
    server = net.ns("server")
    path = config(tmp_path, GATEWAYS)
    watching.append(Watch(server, "-c", path))
    assert sources(server) == {"192.0.2.10", "192.0.2.42"}
    # the config changes: eth1 is no longer an uplink of its own ...
    Path(path).write_text(GATEWAYS.split("[uplinks.eth1]")[0] + "[multihome]\nipv4 = false\n")
    watching[0].proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "SIGHUP: reconciling now" in watching[0].text(), 5)
    # ... and the reconcile it triggers reads it (no IPv4 rules any more)
    wait_for(lambda: sources(server) == set(), 5)
    assert watching[0].proc.poll() is None
    assert watching[0].stop() == 0
