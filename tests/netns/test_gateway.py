"""Gateway mode against the real kernel: a router that forwards a LAN over two ISPs that drop
spoofed sources, with strict rp_filter on the router. Checked with independent readers:
`nft -j list table inet multihome`, `conntrack -L`, `ip -j rule`."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from multihome.kernel.processes import stop
from multihome.lab import gateway as lab
from multihome.lab.description import Topology
from multihome.lab.topology import Network

from .helpers import PY, TcpServer, fetch, ip_json, multihome, snapshot, sysctl

Build = Callable[[Topology], Network]
MASK = 0x0F000000
MARKS = {"eth0": 0x01000000, "eth1": 0x02000000}

DOCKER_TABLE = """\
table ip nat {
\tchain POSTROUTING {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\toifname != "docker0" ip saddr 172.17.0.0/16 counter masquerade
\t}
}
"""
PORT_FORWARD_TABLE = """\
table ip portfwd {
\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tiifname "eth1" tcp dport 8080 dnat to 198.18.0.10:8080
\t}
}
"""


def nft(ns: str, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", ns, "nft", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def foreign_tables(ns: str) -> str:
    """The other software's tables, byte for byte as nft prints them (handles included)."""
    return nft(ns, "-a", "list", "table", "ip", "nat") + nft(
        ns, "-a", "list", "table", "ip", "portfwd"
    )


def tracked(ns: str, mark: int) -> int:
    """Connections conntrack holds with this mark inside multihome's mask (`conntrack -L`)."""
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "conntrack", "-L", "-f", "ipv4", "--mark", f"{mark:#x}/{MASK:#x}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return len([line for line in out.splitlines() if line.strip()])


def mh_table(ns: str) -> list[dict[str, object]]:
    result = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-j", "list", "table", "inet", "multihome"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        return []
    items: list[dict[str, object]] = json.loads(result.stdout)["nftables"]
    return items


def _readline(stream: Any, seconds: float) -> str:
    """One line from a child's pipe, or an AssertionError after `seconds` (no hang)."""
    ready, _, _ = select.select([stream], [], [], seconds)
    if not ready:
        raise AssertionError(f"no line within {seconds} s")
    line: str = stream.readline()
    return line


def _stop(proc: subprocess.Popen[Any]) -> None:
    """End a child this test started (by its pid), killing it if it does not stop."""
    stop(proc)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


