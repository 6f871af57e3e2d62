"""Host mode's inbound pinning against the real kernel: a two-ISP server (both ISPs drop
spoofed sources, strict rp_filter on the server as RHEL ships it) with a libvirt-style bridge
(virbr0, a VM behind it) and a hand-made iptables-nft port forward to the VM, beside a
kube-proxy-style nft table with its 0x4000/0x8000 marks. Checked with independent readers:
`iptables-save`, `nft list ruleset`, `conntrack -L`, `ip -j rule`, and real connections."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from multihome.kernel.processes import stop
from multihome.lab import gateway as lab
from multihome.lab.description import Topology
from multihome.lab.topology import Network
from multihome.watch.scheduler import FIREWALL_GAP

from .helpers import PY, TcpServer, fetch, ip_json, multihome, sysctl

Build = Callable[[Topology], Network]
HERE = os.path.dirname(__file__)
VM = "198.18.0.10"
MARKS = {"eth0": 0x01000000, "eth1": 0x02000000}
PORT = 8080

KUBE_TABLE = """\
table ip kube-proxy {
\tchain mark-for-masquerade {
\t\tmeta mark set meta mark | 0x00004000
\t}
\tchain nat-prerouting {
\t\ttype nat hook prerouting priority dstnat - 1; policy accept;
\t\ttcp dport 30080 jump mark-for-masquerade
\t}
\tchain masquerading {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tmeta mark & 0x00004000 == 0x00000000 return
\t\tmeta mark set meta mark ^ 0x00004000
\t}
\tchain filter-forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tmeta mark & 0x00008000 == 0x00008000 drop
\t}
}
"""


def run(ns: str, *argv: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv], input=stdin, capture_output=True, text=True, check=True
    ).stdout


def foreign(ns: str) -> str:
    """Everything but multihome's table: iptables-save without its counters and dates, and
    the kube-proxy-style table as nft prints it (handles included)."""
    saved = "\n".join(
        line
        for line in run(ns, "iptables-save").splitlines()
        if not line.startswith("#")
    )
    return saved + run(ns, "nft", "-a", "list", "table", "ip", "kube-proxy")


def uplinks() -> list[str]:
    return [lab.uplink_address(i) for i in range(2)]


@pytest.fixture
def host(build: Build) -> Iterator[Network]:
    net = build(lab.vm_host())
    router = net.ns(lab.ROUTER)
    for argv in lab.port_forward((PORT,)):
        run(router, *argv)
    run(router, "nft", "-f", "-", stdin=KUBE_TABLE)
    with TcpServer(net.ns(lab.CLIENT), port=PORT), TcpServer(net.ns(lab.SERVER), port=PORT):
        yield net


def test_a_port_forward_answers_through_every_uplink_with_plain_apply(host: Network) -> None:
    router, outside = host.ns(lab.ROUTER), host.ns(lab.SERVER)
    eth0, eth1 = uplinks()
    before = foreign(router)
    stock = fetch(outside, [eth0, eth1], count=20)
    assert stock == {eth0: 20, eth1: 0}, stock  # eth1's replies leave by eth0: ISP 1 drops them

    doctor = multihome(router, "doctor", "--json", check=False)
    found = {f["check"]: f for f in json.loads(doctor.stdout)["findings"]}
    assert "forwarding-one-uplink" in found, doctor.stdout
    evidence = "\n".join(found["forwarding-one-uplink"]["evidence"])
    assert "iptables-nft, table nat, chain PREROUTING" in evidence, evidence
    assert f"--to-destination {VM}:{PORT}" in evidence, evidence
    assert "eth1" in evidence and "leaves by eth0" in evidence, evidence

    plan = multihome(router, "plan").stdout
    assert (
        "inbound pinning: eth0, eth1: DNAT to virbr0 found"
        " (iptables-nft, table nat, chain PREROUTING)" in plan
    ), plan
    shown = multihome(router, "show").stdout
    assert "Inbound pinning" in shown and "DNAT to virbr0 found" in shown, shown

    applied = json.loads(multihome(router, "apply", "--json").stdout)
    # (the stock round's connections via eth0 still in TIME_WAIT are re-marked too)
    assert applied["pinning"] and isinstance(applied["remarked"], int), applied
    assert foreign(router) == before
    assert sysctl(router, "net/ipv4/conf/all/src_valid_mark") == "1"
    marks = {
        (r.get("fwmark"), r.get("fwmask"), r.get("table"))
        for r in ip_json(router, "-4", "rule")
        if r.get("protocol") in ("77", "multihome") and "fwmark" in r
    }
    assert marks == {("0x1000000", "0xf000000", "100"), ("0x2000000", "0xf000000", "101")}, marks
    assert fetch(outside, [eth0, eth1], count=20) == {eth0: 20, eth1: 20}
    # the VM's own connections keep main's route (not pinned: masqueraded to eth0's address)
    assert fetch(host.ns(lab.CLIENT), [lab.SERVER_ADDRESS], count=5) == {lab.SERVER_ADDRESS: 5}
    egress = run(router, "conntrack", "-L", "-f", "ipv4", "-s", VM, "-d", lab.SERVER_ADDRESS)
    assert "mark=0 " in egress and f"dst={eth0}" in egress, egress
    doctor_after = json.loads(multihome(router, "doctor", "--json", check=False).stdout)
    assert "forwarding-one-uplink" not in {f["check"] for f in doctor_after["findings"]}
    assert multihome(router, "apply").stdout.count("nothing to do") == 1  # idempotent

    multihome(router, "remove")
    assert foreign(router) == before
    assert "multihome" not in run(router, "nft", "list", "tables")
    assert sysctl(router, "net/ipv4/conf/all/src_valid_mark") == "0"
    assert fetch(outside, [eth0, eth1], count=20) == {eth0: 20, eth1: 0}


def test_pin_inbound_false_turns_it_off(host: Network, tmp_path: os.PathLike[str]) -> None:
    router = host.ns(lab.ROUTER)
    path = os.path.join(tmp_path, "m.toml")
    with open(path, "w") as file:
        file.write("[multihome]\npin_inbound = false\n")
    os.chmod(path, 0o600)
    out = multihome(router, "apply", "-c", path).stdout
    assert "inbound pinning" not in out, out
    assert "multihome" not in run(router, "nft", "list", "tables")


def test_an_iptables_nft_connmark_rule_on_the_band(host: Network, tmp_path: os.PathLike[str]) -> None:
    """The mark-overlap refusal of gateway mode sees a CONNMARK rule made with iptables-nft
    (nft shows it only as an `xt` expression); plain apply leaves pinning out with a note."""
    router, outside = host.ns(lab.ROUTER), host.ns(lab.SERVER)
    run(router, "iptables", "-t", "mangle", "-A", "PREROUTING", "-j", "CONNMARK",
        "--set-xmark", "0x2000000/0x3000000")
    path = os.path.join(tmp_path, "gw.toml")
    with open(path, "w") as file:
        file.write('[gateway]\nlan = ["virbr0"]\n')
    os.chmod(path, 0o600)
    refused = multihome(router, "apply", "-c", path, check=False)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "iptables-nft table mangle chain PREROUTING" in refused.stderr, refused.stderr
    assert "--set-xmark 0x2000000/0x3000000" in refused.stderr, refused.stderr

    applied = multihome(router, "apply")
    assert "inbound pinning left out" in applied.stdout, applied.stdout
    assert "[multihome] mark_mask" in applied.stdout, applied.stdout
    assert "multihome" not in run(router, "nft", "list", "tables")
    eth0, eth1 = uplinks()
    assert fetch(outside, [eth0, eth1], count=5) == {eth0: 5, eth1: 0}  # as stock, no worse

    # the fix the note names: a band nobody else uses
    moved = os.path.join(tmp_path, "moved.toml")
    with open(moved, "w") as file:
        file.write("[multihome]\nmark_mask = 0x00F00000\n")
    os.chmod(moved, 0o600)
    multihome(router, "apply", "-c", moved)
    assert fetch(outside, [eth0, eth1], count=5) == {eth0: 5, eth1: 5}


@contextmanager
def open_connection(ns: str, address: str) -> Iterator[subprocess.Popen[str]]:
    """A connection held open from `ns` to the echo server: a line on stdin sends a byte
    and prints whether its echo came back."""
    code = (
        "import socket,sys\n"
        f"s=socket.create_connection(('{address}',{PORT + 1}),timeout=3)\n"
        "print('open',flush=True)\n"
        "for _ in sys.stdin:\n"
        "    s.sendall(b'x')\n"
        "    try: print('echo' if s.recv(1)==b'x' else 'none',flush=True)\n"
        "    except OSError: print('none',flush=True)\n"
    )
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, PY, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "open"
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def echoes(proc: subprocess.Popen[str]) -> bool:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip() == "echo"


@contextmanager
def echo_server(net: Network) -> Iterator[None]:
    """An echo server on the VM, port-forwarded from eth0 (PORT + 1)."""
    run(net.ns(lab.ROUTER), "iptables", "-t", "nat", "-A", "PREROUTING", "-i", "eth0", "-p",
        "tcp", "--dport", str(PORT + 1), "-j", "DNAT", "--to-destination", f"{VM}:{PORT + 1}")
    echo = subprocess.Popen(
        ["ip", "netns", "exec", net.ns(lab.CLIENT), PY, os.path.join(HERE, "longlived.py"),
         "server", str(PORT + 1)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
        yield
    finally:
        stop(echo)
        assert echo.stdout is not None
        echo.stdout.close()


def marked(ns: str) -> str:
    """The connections conntrack holds with eth0's mark (`conntrack -L`)."""
    return run(ns, "conntrack", "-L", "-f", "ipv4", "--mark", f"{MARKS['eth0']:#x}/0x0f000000")


