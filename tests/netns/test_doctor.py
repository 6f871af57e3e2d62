"""`multihome doctor` and `counters` on broken states built on purpose, then fixed by apply."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

from multihome.lab import scenarios
from multihome.lab.description import Topology
from multihome.lab.topology import Network

from .helpers import TcpServer, fetch, multihome

Build = Callable[[Topology], Network]


def doctor(ns: str) -> tuple[int, list[dict[str, Any]]]:
    result = multihome(ns, "doctor", "--json", check=False)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)["findings"]


def checks(findings: list[dict[str, Any]]) -> set[tuple[str, str | None]]:
    return {(f["check"], f["address"]) for f in findings}


def assert_clean_after_apply(ns: str) -> None:
    multihome(ns, "apply")
    code, findings = doctor(ns)
    assert (code, findings) == (0, [])
    assert "no problems found" in multihome(ns, "doctor").stdout


def test_unfixed_article_topology(build: Build) -> None:
    net = build(scenarios.seed(nics=2))
    server = net.ns("server")
    code, findings = doctor(server)
    assert code == 1
    found = checks(findings)
    assert ("asymmetric-reply", "192.0.2.11") in found
    assert ("asymmetric-on-link", "192.0.2.11") in found
    assert ("asymmetric-reply", "192.0.2.10") not in found  # eth0 owns the default route
    arp = next(f for f in findings if f["check"] == "arp-flux")
    assert arp["interfaces"] == ["eth0", "eth1"] and arp["severity"] == "warning"
    reply = next(f for f in findings if f["check"] == "asymmetric-reply")
    assert reply["interfaces"] == ["eth1", "eth0"]
    assert "dev eth0 table main" in reply["evidence"][0]
    assert_clean_after_apply(server)


def test_strict_rp_filter_on_a_second_uplink(build: Build) -> None:
    net = build(scenarios.two_isp(nics=2))
    server, client = net.ns("server"), net.ns("client")
    subprocess.run(
        ["ip", "netns", "exec", server, "sysctl", "-qw", "net.ipv4.conf.eth1.rp_filter=1"],
        check=True,
    )
    code, findings = doctor(server)
    assert code == 1
    drop = [f for f in findings if f["check"] == "rp-filter-drop"]
    assert [(f["address"], f["interfaces"]) for f in drop] == [("192.0.2.42", ["eth1"])]
    assert ("several-defaults", None) in checks(findings)
    with TcpServer(server):  # the finding is real: the second address gets no answer
        assert fetch(client, ["192.0.2.42"], count=2) == {"192.0.2.42": 0}
        assert_clean_after_apply(server)  # and strict filtering is correct with the rules
        assert fetch(client, ["192.0.2.42"], count=2) == {"192.0.2.42": 2}


def test_rule_to_an_empty_table_and_drift(build: Build) -> None:
    net = build(scenarios.seed(nics=2))
    server = net.ns("server")
    multihome(server, "apply")
    # what the kernel does to a table when its link flaps: the routes are gone
    subprocess.run(["ip", "-n", server, "route", "flush", "table", "101"], check=True)
    code, findings = doctor(server)
    assert code == 1
    empty = [f for f in findings if f["check"] == "empty-table"]
    assert {f["address"] for f in empty} == {"192.0.2.11/32"}
    assert ("drift", None) in checks(findings)
    assert_clean_after_apply(server)


def test_foreign_rule_to_an_empty_table(build: Build) -> None:
    net = build(scenarios.seed(nics=2))
    server = net.ns("server")
    subprocess.run(
        ["ip", "-n", server, "rule", "add", "from", "192.0.2.10", "lookup", "4242"], check=True
    )
    _, findings = doctor(server)
    empty = next(f for f in findings if f["check"] == "empty-table")
    # (run with --netns: the fix acts in that namespace, as pasted)
    assert f"ip -n {server} -4 rule del pref 32765 from 192.0.2.10/32 lookup 4242" in empty["fix"]


def test_table_without_its_on_link_route(build: Build) -> None:
    net = build(scenarios.seed(nics=2))
    server = net.ns("server")
    multihome(server, "apply")
    subprocess.run(
        ["ip", "-n", server, "route", "del", "192.0.2.0/24", "dev", "eth1", "table", "101"],
        check=True,
    )
    _, findings = doctor(server)
    missing = [f for f in findings if f["check"] == "missing-on-link-route"]
    assert [(f["address"], f["interfaces"]) for f in missing] == [("192.0.2.11", ["eth1"])]
    assert ("asymmetric-on-link", "192.0.2.11") in checks(findings)
    assert_clean_after_apply(server)


def test_single_homed_says_so_in_one_line(build: Build) -> None:
    net = build(scenarios.seed(nics=2))
    result = multihome(net.ns("client"), "doctor")
    assert result.stdout.strip().splitlines() == ["single-homed: one uplink, routing is symmetric"]


def test_counters_shares_and_watch(build: Build) -> None:
    net = build(scenarios.seed(nics=2))
    server, client = net.ns("server"), net.ns("client")
    multihome(server, "apply")
    with TcpServer(server, size=200000):
        fetch(client, ["192.0.2.10", "192.0.2.11"], count=20)
    rows = json.loads(multihome(server, "counters", "--json").stdout)["interfaces"]
    tx = {r["interface"]: r["tx_share"] for r in rows}
    assert set(tx) == {"eth0", "eth1"} and abs(tx["eth0"] - 0.5) < 0.1
    listing = multihome(server, "counters", "--format", "ifconfig").stdout
    # the lab's listing: ifconfig's flags, MTU and address lines, then the counters
    assert (
        "eth1: flags=4163<UP,BROADCAST,RUNNING,MULTICAST>  mtu 1500\n"
        "        inet 192.0.2.11  netmask 255.255.255.0\n"
        "        RX packets "
    ) in listing
    watch = multihome(server, "counters", "--watch", "0.2", "--count", "2").stdout
    intervals = [json.loads(line) for line in watch.splitlines()]
    assert len(intervals) == 2 and "tx_pps" in intervals[0]["interfaces"][0]