@pytest.fixture
def config(tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "multihome.toml"
    path.write_text(lab.CONFIG)
    os.chmod(path, 0o600)
    yield str(path)


def _fwmark_rules(ns: str) -> list[dict[str, object]]:
    return [r for r in ip_json(ns, "-4", "rule") if "fwmark" in r]


def test_lan_connections_use_both_uplinks_with_strict_rp_filter(build: Build, config: str) -> None:
    net = build(lab.gateway(nics=2))
    router, client, server = net.ns("router"), net.ns("client"), net.ns("server")
    before = snapshot(router)
    sysctls_before = {k: sysctl(router, k) for k in ("net.ipv4.conf.all.src_valid_mark", "net.ipv4.fib_multipath_hash_policy")}

    out = multihome(router, "-c", config, "plan", "--format", "ip").stdout
    assert "nft -f - <<'EOF'" in out and "table inet multihome {" in out
    assert "fwmark 0x1000000/0xf000000 lookup 100" in out
    multihome(router, "-c", config, "apply")
    assert multihome(router, "-c", config, "apply").stdout.startswith("apply: nothing to do")
    assert multihome(router, "-c", config, "plan", "--check").returncode == 0

    rules = _fwmark_rules(router)
    assert [(r["priority"], r["fwmark"], r.get("fwmask"), r["table"]) for r in rules] == [
        (1002, "0x1000000", "0xf000000", "100"),
        (1002, "0x2000000", "0xf000000", "101"),
    ]
    chains = {c["chain"]["name"] for c in mh_table(router) if "chain" in c}  # type: ignore[index]
    assert chains == {"prerouting", "output", "postrouting", "nat"}
    assert sysctl(router, "net.ipv4.conf.all.src_valid_mark") == "1"
    assert sysctl(router, "net.ipv4.conf.all.rp_filter") == "1"  # strict, left alone

    connections = 600
    with TcpServer(server, size=2000):
        ok = fetch(client, [lab.SERVER_ADDRESS], count=connections)
    assert ok == {lab.SERVER_ADDRESS: connections}
    counts = {name: tracked(router, mark) for name, mark in MARKS.items()}
    assert sum(counts.values()) >= connections, counts
    share = counts["eth0"] / sum(counts.values())
    assert 0.43 <= share <= 0.57, counts

    multihome(router, "-c", config, "remove")
    assert mh_table(router) == []
    assert snapshot(router) == before
    assert {k: sysctl(router, k) for k in sysctls_before} == sysctls_before


def test_port_forward_on_second_uplink_answers_through_it(build: Build, config: str) -> None:
    net = build(lab.gateway(nics=2))
    router, client, server = net.ns("router"), net.ns("client"), net.ns("server")
    nft(router, "-f", "-", stdin=DOCKER_TABLE)
    nft(router, "-f", "-", stdin=PORT_FORWARD_TABLE)
    tables = foreign_tables(router)
    forwarded = lab.uplink_address(1)  # 192.0.2.42: the port forward on eth1
    with TcpServer(client, port=8080, size=2000):
        # Without multihome the reply leaves by main's default route (eth0) with eth1's
        # address, and the first ISP drops it.
        assert fetch(server, [forwarded], count=3) == {forwarded: 0}
        multihome(router, "-c", config, "apply")
        assert foreign_tables(router) == tables
        assert fetch(server, [forwarded], count=20) == {forwarded: 20}
    assert tracked(router, MARKS["eth1"]) >= 20
    assert tracked(router, MARKS["eth0"]) == 0
    multihome(router, "-c", config, "remove")
    assert foreign_tables(router) == tables
    assert mh_table(router) == []


def test_nftables_refusal_leaves_nothing_behind(build: Build, config: str) -> None:
    net = build(lab.gateway(nics=2))
    router = net.ns("router")
    # Another table fills the IPv4 output hook (the kernel takes 1024 base chains a hook): the
    # kernel accepts multihome's table and its prerouting chain, then refuses its output chain
    # (E2BIG) -- in the middle of the nftables part, after the routing part went in.
    nft(router, "-f", "-", stdin=PORT_FORWARD_TABLE)
    filler = "table ip filler {\n" + "".join(
        f"\tchain c{i} {{ type filter hook output priority {i}; policy accept; }}\n"
        for i in range(1000)
    ) + "}\n"
    nft(router, "-f", "-", stdin=filler)
    for i in range(1000, 1100):  # until the hook is full (the nat table holds one entry)
        spec = f"{{ type filter hook output priority {i}; policy accept; }}"
        add = ["ip", "netns", "exec", router, "nft", "add", "chain", "ip", "filler", f"c{i}", spec]
        if subprocess.run(add, capture_output=True).returncode != 0:
            break
    else:
        raise AssertionError("the output hook took 1100 base chains")
    before = snapshot(router)
    sysctls = ("net.ipv4.conf.all.src_valid_mark", "net.ipv4.fib_multipath_hash_policy")
    values = {k: sysctl(router, k) for k in sysctls}
    ruleset = nft(router, "-a", "list", "ruleset")
    result = multihome(router, "-c", config, "apply", check=False)
    assert result.returncode == 2, result
    assert "nftables refused" in result.stderr and "Argument list too long" in result.stderr
    assert "routing changes made were undone" in result.stderr
    assert snapshot(router) == before
    assert {k: sysctl(router, k) for k in sysctls} == values
    assert nft(router, "-a", "list", "ruleset") == ruleset
    assert mh_table(router) == []


def test_overlapping_marks_are_refused_naming_the_user(build: Build, config: str) -> None:
    net = build(lab.gateway(nics=2))
    router = net.ns("router")
    before = snapshot(router)
    nft(
        router,
        "-f",
        "-",
        stdin="table ip mangler {\n\tchain pre {\n\t\ttype filter hook prerouting priority mangle;"
        " policy accept;\n\t\tmeta mark set meta mark | 0x04000000\n\t}\n}\n",
    )
    result = multihome(router, "-c", config, "apply", check=False)
    assert result.returncode == 2
    assert "table ip mangler chain pre uses mark bits 0x04000000" in result.stderr
    nft(router, "delete", "table", "ip", "mangler")
    subprocess.run(
        ["ip", "-n", router, "rule", "add", "pref", "500", "fwmark", "0x2000000/0x3000000", "lookup", "300"],
        check=True,
    )
    result = multihome(router, "-c", config, "apply", check=False)
    assert result.returncode == 2
    assert "fwmark 0x2000000/0x3000000 lookup 300" in result.stderr
    subprocess.run(["ip", "-n", router, "rule", "del", "pref", "500"], check=True)
    assert snapshot(router) == before
    assert mh_table(router) == []


def ports_by_uplink(ns: str) -> dict[str, set[int]]:
    """The LAN client's source ports of the connections conntrack holds per uplink mark."""
    found: dict[str, set[int]] = {}
    for name, value in MARKS.items():
        out = subprocess.run(
            ["ip", "netns", "exec", ns, "conntrack", "-L", "-p", "tcp", "--mark", f"{value:#x}/{MASK:#x}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        found[name] = {
            int(line.split("sport=")[1].split()[0])
            for line in out.splitlines()
            if "ESTABLISHED" in line and f"src={lab.CLIENT_ADDRESS}" in line
        }
    return found


def wait_for(condition: Callable[[], bool], seconds: float) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"not within {seconds} s")
        time.sleep(0.02)
    return time.monotonic() - start


def balancing_devices(ns: str) -> list[str]:
    result = subprocess.run(
        ["ip", "-n", ns, "-j", "route", "show", "table", "199"], capture_output=True, text=True
    )  # the table does not exist until the first apply
    routes = json.loads(result.stdout) if result.returncode == 0 and result.stdout.strip() else []
    if not routes:
        return []
    route = routes[0]
    return sorted(h["dev"] for h in route["nexthops"]) if "nexthops" in route else [route["dev"]]


def test_watch_failover_flushes_only_the_dead_uplinks_connections(
    build: Build, tmp_path: Path
) -> None:
    net = build(lab.gateway(nics=2))
    router, client, server = net.ns("router"), net.ns("client"), net.ns("server")
    path = tmp_path / "watch.toml"
    path.write_text(lab.uplinks_config())
    path.chmod(0o600)
    here = os.path.dirname(__file__)
    script = os.path.join(here, "longlived.py")
    processes: list[subprocess.Popen[str]] = []

    def start(*argv: str, **kw: object) -> subprocess.Popen[str]:
        proc = subprocess.Popen(list(argv), text=True, **kw)  # type: ignore[call-overload]
        processes.append(proc)
        return proc  # type: ignore[no-any-return]

    nft(router, "-f", "-", stdin=DOCKER_TABLE)
    nft(router, "-f", "-", stdin=PORT_FORWARD_TABLE)
    tables = foreign_tables(router)
    log = (tmp_path / "watch.log").open("w+")
    try:
        start(PY, "-m", "multihome", "--netns", router, "watch", "-c", str(path), stdout=log, stderr=subprocess.STDOUT)
        echo = start("ip", "netns", "exec", server, PY, script, "server", "9000", stdout=subprocess.PIPE)
        assert echo.stdout is not None and _readline(echo.stdout, 10).strip() == "ready"
        wait_for(lambda: balancing_devices(router) == ["eth0", "eth1"] and mh_table(router) != [], 10)
        sessions = start(
            "ip", "netns", "exec", client, PY, script, "client", lab.SERVER_ADDRESS, "9000",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        assert sessions.stdin is not None and sessions.stdout is not None

        def command(line: str) -> Any:
            assert sessions.stdin is not None and sessions.stdout is not None
            sessions.stdin.write(line + "\n")
            sessions.stdin.flush()
            return json.loads(_readline(sessions.stdout, 20))

        before = set(command("open 24"))
        wait_for(lambda: set().union(*ports_by_uplink(router).values()) >= before, 5)
        placed = ports_by_uplink(router)
        assert placed["eth0"] and placed["eth1"], placed

        # ISP 1's upstream dies; the router's eth1 link stays up
        subprocess.run(["ip", "-n", net.ns("isp1"), "link", "set", "dev", "up", "down"], check=True)
        detection = wait_for(lambda: balancing_devices(router) == ["eth0"], 5)
        wait_for(lambda: ports_by_uplink(router)["eth1"] == set(), 2)  # flushed, by mark
        assert placed["eth0"] <= ports_by_uplink(router)["eth0"]  # the others kept theirs
        with TcpServer(server, size=1000):
            assert fetch(client, [lab.SERVER_ADDRESS], count=20) == {lab.SERVER_ADDRESS: 20}
        during = set(command("open 8"))
        wait_for(lambda: during <= ports_by_uplink(router)["eth0"], 5)

        # it comes back: it rejoins the balancing route, and no connection moves
        subprocess.run(["ip", "-n", net.ns("isp1"), "link", "set", "dev", "up", "up"], check=True)
        wait_for(lambda: balancing_devices(router) == ["eth0", "eth1"], 5)
        after = ports_by_uplink(router)
        assert placed["eth0"] | during <= after["eth0"], after
        def tracked_by_status() -> int:
            uplinks = json.loads(multihome(router, "status", "--json").stdout)["uplinks"]
            return int(uplinks["eth0"]["ipv4"].get("connections", 0))

        # status samples conntrack every 2 s
        wait_for(lambda: tracked_by_status() >= len(placed["eth0"] | during), 8)
        uplinks = json.loads(multihome(router, "status", "--json").stdout)["uplinks"]
        assert uplinks["eth0"]["ipv4"]["bytes"] > 0  # nf_conntrack_acct, set by apply
        assert "connections" in uplinks["eth1"]["ipv4"]
        report = {int(k): v for k, v in command("report").items()}
        survivors = placed["eth0"] | during
        assert not any(report[p] for p in survivors), report
        print(f"detection {detection:.2f} s; placed {len(placed['eth0'])}/{len(placed['eth1'])}")
        log.seek(0)
        text = log.read()
        assert "eth1 IPv4: up -> down" in text and "tracked connections flushed" in text, text
        assert foreign_tables(router) == tables  # watch's churn never touched them
    finally:
        for proc in reversed(processes):
            _stop(proc)
        log.close()


def test_lab_gateway_round_robin_snat_fails_and_policy_does_not(tmp_path: Path) -> None:
    from multihome.lab import gateway_run

    options = gateway_run.GatewayOptions(sessions=6, rate=100, seconds=2.5)
    rr = gateway_run.run_phase("round-robin-snat", options, str(tmp_path))
    policy = gateway_run.run_phase("policy", options, str(tmp_path))
    assert rr.failed_share >= 0.3, rr  # the reader's set-up: SNAT and the route disagree
    assert policy.short_failed == 0 and policy.long_failed == 0, policy
    shares = policy.connection_shares()
    assert shares is not None and 0.35 <= shares["eth0"] <= 0.65, shares
    assert sum(policy.connections.values()) >= 250
    lines = gateway_run.summary([rr, policy])
    assert lines[0].split()[:3] == ["phase", "eth0", "TX"] and lines[2].startswith("policy")


def test_doctor_on_a_forwarding_router(build: Build, config: str) -> None:
    from multihome.lab import gateway_run

    net = build(lab.gateway(nics=2))
    router = net.ns("router")
    nft(router, "-f", "-", stdin=gateway_run.round_robin_snat(2))
    nft(router, "-f", "-", stdin=PORT_FORWARD_TABLE)
    result = multihome(router, "doctor", "--json", check=False)
    checks = {f["check"]: f for f in json.loads(result.stdout)["findings"]}
    assert result.returncode == 1
    assert "forwarding-one-uplink" in checks and "snat-several-addresses" in checks
    assert "table ip rrsnat" in checks["snat-several-addresses"]["summary"]
    nft(router, "delete", "table", "ip", "rrsnat")
    multihome(router, "-c", config, "apply")
    result = multihome(router, "-c", config, "doctor", "--json", check=False)
    checks = {f["check"]: f for f in json.loads(result.stdout)["findings"]}
    assert "forwarding-one-uplink" not in checks and "snat-several-addresses" not in checks


def test_exported_ip_script_builds_what_apply_builds(build: Build, config: str) -> None:
    net = build(lab.gateway(nics=2))
    router = net.ns("router")
    script = multihome(router, "-c", config, "export", "--format", "ip").stdout
    subprocess.run(["ip", "netns", "exec", router, "sh", "-c", script], check=True, capture_output=True)
    by_script = (_fwmark_rules(router), nft(router, "list", "table", "inet", "multihome"))
    assert len(by_script[0]) == 2 and "masquerade" in by_script[1]
    # apply finds the script's work already done (the same rules, routes and table)
    out = multihome(router, "-c", config, "apply").stdout
    assert out.startswith("apply: nothing to do"), out
    assert (_fwmark_rules(router), nft(router, "list", "table", "inet", "multihome")) == by_script


def test_remove_takes_out_the_table_an_exported_script_made(build: Build, config: str) -> None:
    """The script writes no state file; remove still finds multihome's own table by name."""
    net = build(lab.gateway(nics=2))
    router = net.ns("router")
    script = multihome(router, "-c", config, "export", "--format", "ip").stdout
    subprocess.run(["ip", "netns", "exec", router, "sh", "-c", script], check=True, capture_output=True)
    assert "masquerade" in nft(router, "list", "table", "inet", "multihome")
    multihome(router, "-c", config, "remove")
    assert "multihome" not in nft(router, "list", "tables")
    assert not _fwmark_rules(router)


FROM_EACH = """
import socket, sys
server, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]); failed = 0
for src in sys.argv[4:]:
    for _ in range(count):
        try:
            s = socket.socket(); s.settimeout(2); s.bind((src, 0)); s.connect((server, port))
            while s.recv(65536):
                pass
            s.close()
        except OSError:
            failed += 1
print(failed)
"""


def pair_uplinks(ns: str, dport: int) -> dict[str, set[str]]:
    """Per inner address, the uplinks (by mark) of its connections to `dport`."""
    found: dict[str, set[str]] = {}
    for name, value in MARKS.items():
        out = subprocess.run(
            ["ip", "netns", "exec", ns, "conntrack", "-L", "-p", "tcp", "--dport", str(dport), "--mark", f"{value:#x}/{MASK:#x}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for line in out.splitlines():
            if "src=" in line:
                found.setdefault(line.split("src=")[1].split()[0], set()).add(name)
    return found


def test_host_pair_keeps_pairs_on_their_uplink_after_another_returns(
    build: Build, tmp_path: Path
) -> None:
    net = build(lab.gateway(nics=2))
    router, client, server = net.ns("router"), net.ns("client"), net.ns("server")
    inner = [f"198.18.0.{n}" for n in range(11, 31)]
    for address in inner:
        subprocess.run(["ip", "-n", client, "addr", "add", f"{address}/24", "dev", "eth0"], check=True)
    path = tmp_path / "watch.toml"
    path.write_text(lab.uplinks_config() + 'sticky = "host-pair"\n')
    path.chmod(0o600)

    def connect(port: int, count: int) -> None:
        out = subprocess.run(
            ["ip", "netns", "exec", client, PY, "-c", FROM_EACH, lab.SERVER_ADDRESS, str(port), str(count), *inner],
            capture_output=True, text=True, check=True, timeout=120,
        ).stdout
        assert out.strip() == "0"

    log = (tmp_path / "watch.log").open("w+")
    watch = subprocess.Popen(
        [PY, "-m", "multihome", "--netns", router, "watch", "-c", str(path)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for(lambda: balancing_devices(router) == ["eth0", "eth1"] and mh_table(router) != [], 10)
        with TcpServer(server, port=8080, size=500), TcpServer(server, port=8082, size=500), TcpServer(server, port=8083, size=500):
            connect(8080, 3)
            before = pair_uplinks(router, 8080)
            assert all(len(uplinks) == 1 for uplinks in before.values()), before  # one per pair
            on_eth1 = {a for a, u in before.items() if u == {"eth1"}}
            assert on_eth1 and len(on_eth1) < len(inner), before
            subprocess.run(["ip", "-n", net.ns("isp1"), "link", "set", "dev", "up", "down"], check=True)
            wait_for(lambda: balancing_devices(router) == ["eth0"], 5)
            wait_for(lambda: "elem" not in nft(router, "list", "set", "inet", "multihome", "pairs2"), 2)
            connect(8082, 1)
            during = pair_uplinks(router, 8082)
            assert all(u == {"eth0"} for u in during.values()), during
            subprocess.run(["ip", "-n", net.ns("isp1"), "link", "set", "dev", "up", "up"], check=True)
            wait_for(lambda: balancing_devices(router) == ["eth0", "eth1"], 5)
            connect(8083, 1)
            after = pair_uplinks(router, 8083)
        # the pairs that moved keep eth0; the others never moved
        assert all(after[a] == {"eth0"} for a in on_eth1), after
        assert all(after[a] == before[a] for a in inner if a not in on_eth1), after
    finally:
        _stop(watch)
        log.close()


def test_confirm_reverts_the_nftables_table_too(build: Build, config: str) -> None:
    net = build(lab.gateway(nics=2))
    router = net.ns("router")
    nft(router, "-f", "-", stdin=PORT_FORWARD_TABLE)
    before = snapshot(router)
    ruleset = nft(router, "-a", "list", "ruleset")
    result = multihome(router, "-c", config, "apply", "--confirm", "1")
    assert "nftables table inet multihome" in result.stdout
    assert mh_table(router) != []
    # nobody confirms: the guardian puts routing and nftables back
    wait_for(lambda: mh_table(router) == [] and snapshot(router) == before, 10)
    assert nft(router, "-a", "list", "ruleset") == ruleset
    late = multihome(router, "confirm", check=False)
    assert "the change was reverted" in late.stdout, late


def test_a_damaged_table_is_put_right_by_the_next_apply(build: Build, config: str) -> None:
    net = build(lab.gateway(nics=2))
    router = net.ns("router")
    multihome(router, "-c", config, "apply")
    whole = nft(router, "list", "table", "inet", "multihome")
    rules = [c["rule"] for c in mh_table(router) if "rule" in c]
    victim = next(r for r in rules if r["chain"] == "postrouting")  # type: ignore[index]
    nft(router, "delete", "rule", "inet", "multihome", "postrouting", "handle", str(victim["handle"]))  # type: ignore[index]
    assert nft(router, "list", "table", "inet", "multihome") != whole
    out = multihome(router, "-c", config, "apply").stdout
    assert "~ nftables table inet multihome" in out, out
    assert nft(router, "list", "table", "inet", "multihome") == whole
    assert multihome(router, "-c", config, "apply").stdout.startswith("apply: nothing to do")


def _ports(ns: str, marks: dict[str, int]) -> dict[str, set[int]]:
    """The LAN client's established source ports per uplink mark (`conntrack -L`)."""
    found: dict[str, set[int]] = {}
    for name, value in marks.items():
        out = subprocess.run(
            ["ip", "netns", "exec", ns, "conntrack", "-L", "-p", "tcp", "--mark", f"{value:#x}/{MASK:#x}"],
            capture_output=True, text=True, check=True,
        ).stdout
        found[name] = {
            int(line.split("sport=")[1].split()[0])
            for line in out.splitlines()
            if "ESTABLISHED" in line and f"src={lab.CLIENT_ADDRESS}" in line
        }
    return found


def test_a_router_link_down_keeps_the_other_uplinks_marks_table_and_connections(
    build: Build, config: str
) -> None:
    # auto-detected uplinks (no [uplinks]): eth1's link goes down, then eth0's too
    net = build(lab.gateway(nics=3))
    router, client, server = net.ns("router"), net.ns("client"), net.ns("server")
    marks = {"eth0": 0x01000000, "eth1": 0x02000000, "eth2": 0x03000000}
    here = os.path.dirname(__file__)
    script = os.path.join(here, "longlived.py")
    processes: list[subprocess.Popen[str]] = []
    try:
        multihome(router, "-c", config, "apply")
        echo = subprocess.Popen(
            ["ip", "netns", "exec", server, PY, script, "server", "9000"], stdout=subprocess.PIPE, text=True
        )
        processes.append(echo)
        assert echo.stdout is not None and _readline(echo.stdout, 10).strip() == "ready"
        sessions = subprocess.Popen(
            ["ip", "netns", "exec", client, PY, script, "client", lab.SERVER_ADDRESS, "9000"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        processes.append(sessions)

        def command(line: str) -> Any:
            assert sessions.stdin is not None and sessions.stdout is not None
            sessions.stdin.write(line + "\n")
            sessions.stdin.flush()
            return json.loads(_readline(sessions.stdout, 20))

        opened = set(command("open 30"))
        wait_for(lambda: set().union(*_ports(router, marks).values()) >= opened, 5)
        placed = _ports(router, marks)
        assert placed["eth0"] and placed["eth2"], placed

        subprocess.run(["ip", "-n", router, "link", "set", "eth1", "down"], check=True)
        multihome(router, "-c", config, "apply")
        rules = {(r["fwmark"], r["table"]) for r in _fwmark_rules(router)}
        assert rules == {("0x1000000", "100"), ("0x3000000", "102")}, rules  # eth2 kept 3
        assert 'oifname "eth2" masquerade' in nft(router, "list", "table", "inet", "multihome")
        with TcpServer(server, size=1000):
            assert fetch(client, [lab.SERVER_ADDRESS], count=20) == {lab.SERVER_ADDRESS: 20}
        after = _ports(router, marks)
        assert placed["eth0"] <= after["eth0"] and placed["eth2"] <= after["eth2"], after
        report = {int(k): v for k, v in command("report").items()}
        assert not any(report[p] for p in placed["eth0"] | placed["eth2"]), report

        # one WAN left: the table and its masquerade stay (not single-homed)
        subprocess.run(["ip", "-n", router, "link", "set", "eth0", "down"], check=True)
        multihome(router, "-c", config, "apply")
        assert {(r["fwmark"], r["table"]) for r in _fwmark_rules(router)} == {("0x3000000", "102")}
        assert 'oifname "eth2" masquerade' in nft(router, "list", "table", "inet", "multihome")
        with TcpServer(server, size=1000):
            assert fetch(client, [lab.SERVER_ADDRESS], count=10) == {lab.SERVER_ADDRESS: 10}
        report = {int(k): v for k, v in command("report").items()}
        assert not any(report[p] for p in placed["eth2"]), report
    finally:
        for proc in reversed(processes):
            _stop(proc)


def test_a_change_of_only_the_table_counts_for_confirm_and_json(build: Build, config: str) -> None:
    net = build(lab.gateway(nics=2))
    router = net.ns("router")
    multihome(router, "-c", config, "apply")
    nft(router, "delete", "table", "inet", "multihome")  # only the table differs now
    planned = json.loads(multihome(router, "-c", config, "plan", "--json").stdout)
    assert planned["changed"] is True and planned["changes"] == [], planned
    assert multihome(router, "-c", config, "plan", "--check", check=False).returncode == 1
    result = multihome(router, "-c", config, "apply", "--confirm", "30", "--json")
    data = json.loads(result.stdout)
    assert data["changed"] is True and data["changes"] == [] and data["nftables"], data
    assert "confirm` within 30 s, or the change is reverted" in result.stderr, result
    assert json.loads(multihome(router, "confirm", "--json").stdout)["outcome"] == "kept"
    assert mh_table(router) != []


def test_doctor_reports_a_mark_overlap_and_reads_as_non_root(build: Build, config: str) -> None:
    net = build(lab.gateway(nics=2))
    router = net.ns("router")
    subprocess.run(
        ["ip", "-n", router, "rule", "add", "pref", "500", "fwmark", "0x2000000/0x3000000", "lookup", "300"],
        check=True,
    )
    result = multihome(router, "-c", config, "doctor", "--json", check=False)
    assert result.returncode == 1, result  # problems found, not a failure (2)
    checks = {f["check"]: f for f in json.loads(result.stdout)["findings"]}
    assert "fwmark 0x2000000/0x3000000 lookup 300" in " ".join(checks["mark-overlap"]["evidence"])
    assert multihome(router, "-c", config, "plan", check=False).returncode == 0
    assert multihome(router, "-c", config, "apply", check=False).returncode == 2  # refuses

    # an ordinary user cannot read the ruleset: doctor, show and plan say so and go on
    nobody = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups"]
    readable = Path(tempfile.mkdtemp(prefix="mh-gw-nobody-"))  # tmp_path's parents are 0700
    try:
        readable.chmod(0o755)
        shared = readable / "multihome.toml"
        shared.write_text(lab.CONFIG)
        shared.chmod(0o644)
        env = {**os.environ, "MULTIHOME_STATE_DIR": str(readable)}
        for args in (["doctor", "--json"], ["show"], ["plan"]):
            run = subprocess.run(
                ["ip", "netns", "exec", router, *nobody, PY, "-m", "multihome", "-c", str(shared), *args],
                capture_output=True, text=True, env=env, timeout=60,
            )
            assert "Traceback" not in run.stderr and run.returncode in (0, 1), (args, run)
            assert "readable by root only" in run.stdout + run.stderr, (args, run)
    finally:
        shutil.rmtree(readable)


def test_watch_fails_over_despite_a_later_mark_overlap(build: Build, tmp_path: Path) -> None:
    net = build(lab.gateway(nics=2))
    router = net.ns("router")
    path = tmp_path / "watch.toml"
    path.write_text(lab.uplinks_config())
    path.chmod(0o600)
    log = (tmp_path / "watch.log").open("w+")
    watch = subprocess.Popen(
        [PY, "-m", "multihome", "--netns", router, "watch", "-c", str(path)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for(lambda: balancing_devices(router) == ["eth0", "eth1"] and mh_table(router) != [], 10)
        table = nft(router, "list", "table", "inet", "multihome")
        # other software adds a rule on multihome's mark bits later
        subprocess.run(
            ["ip", "-n", router, "rule", "add", "pref", "500", "fwmark", "0x2000000/0x3000000", "lookup", "300"],
            check=True,
        )
        subprocess.run(["ip", "-n", net.ns("isp1"), "link", "set", "dev", "up", "down"], check=True)
        wait_for(lambda: balancing_devices(router) == ["eth0"], 8)  # the failover still happens
        assert nft(router, "list", "table", "inet", "multihome") == table  # kept as it was

        def status() -> Any:
            return json.loads(multihome(router, "status", "--json").stdout)

        wait_for(lambda: "mark_mask" in status().get("last_result", ""), 5)
        assert status()["errors"] >= 1
        log.seek(0)
        text = log.read()
        assert text.count("nftables table kept") == 1, text  # logged once, not every round
        assert "fwmark 0x2000000/0x3000000 lookup 300" in text, text
    finally:
        _stop(watch)
        log.close()


def test_doctor_reports_a_missing_or_damaged_table_as_drift(build: Build, config: str) -> None:
    net = build(lab.gateway(nics=2))
    router = net.ns("router")
    multihome(router, "-c", config, "apply")

    def drift() -> list[str]:
        result = multihome(router, "-c", config, "doctor", "--json", check=False)
        found = [f for f in json.loads(result.stdout)["findings"] if f["check"] == "drift"]
        return list(found[0]["evidence"]) if found else []

    assert drift() == []
    victim = next(c["rule"] for c in mh_table(router) if "rule" in c and c["rule"]["chain"] == "nat")  # type: ignore[index]
    nft(router, "delete", "rule", "inet", "multihome", "nat", "handle", str(victim["handle"]))  # type: ignore[index]
    assert any("differs from the plan" in line for line in drift())
    nft(router, "delete", "table", "inet", "multihome")
    assert any("nftables table inet multihome is missing" in line for line in drift())


def test_watch_flushes_the_connections_of_an_uplink_that_left_the_table(
    build: Build, config: str, tmp_path: Path
) -> None:
    # auto-detected uplinks: eth1 loses its default route (DHCP lease lost, link up) and
    # leaves the table; its port-forwarded connections (not masqueraded, so the kernel keeps
    # their entries) can no longer be answered through it: flush_on_down deletes them
    net = build(lab.gateway(nics=2))
    router, client, server = net.ns("router"), net.ns("client"), net.ns("server")
    nft(router, "-f", "-", stdin=PORT_FORWARD_TABLE)
    script = os.path.join(os.path.dirname(__file__), "longlived.py")
    log = (tmp_path / "watch.log").open("w+")
    processes: list[subprocess.Popen[Any]] = []
    try:
        processes.append(subprocess.Popen(
            [PY, "-m", "multihome", "--netns", router, "watch", "-c", config], stdout=log, stderr=subprocess.STDOUT
        ))
        inner = subprocess.Popen(
            ["ip", "netns", "exec", client, PY, script, "server", "8080"], stdout=subprocess.PIPE, text=True
        )
        processes.append(inner)
        assert inner.stdout is not None and _readline(inner.stdout, 10).strip() == "ready"
        wait_for(lambda: balancing_devices(router) == ["eth0", "eth1"] and mh_table(router) != [], 10)
        sessions = subprocess.Popen(
            ["ip", "netns", "exec", server, PY, script, "client", lab.uplink_address(1), "8080"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        processes.append(sessions)
        assert sessions.stdin is not None and sessions.stdout is not None
        sessions.stdin.write("open 8\n")
        sessions.stdin.flush()
        assert len(json.loads(_readline(sessions.stdout, 20))) == 8
        wait_for(lambda: tracked(router, MARKS["eth1"]) >= 8, 5)

        subprocess.run(["ip", "-n", router, "route", "del", "default", "dev", "eth1"], check=True)
        wait_for(lambda: [r["table"] for r in _fwmark_rules(router)] == ["100"], 8)
        wait_for(lambda: tracked(router, MARKS["eth1"]) == 0, 5)
        log.seek(0)
        assert "eth1: left the table" in log.read()
    finally:
        for proc in reversed(processes):
            _stop(proc)
        log.close()