def test_connections_open_before_apply_are_re_marked(host: Network) -> None:
    router, outside = host.ns(lab.ROUTER), host.ns(lab.SERVER)
    with echo_server(host), open_connection(outside, uplinks()[0]) as conn:
        assert echoes(conn)
        listed = run(router, "conntrack", "-L", "-f", "ipv4", "-p", "tcp", "--dport",
                     str(PORT + 1))
        assert "mark=0 " in listed, listed
        text = multihome(router, "apply").stdout
        assert "re-marked 1 port-forwarded connection open before apply" in text, text
        assert f"dport={PORT + 1}" in marked(router)
        assert echoes(conn)  # the connection lives on, now routed by its mark
        again = json.loads(multihome(router, "apply", "--json").stdout)
        assert again["remarked"] == 0, again  # (conntrack counts only what it changed)


@contextmanager
def watching(router: str) -> Iterator[subprocess.Popen[bytes]]:
    """`multihome watch` in the router's namespace, stopped afterwards whatever happens."""
    watch = subprocess.Popen(
        [PY, "-m", "multihome", "--netns", router, "watch"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield watch
    finally:
        stop(watch)


def test_watch_pins_and_only_apply_re_marks(host: Network) -> None:
    """Under `multihome watch` the pinning is kept by every reconcile, but the connections
    open before are re-marked once, by `apply` (handed to the watch), not by reconciles."""
    router, outside = host.ns(lab.ROUTER), host.ns(lab.SERVER)
    eth0, eth1 = uplinks()
    with echo_server(host), open_connection(outside, eth0) as conn, watching(router) as watch:
        deadline = time.monotonic() + 15
        while "multihome" not in run(router, "nft", "list", "tables"):
            assert time.monotonic() < deadline, "watch made no table"
            time.sleep(0.1)
        assert fetch(outside, [eth0, eth1], count=5) == {eth0: 5, eth1: 5}
        run(router, "kill", "-HUP", str(watch.pid))  # one more reconcile, at once
        time.sleep(1)
        assert f"dport={PORT + 1}" not in marked(router)  # reconciles re-mark nothing
        before = run(router, "conntrack", "-L", "-f", "ipv4")
        applied = json.loads(multihome(router, "apply", "--json").stdout)
        assert applied["by_watch"]["pid"] == watch.pid and applied["remarked"] == 1, (
            applied,
            before,
        )
        assert f"dport={PORT + 1}" in marked(router)
        assert echoes(conn)


def test_watch_follows_a_port_forward_published_while_it_runs(build: Build) -> None:
    """A port forward added while the watch runs (a container started, a VM's forward made)
    is pinned by the reconcile that nftables' notification of the new rules starts, not by
    the periodic one 30 s later; the watch's own table writes wake no reconcile of their
    own (the count of reconciles stays still once it has followed)."""
    net = build(lab.vm_host())
    router, outside = net.ns(lab.ROUTER), net.ns(lab.SERVER)
    eth0, eth1 = uplinks()

    def reconciles() -> int:
        status = multihome(router, "status", "--json", check=False)
        return int(json.loads(status.stdout).get("reconciles", 0)) if status.stdout else 0

    with TcpServer(net.ns(lab.CLIENT), port=PORT), TcpServer(outside, port=PORT), watching(router):
        deadline = time.monotonic() + 15
        while reconciles() < 1:
            assert time.monotonic() < deadline, "watch did not start"
            time.sleep(0.05)
        assert "multihome" not in run(router, "nft", "list", "tables")  # nothing to pin
        for argv in lab.port_forward((PORT,)):
            run(router, *argv)
        added = time.monotonic()
        while "multihome" not in run(router, "nft", "list", "tables"):
            # the periodic reconcile comes 30 s after the first
            assert time.monotonic() - added < 10, "the new port forward was not followed"
            time.sleep(0.02)
        print(f"port forward pinned {time.monotonic() - added:.2f} s after it was added")
        assert fetch(outside, [eth0, eth1], count=5) == {eth0: 5, eth1: 5}
        # the port forward is several iptables commands: those after the first wait for the
        # firewall gap (one more reconcile); after that, nothing
        time.sleep(FIREWALL_GAP + 0.5)
        settled = reconciles()
        time.sleep(FIREWALL_GAP + 1)
        assert reconciles() == settled
