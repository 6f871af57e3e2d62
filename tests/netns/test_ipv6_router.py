"""The IPv6 router against the real kernel, with real dnsmasq router advertisements and SLAAC
LAN hosts (lab/gateway6.py): two ISPs delegating 2001:db8:a::/48 and 2001:db8:b::/48, each
dropping sources outside its delegation. Checked with independent readers (`ip -j rule`,
`ip -j route`, `ip -j addr` of the LAN hosts) and by the hosts' own connections."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from multihome.lab import gateway6 as lab
from multihome.lab import gateway6_run as run
from multihome.lab.description import Topology
from multihome.lab.topology import Network

from .helpers import ip_json, multihome

Build = Callable[[Topology], Network]
OPTIONS = run.Gateway6Options(rate=20.0, seconds=3.0, failover_seconds=14.0)


def _owned6(ns: str) -> list[tuple[int, str, str]]:
    return sorted(
        (r["priority"], f"{r['src']}/{r['srclen']}" if "srclen" in r else r["src"], r["table"])
        for r in ip_json(ns, "-6", "rule")
        if r.get("protocol") in (77, "77", "multihome")
    )


def test_apply_routes_each_delegated_prefix_by_its_uplink_and_remove_takes_it_all(
    build: Build, tmp_path: Path
) -> None:
    net = build(lab.gateway6())
    router = net.ns(lab.ROUTER)
    for args in lab.pd_routes(2):
        subprocess.run(["ip", "-n", router, "-6", "route", "add", *args], check=True)
    config = tmp_path / "m.toml"
    config.write_text(lab.config(2))
    os.chmod(config, 0o600)
    multihome(router, "-c", str(config), "apply")
    assert _owned6(router) == [
        (1001, "all", "main"),
        (1002, "2001:db8:a::/48", "100"),
        (1002, "2001:db8:b::/48", "101"),
    ]
    for table, dev in (("100", "eth0"), ("101", "eth1")):
        routes = ip_json(router, "-6", "route", "show", "table", table)
        assert [(r["dst"], r.get("gateway"), r.get("dev")) for r in routes] == [
            ("default", "fe80::1", dev)
        ]
    # without the config's delegations, plan names the prefixes it cannot map to an uplink
    learn = tmp_path / "learn.toml"
    learn.write_text('[gateway]\nlan = ["lan0"]\n')
    os.chmod(learn, 0o600)
    planned = multihome(router, "-c", str(learn), "plan", check=False)
    assert 'delegated = ["2001:db8:a::/48"]' in planned.stdout + planned.stderr
    assert "unreachable route 2001:db8:b::/48" in planned.stdout + planned.stderr
    multihome(router, "-c", str(config), "remove")
    assert _owned6(router) == []
    assert ip_json(router, "-6", "route", "show", "table", "100") == []


def test_stock_fails_half_the_lans_connections_and_multihome_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MULTIHOME_STATE_DIR", str(tmp_path / "state"))
    stock = run.run_phase("stock", OPTIONS, str(tmp_path))
    a, b = lab.delegated(0), lab.delegated(1)
    # main's default route leads to ISP 0, which drops ISP 1's prefix
    assert stock.by_prefix[a][1] == 0 and stock.by_prefix[a][0] > 0
    assert stock.by_prefix[b][0] == 0 and stock.by_prefix[b][1] > 0
    assert 0.35 <= stock.failed / (stock.ok + stock.failed) <= 0.65
    policy = run.run_phase("multihome", OPTIONS, str(tmp_path))
    assert policy.failed == 0
    assert policy.by_prefix[a][0] > 0 and policy.by_prefix[b][0] > 0


def test_after_an_isps_failure_new_connections_use_the_other_prefix_within_10_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RFC 8475 from the LAN hosts' view: watch finds the ISP dead, dnsmasq announces its
    prefix deprecated, and the hosts' kernels choose the other prefix for new connections;
    when the ISP is back its prefix is preferred again."""
    monkeypatch.setenv("MULTIHOME_STATE_DIR", str(tmp_path / "state"))
    result = run.run_phase("failover", OPTIONS, str(tmp_path))
    assert result.failed_prefix in (lab.delegated(0), lab.delegated(1))
    assert result.moved_s is not None and result.moved_s <= run.DEADLINE, result.events
    assert result.failed_after_deadline == 0, result.events
    assert result.restored_s is not None, result.events
    other = next(p for p in result.by_prefix if p != result.failed_prefix)
    assert result.by_prefix[other][0] > 0 and result.by_prefix[other][1] == 0
    # the drop-in is gone once watch stopped (the daemon's configuration as it was)
    assert os.listdir(tmp_path / "failover" / "dnsmasq.d") == []
