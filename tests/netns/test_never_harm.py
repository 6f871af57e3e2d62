"""`watch` and the commands when the kernel or the admin disagree, on the real kernel:
reconcile failures back off; output that cannot be written fails the command; drift of
multihome's nftables table is judged on its content; conntrack work leaves the loop alone."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from multihome.lab import scenarios

from .helpers import PY, multihome
from .test_watch import Build, status, wait_for


def test_a_failing_reconcile_backs_off_and_recovers(build: Build, tmp_path: Path) -> None:
    """A read-only /proc/sys (in the daemon's own mount namespace): its sysctl writes fail.
    Today's watch retried on the events of its own undo, ~30 times a second."""
    net = build(scenarios.seed(nics=2))
    server = net.ns("server")
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (lives as long as the daemon)
    read_only = (
        "mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys"
        f" && exec {PY} -m multihome watch"
    )
    proc = subprocess.Popen(
        [
            *("ip", "netns", "exec", server, "unshare", "-m", "--propagation", "private"),
            *("sh", "-c", read_only),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def text() -> str:
        log.seek(0)
        return log.read()

    try:
        wait_for(lambda: "watching" in text(), 10)
        assert "failed" in text()
        assert status(server)["failure"]
        shown = multihome(server, "status").stdout
        assert "reconciles FAIL since" in shown and "Read-only file system" in shown
        # events: an address comes and goes, a link flaps, during 10 s
        first = status(server)["reconciles"]
        lines = len(text().splitlines())
        start = time.monotonic()
        for _ in range(5):
            subprocess.run(
                ["ip", "-n", server, "addr", "add", "192.0.2.50/24", "dev", "eth1"], check=True
            )
            time.sleep(0.5)
            subprocess.run(
                ["ip", "-n", server, "addr", "del", "192.0.2.50/24", "dev", "eth1"], check=True
            )
            time.sleep(0.5)
        time.sleep(max(0.0, 10 - (time.monotonic() - start)))
        attempts = status(server)["reconciles"] - first
        logged = len(text().splitlines()) - lines
        assert 1 <= attempts < 10, attempts
        assert logged <= 1, text()
        seen = status(server)
        assert seen["failures_in_a_row"] >= attempts and "Read-only" in seen["failure"]
        # the cause goes away: the next retry (at most 15 s on) works, and says so
        subprocess.run(
            ["nsenter", "-t", str(proc.pid), "-m", "mount", "-o", "remount,bind,rw", "/proc/sys"],
            check=True,
        )
        wait_for(lambda: "works again" in text(), 20)
        assert status(server)["failure"] == ""
        assert multihome(server, "plan", "--check").returncode == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def _run(ns: str, *args: str, stdout: IO[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "multihome", "--netns", ns, *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
    )


def _one_line(stderr: str, why: str, as_json: bool = False) -> None:
    if as_json:  # under --json, the error is one JSON object on one line
        error = {"error": f"cannot write the output: {why}", "hint": "", "exit_code": 2}
        assert stderr == json.dumps(error) + "\n", stderr
        return
    assert stderr == f"multihome: cannot write the output: {why}\n", stderr


def test_output_that_cannot_be_written_fails_the_command(build: Build, tmp_path: Path) -> None:
    net = build(scenarios.two_isp(nics=2))
    server = net.ns("server")
    commands = [
        ("show",),
        ("plan",),
        ("plan", "--format", "ip"),
        ("doctor",),
        ("export", "--format", "ip"),
        ("show", "--json"),
    ]
    with open("/dev/full", "w") as full:
        for args in commands:  # small outputs: written at the final flush
            result = _run(server, *args, stdout=full)
            assert result.returncode == 2, (args, result)
            _one_line(result.stderr, "No space left on device", as_json="--json" in args)
    # large outputs (more than any buffer): written, and failing, while the command runs
    batch = "".join(f"address add 198.18.{i // 250}.{i % 250 + 1}/32 dev eth0\n" for i in range(2000))
    subprocess.run(["ip", "-n", server, "-batch", "-"], input=batch, text=True, check=True)
    with open("/dev/full", "w") as full:
        result = _run(server, "show", "--json", stdout=full)
    assert result.returncode == 2
    _one_line(result.stderr, "No space left on device", as_json=True)
    # a reader that leaves after one byte (`| head -c1`)
    proc = subprocess.Popen(
        [PY, "-m", "multihome", "--netns", server, "show", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(1) == "{"
    proc.stdout.close()
    assert proc.wait(timeout=60) == 2
    _one_line(proc.stderr.read(), "Broken pipe", as_json=True)
    # written in full: exit 0, and `-o -` is standard output, not a directory named "-"
    ok = subprocess.run(
        [PY, "-m", "multihome", "--netns", server, "export", "--format", "ip", "-o", "-"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    assert "# ==> multihome.sh <==" in ok.stdout
    assert not (tmp_path / "-").exists()


GATEWAY = """\
[uplinks.eth0]
gateway = "192.0.2.1"
[uplinks.eth1]
gateway = "192.0.2.33"
[gateway]
lan = ["lan0"]
"""


def _nft_rules(ns: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-j", "list", "table", "inet", "multihome"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [item["rule"] for item in json.loads(out)["nftables"] if "rule" in item]


def test_an_edited_rule_of_multihomes_table_is_drift_and_apply_repairs_it(
    build: Build, tmp_path: Path
) -> None:
    from multihome.lab import gateway as lab

    net = build(lab.gateway(nics=2))
    router = net.ns("router")
    path = tmp_path / "gateway.toml"
    path.write_text(GATEWAY)
    path.chmod(0o600)
    multihome(router, "-c", str(path), "apply")
    assert multihome(router, "-c", str(path), "plan", "--check").returncode == 0
    before = _nft_rules(router)
    (masquerade,) = [r for r in before if r["chain"] == "nat" and "eth1" in json.dumps(r)]
    # same number of rules, other content: eth1's masquerade becomes an accept
    subprocess.run(
        [
            *("ip", "netns", "exec", router, "nft", "replace", "rule", "inet", "multihome"),
            *("nat", "handle", str(masquerade["handle"])),
            *("meta", "nfproto", "ipv4", "iifname", "lan0", "oifname", "eth1", "accept"),
        ],
        check=True,
    )
    edited = _nft_rules(router)
    assert len(edited) == len(before) and "masquerade" not in json.dumps(
        [r for r in edited if r["chain"] == "nat" and "eth1" in json.dumps(r)]
    )
    assert multihome(router, "-c", str(path), "plan", "--check", check=False).returncode == 1
    doctor = multihome(router, "-c", str(path), "doctor", check=False)
    assert "nftables table inet multihome differs from the plan" in doctor.stdout
    multihome(router, "-c", str(path), "apply")
    repaired = _nft_rules(router)
    strip = [{k: v for k, v in r.items() if k != "handle"} for r in repaired]
    assert strip == [{k: v for k, v in r.items() if k != "handle"} for r in before]
    assert multihome(router, "-c", str(path), "plan", "--check").returncode == 0


# From the LAN client: one UDP flow per destination port, each a conntrack entry on the
# router that multihome's table marks for the uplink the flow leaves by. Paced, so that no
# burst overflows a backlog queue on the way.
FLOWS = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for port in range(1, int(sys.argv[1]) + 1):
    s.sendto(b"x", ("203.0.113.100", port))
    if port % 400 == 0:
        time.sleep(0.004)
"""


def cpu_seconds(pid: int) -> float:
    """A process's CPU time, with that of the children it has waited for (conntrack, nft)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def test_many_conntrack_entries_leave_the_watch_loop_alone(build: Build, tmp_path: Path) -> None:
    from multihome.lab import gateway as lab

    from .test_gateway import balancing_devices

    net = build(lab.gateway(nics=2))
    router, client = net.ns("router"), net.ns("client")
    subprocess.run(
        ["ip", "netns", "exec", router, "sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=600"],
        check=True,
    )
    path = tmp_path / "watch.toml"
    path.write_text(lab.uplinks_config())
    path.chmod(0o600)
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (lives as long as the daemon)
    proc = subprocess.Popen(
        [
            *(PY, "-m", "multihome", "--netns", router, "watch", "-c", str(path)),
            *("--metrics", "127.0.0.1:9478"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def text() -> str:
        log.seek(0)
        return log.read()

    def rule_for(address: str) -> bool:
        rules = json.loads(
            subprocess.run(["ip", "-n", router, "-j", "rule"], capture_output=True, check=True).stdout
        )
        return any(r.get("src") == address for r in rules)

    def event_latency(subnet: int) -> float:
        """An address in a subnet of its own (one in eth1's subnet changes no rule): until
        its prefix's rule is in."""
        address = f"198.18.{subnet}.1/24"
        subprocess.run(["ip", "-n", router, "addr", "add", address, "dev", "eth1"], check=True)
        return wait_for(lambda: rule_for(f"198.18.{subnet}.0"), 5)

    try:
        wait_for(lambda: "watching" in text(), 10)
        wait_for(lambda: balancing_devices(router) == ["eth0", "eth1"], 10)
        quiet = event_latency(40)
        subprocess.run(
            ["ip", "netns", "exec", client, PY, "-c", FLOWS, "60000"], check=True, timeout=120
        )
        count = subprocess.run(
            ["ip", "netns", "exec", router, "conntrack", "-C"], capture_output=True, text=True
        ).stdout
        assert int(count) >= 50000, count
        # the daemon's CPU while nothing happens: no walk of 60,000 entries every 2 s
        before, start = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(6)
        share = (cpu_seconds(proc.pid) - before) / (time.monotonic() - start)
        assert share < 0.05, f"{share:.1%} of a core"
        loaded = max(event_latency(41 + i) for i in range(5))
        assert loaded < max(0.5, 5 * quiet), (quiet, loaded)
        # metrics still report each uplink's connections, from the table's counters
        fetch = (
            "import urllib.request;"
            "print(urllib.request.urlopen('http://127.0.0.1:9478/metrics').read().decode())"
        )
        metrics = subprocess.run(
            ["ip", "netns", "exec", router, PY, "-c", fetch], capture_output=True, text=True, check=True
        ).stdout
        totals = {
            m[1]: int(m[2])
            for m in re.finditer(r'multihome_uplink_connections_total\{uplink="(\w+)"\} (\d+)', metrics)
        }
        assert sum(totals.values()) >= 50000 and min(totals.values()) > 0, totals
        # failover: ISP 1's upstream dies; the route leaves it as fast as without the load,
        # and its connections (only those) are flushed off the loop
        subprocess.run(["ip", "-n", net.ns("isp1"), "link", "set", "dev", "up", "down"], check=True)
        detection = wait_for(lambda: balancing_devices(router) == ["eth0"], 10)
        assert detection < 2.5, detection
        wait_for(lambda: "tracked connections flushed" in text(), 30)
        flushed = re.search(r"eth1: (\d+) tracked connections flushed", text())
        assert flushed and int(flushed[1]) > 10000, text()
        print(f"event {quiet * 1000:.0f} ms quiet, {loaded * 1000:.0f} ms at {count.strip()}"
              f" entries; daemon CPU {share:.1%}; failover {detection:.2f} s")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
