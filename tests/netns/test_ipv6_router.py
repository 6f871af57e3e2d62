"""The IPv6 router against the real kernel, with real dnsmasq router advertisements and SLAAC
LAN hosts (lab/gateway6.py): two ISPs delegating 2001:db8:a::/48 and 2001:db8:b::/48, each
dropping sources outside its delegation. Checked with independent readers (`ip -j rule`,
`ip -j route`, `ip -j addr` of the LAN hosts) and by the hosts' own connections."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from multihome.lab import gateway6 as lab
from multihome.lab import gateway6_run as run
from multihome.lab.description import Topology
from multihome.lab.gateway_run import process, python_module
from multihome.lab.topology import Network
from tests.unit.test_delegation import dhcpv6_reply

from .helpers import ip_json, multihome, tx_packets

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


def test_npt_gives_a_ula_lan_both_isps_with_one_address_per_host(
    build: Build, tmp_path: Path
) -> None:
    """NPTv6: the LAN hosts hold one ULA address each (no SLAAC here); every connection
    succeeds, through both ISPs (each sees its own delegation's prefix); remove takes
    multihome's ip6tables chains and nothing else."""
    net = build(lab.gateway6())
    router = net.ns(lab.ROUTER)
    subprocess.run(
        ["ip", "-n", router, "addr", "add", "fd00:1::1/64", "dev", "lan0", "nodad"], check=True
    )
    subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            router,
            "ip6tables",
            "-t",
            "mangle",
            "-A",
            "POSTROUTING",
            "-j",
            "ACCEPT",
        ],
        check=True,
    )
    hosts = [net.ns(h) for h in lab.clients(2)]
    for k, ns in enumerate(hosts):
        subprocess.run(
            ["ip", "-n", ns, "addr", "add", f"fd00:1::{10 + k}/64", "dev", "eth0", "nodad"],
            check=True,
        )
        subprocess.run(
            ["ip", "-n", ns, "-6", "route", "add", "default", "via", "fd00:1::1"], check=True
        )
    config = tmp_path / "m.toml"
    config.write_text(lab.config(2) + 'npt = ["fd00:1::/64"]\n')
    os.chmod(config, 0o600)
    multihome(router, "-c", str(config), "apply")
    saved = subprocess.run(
        ["ip", "netns", "exec", router, "ip6tables-save"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in (
        "-A POSTROUTING -j MULTIHOME-NPT-POST",
        "-A PREROUTING -j MULTIHOME-NPT-RAW",
        "-A MULTIHOME-NPT-RAW -s fd00:1::/64 -j CT --notrack",
        "-A MULTIHOME-NPT-POST -s fd00:1::/64 -o eth0 -j SNPT --src-pfx fd00:1::/64 --dst-pfx 2001:db8:a::/64",
        "-A MULTIHOME-NPT-PRE -d 2001:db8:b::/64 -i eth1 -j DNPT --src-pfx 2001:db8:b::/64 --dst-pfx fd00:1::/64",
    ):
        assert line in saved.splitlines(), saved
    before = tx_packets(router)
    with process(
        python_module("multihome.lab.gateway6_workload", "server", "--netns", net.ns("server")),
        stdout=subprocess.PIPE,
    ) as echo:
        assert echo.stdout is not None and "ready" in echo.stdout.readline()
        outcomes = []
        for ns in hosts:
            argv = python_module(
                "multihome.lab.gateway6_workload",
                "client",
                "--netns",
                ns,
                "--address",
                lab.SERVER6,
                "--rate",
                "30",
                "--seconds",
                "2",
            )
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
            outcomes += json.loads(done.stdout.splitlines()[-1])["connections"]
    after = tx_packets(router)
    assert {source for _, source, _ in outcomes} == {"fd00:1::10", "fd00:1::11"}
    assert len(outcomes) == 120 and all(ok for _, _, ok in outcomes), outcomes
    sent = {dev: after[dev] - before[dev] for dev in ("eth0", "eth1")}
    assert min(sent.values()) > 0.2 * sum(sent.values()), sent  # both ISPs carry connections
    multihome(router, "-c", str(config), "remove")
    saved = subprocess.run(
        ["ip", "netns", "exec", router, "ip6tables-save"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "MULTIHOME" not in saved and "-A POSTROUTING -j ACCEPT" in saved.splitlines()


def _checks(ns: str, config: Path) -> dict[str, list[dict[str, object]]]:
    done = multihome(ns, "-c", str(config), "--json", "doctor", check=False)
    found: dict[str, list[dict[str, object]]] = {}
    for finding in json.loads(done.stdout)["findings"]:
        found.setdefault(str(finding["check"]), []).append(finding)
    return found


def test_doctor_finds_a_prefix_leaving_by_the_other_isp_and_an_ra_not_deprecating(
    build: Build, tmp_path: Path
) -> None:
    net = build(lab.gateway6())
    router = net.ns(lab.ROUTER)
    ra_dir = tmp_path / "dnsmasq.d"
    ra_dir.mkdir(mode=0o755)
    config = tmp_path / "m.toml"
    config.write_text(lab.config(2, str(ra_dir), ["true"]))
    os.chmod(config, 0o600)
    # stock: ISP 1's prefix leaves by eth0 (main's default route)
    wrong = _checks(router, config)["ipv6-prefix-wrong-uplink"]
    assert [f["address"] for f in wrong] == ["2001:db8:b:1::1"], wrong
    assert "leaves by eth0" in str(wrong[0]["summary"]) and str(wrong[0]["fix"]) == (
        f"multihome --netns {router} -c {config} apply"
    )
    multihome(router, "-c", str(config), "apply")
    assert "ipv6-prefix-wrong-uplink" not in _checks(router, config)
    # eth1's link goes down: its LAN prefix must be announced deprecated
    subprocess.run(["ip", "-n", router, "link", "set", "eth1", "down"], check=True)
    (stale,) = _checks(router, config)["ra-not-deprecating"]
    assert "2001:db8:b:1::/64" in str(stale["summary"])
    (ra_dir / "multihome-deprecated.conf").write_text(
        "dhcp-range=2001:db8:b:1::,ra-only,64,deprecated\n"
    )
    assert "ra-not-deprecating" not in _checks(router, config)


def test_apply_learns_the_delegations_from_dhcpcds_leases(build: Build, tmp_path: Path) -> None:
    """No `delegated` in the config: the PD client's records (dhcpcd's IFNAME.lease6) say
    which uplink each prefix came from, and the LAN's prefixes are routed by them."""
    net = build(lab.gateway6())
    router = net.ns(lab.ROUTER)
    leases = tmp_path / "dhcpcd"
    leases.mkdir(mode=0o755)
    for i in range(2):
        (leases / f"eth{i}.lease6").write_bytes(dhcpv6_reply(lab.delegated(i)))
    config = tmp_path / "m.toml"
    config.write_text(f'[gateway]\nlan = ["lan0"]\npd_lease_dir = "{leases}"\n')
    os.chmod(config, 0o600)
    multihome(router, "-c", str(config), "apply")
    assert _owned6(router) == [
        (1001, "all", "main"),
        (1002, "2001:db8:a::/48", "100"),
        (1002, "2001:db8:b::/48", "101"),
    ]


RADVD_CONF = """\
interface lan0 {
    AdvSendAdvert on;
    MinRtrAdvInterval 3;
    MaxRtrAdvInterval 4;
    prefix 2001:db8:a:1::/64 {
        AdvOnLink on;
        AdvAutonomous on;
    };
    prefix 2001:db8:b:1::/64 {
        AdvOnLink on;
        AdvAutonomous on;
    };
};
"""


def test_radvd_deprecates_a_prefix_on_sighup_and_its_config_comes_back_exactly(
    build: Build, tmp_path: Path
) -> None:
    """The real radvd and a SLAAC host: multihome's marked line deprecates 2001:db8:b:1::/64
    after a SIGHUP (the reload radvd.service does), and removing it restores the prefix and
    radvd.conf byte for byte."""
    from multihome.host import ra
    from multihome.lab.description import Link, Port

    topology = Topology(
        name="radvd",
        hosts=("router", "host"),
        links=(Link(Port("router", "lan0"), Port("host", "eth0")),),
        addresses=(
            ("router", "lan0", "2001:db8:a:1::1/64"),
            ("router", "lan0", "2001:db8:b:1::1/64"),
        ),
        sysctls=(("router", "net/ipv6/conf/all/forwarding", "1"),),
    )
    net = build(topology)
    router, host = net.ns("router"), net.ns("host")
    conf = tmp_path / "radvd.conf"
    conf.write_text(RADVD_CONF)
    conf.chmod(0o644)
    pidfile = tmp_path / "radvd.pid"
    argv = ["ip", "netns", "exec", router, "radvd", "-n", "-C", str(conf), "-p", str(pidfile)]
    argv += ["-m", "stderr", "-u", "root"]
    with process(argv, stderr=subprocess.DEVNULL):
        run.wait_until(lambda: len(run.addresses6(host)) == 2, 10, "SLAAC addresses")
        run.wait_until(pidfile.exists, 5, "radvd's pid file")
        edit = ra.RadvdConfig(str(conf))
        b = ipaddress.ip_network(lab.lan_prefix(1))
        assert edit.update([b]) is True
        os.kill(int(pidfile.read_text()), signal.SIGHUP)
        seen = run.wait_until(lambda: run.is_deprecated(host, str(b)), 10, "the deprecation")
        assert run.is_deprecated(host, lab.lan_prefix(0)) is False
        assert edit.update([]) is True and conf.read_text() == RADVD_CONF
        os.kill(int(pidfile.read_text()), signal.SIGHUP)
        run.wait_until(lambda: run.is_deprecated(host, str(b)) is False, 10, "the prefix's return")
    assert seen < 10
