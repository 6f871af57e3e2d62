"""Rendered files, run by the real tools, build the same kernel state as `multihome apply`
(up to the protocol number): the ip script, and the real systemd-networkd.

Every test runs with `balance = true`: the ip script builds the balancing route and rule
too; the stacks leave both to multihome-watch.service, and build everything else."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from multihome.lab import scenarios
from multihome.lab.description import Topology
from multihome.lab.topology import Network

from .helpers import PY, ip_json, multihome, sysctl
from .test_networkmanager import boot, managed, policy, settles_or_reapply

Build = Callable[[Topology], Network]
NETWORKD = "/lib/systemd/systemd-networkd"
NEED = {tool: shutil.which(tool) for tool in ("netplan", "ifup")}
RUN_NETWORKD = """
set -e
mount --make-rprivate /
mount -t tmpfs tmpfs /run/systemd
mkdir -p /run/systemd/netif/links /run/systemd/netif/leases /run/systemd/netif/lldp \
    /run/systemd/network
chown -R systemd-network:systemd-network /run/systemd/netif
cp -r "$1"/. /run/systemd/network/
mount -t tmpfs tmpfs /etc/systemd/network
mount -o remount,ro /sys
exec {networkd}
"""


State = tuple[set[tuple[object, ...]], set[tuple[object, ...]]]


def policy_state(ns: str) -> State:
    """multihome's layout as iproute2 shows it, without the protocol numbers."""
    rules: set[tuple[object, ...]] = {
        (family, r["priority"], r["src"], r["table"], r.get("suppress_prefixlen"))
        for family in ("-4", "-6")
        for r in ip_json(ns, family, "rule")
        if 1000 <= r["priority"] <= 1003
    }
    routes: set[tuple[object, ...]] = {
        (
            family,
            r.get("table"),
            r["dst"],
            r.get("gateway"),
            r.get("dev"),
            r.get("prefsrc"),
            r.get("scope"),
            tuple((h.get("gateway"), h.get("dev"), h.get("weight")) for h in r.get("nexthops", [])),
            r.get("from"),  # (an IPv6 route from a prefix, in main)
        )
        for family in ("-4", "-6")
        for r in ip_json(ns, family, "route", "show", "table", "all")
        if (r.get("table", "main").isdigit() and 100 <= int(r["table"]) <= 199) or "from" in r
    }
    return rules, routes


BALANCE = "[multihome]\nbalance = true\n"


def balanced(ns: str, directory: Path) -> str:
    """The config of every test: balancing on (table 199, rule 1003)."""
    path = directory / "multihome.toml"
    path.write_text(BALANCE)
    return str(path)


def expected_state(ns: str, config: str) -> State:
    multihome(ns, "apply", "-c", config)
    expected = policy_state(ns)
    assert len(expected[0]) >= 7 and len(expected[1]) >= 9
    assert [r for r in expected[1] if r[1] == "199" and str(r[7]).count("eth") == 2]
    multihome(ns, "remove", "-c", config)
    assert policy_state(ns) == (set(), set())
    return expected


def without_balancing(state: State) -> State:
    """What a stack builds: everything but the balancing rule and route (watch's job)."""
    rules, routes = state
    return {r for r in rules if r[3] != "199"}, {r for r in routes if r[1] != "199"}


def applied_state(ns: str) -> State:
    """What `apply` builds without a config (no balancing; IPv6 uplinks alone on their
    prefixes by a route from it in main), and the host stock again after `remove`."""
    multihome(ns, "apply")
    found = policy_state(ns)
    multihome(ns, "remove")
    assert policy_state(ns) == (set(), set())
    return found


def test_ip_script_builds_what_apply_builds(build: Build, tmp_path: Path) -> None:
    net = build(scenarios.two_isp(nics=2))
    server = net.ns("server")
    config = balanced(server, tmp_path)
    expected = expected_state(server, config)
    out = tmp_path / "export"
    multihome(server, "export", "-c", config, "--format", "ip", "-o", str(out))
    for _ in range(2):  # the script can run again
        subprocess.run(["ip", "netns", "exec", server, "sh", str(out / "multihome.sh")], check=True)
        assert policy_state(server) == expected


def run_networkd(ns: str, directory: Path, expected: State) -> None:
    """Run the real systemd-networkd in the namespace with the .network files of `directory`
    (DESIGN.md's recipe) until the policy state is `expected`, or fail after 15 s."""
    for ifname in ("eth0", "eth1"):  # networkd configures the uplinks from scratch, as at boot
        subprocess.run(["ip", "-n", ns, "addr", "flush", "dev", ifname], check=True)
    daemon = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            ns,
            "unshare",
            "-m",
            "sh",
            "-c",
            RUN_NETWORKD.format(networkd=NETWORKD),
            "run-networkd",
            str(directory),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 15
        while policy_state(ns) != expected and time.monotonic() < deadline:
            assert daemon.poll() is None, daemon.stdout.read() if daemon.stdout else ""
            time.sleep(0.2)
        assert policy_state(ns) == expected
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=10)


def _network_file(topology: Topology, ifname: str) -> str:
    lines = ["[Match]", f"Name={ifname}", "", "[Network]", "IPv6AcceptRA=no"]
    lines += [f"Address={a}" for a in topology.addresses_of("server", ifname)]
    for host, dst, via, dev, metric in topology.routes:
        if host == "server" and dev == ifname:
            lines += ["", "[Route]", f"Gateway={via}", f"Metric={metric}"]
            assert ipaddress.ip_network(dst).prefixlen == 0
    return "\n".join(lines) + "\n"


@pytest.mark.skipif(not os.access(NETWORKD, os.X_OK), reason="systemd-networkd not installed")
def test_real_networkd_builds_what_apply_builds(build: Build, tmp_path: Path) -> None:
    topology = scenarios.two_isp(nics=2)
    net = build(topology)
    server = net.ns("server")
    config = balanced(server, tmp_path)
    expected = without_balancing(expected_state(server, config))
    tmp_path = tmp_path / "network"  # the state directory is tmp_path itself
    exported = multihome(
        server, "export", "-c", config, "--format", "networkd", "-o", str(tmp_path)
    )
    assert "multihome-watch.service" in exported.stderr + exported.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["10-eth0.network.d", "10-eth1.network.d"]
    for ifname in ("eth0", "eth1"):
        (tmp_path / f"10-{ifname}.network").write_text(_network_file(topology, ifname))
    run_networkd(server, tmp_path, expected)
    # the sysctls are the systemd format's job (sysctl.d); networkd leaves them alone
    assert sysctl(server, "net.ipv4.conf.eth0.arp_ignore") == "0"


NETPLAN_BASE = """network:
  version: 2
  ethernets:
{interfaces}"""


@pytest.mark.skipif(not NEED["netplan"], reason="netplan not installed")
def test_real_netplan_generate_then_networkd(build: Build, tmp_path: Path) -> None:
    """netplan expresses the tables and the off-link source rules (it has no
    suppress_prefixlength): exactly those must come out of the real netplan + networkd."""
    topology = scenarios.two_isp(nics=2)
    net = build(topology)
    server = net.ns("server")
    config = balanced(server, tmp_path)
    rules, routes = without_balancing(expected_state(server, config))
    expected = ({r for r in rules if r[1] == 1002}, routes)
    root = tmp_path / "root"
    multihome(
        server, "export", "-c", config, "--format", "netplan", "-o", str(root / "etc/netplan")
    )
    interfaces = ""
    for ifname in ("eth0", "eth1"):
        addresses = ", ".join(f'"{a}"' for a in topology.addresses_of("server", ifname))
        interfaces += f"    {ifname}:\n      addresses: [{addresses}]\n"
    base = root / "etc/netplan/10-base.yaml"
    base.write_text(NETPLAN_BASE.format(interfaces=interfaces))
    for yaml in (root / "etc/netplan").iterdir():
        yaml.chmod(0o600)
    subprocess.run(["netplan", "generate", "--root-dir", str(root)], check=True)
    generated = root / "run/systemd/network"
    assert sorted(p.name for p in generated.iterdir()) == [
        "10-netplan-eth0.network",
        "10-netplan-eth1.network",
    ]
    run_networkd(server, generated, expected)


@pytest.mark.skipif(not NEED["ifup"], reason="ifupdown not installed")
def test_real_ifup_runs_the_stanzas(build: Build, tmp_path: Path) -> None:
    net = build(scenarios.two_isp(nics=2))
    server = net.ns("server")
    config = balanced(server, tmp_path)
    expected = expected_state(server, config)
    out = tmp_path / "interfaces.d"
    multihome(server, "export", "-c", config, "--format", "ifupdown", "-o", str(out))
    interfaces = tmp_path / "interfaces"
    interfaces.write_text(f"source {out}/multihome\n")
    state = tmp_path / "ifstate"
    state.mkdir()
    ifupdown = ["ip", "netns", "exec", server]
    common = ["-i", str(interfaces), "--state-dir", str(state), "--force", "eth0", "eth1"]
    subprocess.run([*ifupdown, "ifup", *common], check=True, capture_output=True)
    assert policy_state(server) == without_balancing(expected)
    assert sysctl(server, "net.ipv4.fib_multipath_hash_policy") == "1"
    multihome(server, "apply", "-c", config)  # what multihome-watch.service does at start
    assert policy_state(server) == expected
    multihome(server, "remove", "-c", config)
    subprocess.run([*ifupdown, "ifdown", *common], check=True, capture_output=True)
    assert policy_state(server) == (set(), set())


# A networkd host in a namespace: a PID namespace (networkd is its PID 1, so that
# multihome takes networkd's /run for this network namespace's, as on a booted host), a
# mount namespace with /etc as an overlay whose writes land in the test's directory (the
# .network files, multihome's drop-ins, anything install writes), the test's /var/lib
# (multihome's manifest) and a fresh /run/systemd. multihome runs there too (nsenter), as
# root on that host would: its install writes under /, and every command reads the manifest.
HOST_NETWORKD = """
set -e
mount --make-rprivate /
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1/etc,workdir=$1/etc-work" /etc
mount -t tmpfs tmpfs /run/systemd
mkdir -p /run/systemd/netif/links /run/systemd/netif/leases /run/systemd/netif/lldp
chown -R systemd-network:systemd-network /run/systemd/netif
mount --bind "$1/var" /var/lib
mount -o remount,ro /sys
exec {networkd}
"""


class Networkd:
    """The real systemd-networkd in a namespace, on a host directory that outlives it (a
    restart with the kernel's side wiped is a reboot)."""

    def __init__(self, ns: str, host: Path) -> None:
        self.ns, self.host = ns, host
        self.daemon: subprocess.Popen[str] | None = None
        self.pid = 0  # networkd's, as this side sees it
        for sub in ("etc/systemd/network", "etc-work", "var"):
            (host / sub).mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        script = HOST_NETWORKD.format(networkd=NETWORKD)
        self.daemon = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "unshare", "--mount", "--pid", "--fork",
             "--mount-proc", "--kill-child=SIGTERM", "sh", "-c", script, "sh", str(self.host)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        children = Path(f"/proc/{self.daemon.pid}/task/{self.daemon.pid}/children")
        deadline = time.monotonic() + 10
        while not self.pid:
            assert time.monotonic() < deadline and self.daemon.poll() is None, "no networkd"
            found = children.read_text().split()
            if found and Path(f"/proc/{found[0]}/comm").read_text().strip() == "systemd-network":
                self.pid = int(found[0])
            time.sleep(0.02)

    def stop(self) -> None:
        if self.daemon is not None:  # networkd ends, and with it its namespace and unshare
            if self.pid:
                os.kill(self.pid, signal.SIGTERM)
            else:
                self.daemon.terminate()
            self.daemon.wait(timeout=10)
            assert self.daemon.stdout is not None
            self.daemon.stdout.close()
            self.daemon, self.pid = None, 0

    def multihome(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-m", "-n", "-p", PY, "-m", "multihome", *args],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"multihome {args}: {result.returncode}\n{result.stdout}{result.stderr}")
        return result

    def files(self) -> list[str]:
        """The files written to /etc and /var/lib since the host was made."""
        return sorted(
            str(p.relative_to(self.host))
            for sub in ("etc", "var")
            for p in (self.host / sub).rglob("*")
            if not p.is_dir()
        )


def reboot(ns: str, networkd: Networkd, expected: State) -> None:
    """Power off (networkd stops), the kernel's side as after a reboot (no rules of the band,
    no tables, no addresses), power on: networkd configures the links from the files."""
    networkd.stop()
    for version in ("-4", "-6"):
        lines = [
            f"rule del pref {r['priority']}"
            for r in ip_json(ns, version, "rule")
            if 1000 <= r["priority"] <= 1003
        ]
        lines += [f"route flush table {t}" for t in (100, 101, 199)]
        lines += [f"addr flush dev {d}" for d in ("eth0", "eth1")]
        subprocess.run(["ip", "-n", ns, version, "-batch", "-"], input="\n".join(lines) + "\n",
                       text=True, check=True)  # fmt: skip
    networkd.start()
    deadline = time.monotonic() + 15
    while policy_state(ns) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    assert policy_state(ns) == expected, (policy_state(ns), expected)


def configured(ns: str) -> None:
    """Wait until networkd has configured both uplinks (their default routes in main)."""
    deadline = time.monotonic() + 15
    while len(ip_json(ns, "route", "show", "default")) < 2:
        assert time.monotonic() < deadline, "networkd did not configure the uplinks"
        time.sleep(0.1)


def protocols(ns: str) -> list[str]:
    return sorted(
        str(r.get("protocol"))
        for v in ("-4", "-6")
        for r in ip_json(ns, v, "rule")
        if 1000 <= r["priority"] <= 1003
    )


@pytest.mark.parametrize("order", ["remove-then-uninstall", "uninstall-then-remove"])
def test_networkd_install_is_recognised_after_a_reboot_and_leaves_stock(
    build: Build, tmp_path: Path, order: str
) -> None:
    """issue 28, 1: after `install` on a networkd host and a reboot the rules are networkd's
    (proto static): plan --check is clean, the doctor finds no drift, apply adds nothing;
    remove leaves the layout whole and says that uninstall takes it out; both in either
    order, and another reboot, leave the host stock, with no file or directory of
    multihome's left."""
    topology = scenarios.two_isp(nics=2)
    net = build(topology)
    server = net.ns("server")
    installed = applied_state(server)  # what install writes: no config, so no balancing
    multihome(server, "remove")
    for ifname in ("eth0", "eth1"):
        subprocess.run(["ip", "-n", server, "addr", "flush", "dev", ifname], check=True)
        subprocess.run(["ip", "-n", server, "route", "flush", "dev", ifname], check=True)
    host = tmp_path / "host"
    networkd = Networkd(server, host)
    for ifname in ("eth0", "eth1"):
        (host / f"etc/systemd/network/10-{ifname}.network").write_text(
            _network_file(topology, ifname)
        )
    stock_files = networkd.files()
    try:
        networkd.start()
        configured(server)
        stock = policy_state(server)
        assert stock == (set(), set())
        networkd.multihome("apply")  # what the user had done first
        done = json.loads(networkd.multihome("install", "--json").stdout)
        assert done["formats"] == ["networkd"], done
        manifest = json.loads((host / "var/multihome/installed.json").read_text())
        assert manifest["layout"] and "etc/systemd/network/10-eth0.network.d" in manifest["directories"]
        reboot(server, networkd, installed)
        assert "static" in protocols(server) or "4" in protocols(server), protocols(server)

        check = networkd.multihome("plan", "--check", check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        doctor = json.loads(networkd.multihome("doctor", "--json", check=False).stdout)
        assert not [f for f in doctor["findings"] if f["kind"] in ("drift", "empty-table")], doctor
        applied = networkd.multihome("apply")
        assert "nothing to do" in applied.stdout, applied.stdout
        assert policy_state(server) == installed
        assert "77" not in protocols(server) and "multihome" not in protocols(server)

        def remove() -> None:
            out = networkd.multihome("remove")
            # (after uninstall there is nothing left for it to leave, nor to say)
            assert ("multihome uninstall" in out.stdout + out.stderr) == first, out
            # the layout stays whole: no rule looks up a table remove emptied
            assert policy_state(server) == (installed if first else (set(), set()))

        def uninstall() -> None:
            networkd.multihome("uninstall")
            assert policy_state(server) == (set(), set())

        first = True
        steps = [remove, uninstall] if order == "remove-then-uninstall" else [uninstall, remove]
        for step in steps:
            step()
            first = False
        assert policy_state(server) == (set(), set())
        assert networkd.files() == stock_files
        for directory in manifest["directories"]:  # made by install, gone with uninstall
            assert not networkd.multihome("show", check=False).returncode  # (still runs)
            assert subprocess.run(
                ["nsenter", "-t", str(networkd.pid), "-m", "test", "-e", f"/{directory}"]
            ).returncode == 1, directory
        reboot(server, networkd, (set(), set()))
        configured(server)  # the host's own routes, and still nothing of multihome's
        assert policy_state(server) == (set(), set())
    finally:
        networkd.stop()


@pytest.mark.parametrize("order", ["remove-then-uninstall", "uninstall-then-remove"])
def test_networkmanager_install_is_recognised_after_a_reboot_and_leaves_stock(
    build: Build, tmp_path: Path, order: str
) -> None:
    """issue 28, 1, NetworkManager's side: its items come back at every boot under its own
    protocol; multihome takes them for its plan's, remove leaves them (saying what takes
    them out), uninstall takes them out; either order and a reboot leave the host stock."""
    with managed(build, tmp_path / "nm") as (server, nm):
        nm.multihome("apply")  # what the user had done first
        applied = policy(server)
        assert len(applied["rules"]) == 5 and len(applied["routes"]) == 6
        done = json.loads(nm.multihome("install", "--json"))
        assert done["formats"] == ["networkmanager"], done
        since = nm.log.stat().st_size
        boot(nm, server)
        settles_or_reapply(nm, server, applied, "reboot", since)
        assert "77" not in protocols(server) and "multihome" not in protocols(server)

        check = subprocess.run(
            nm.argv(PY, "-m", "multihome", "plan", "--check"), capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
        doctor = json.loads(
            subprocess.run(
                nm.argv(PY, "-m", "multihome", "doctor", "--json"), capture_output=True, text=True
            ).stdout
        )
        assert not [f for f in doctor["findings"] if f["kind"] in ("drift", "empty-table")], doctor
        assert "nothing to do" in nm.multihome("apply")
        assert policy(server) == applied

        first = True

        def remove() -> None:
            run = subprocess.run(
                nm.argv(PY, "-m", "multihome", "remove"), capture_output=True, text=True
            )
            assert run.returncode == 0, run.stdout + run.stderr
            assert ("multihome uninstall" in run.stderr) == first, run.stderr
            assert policy(server) == (applied if first else {"rules": [], "routes": []})

        def uninstall() -> None:
            nm.multihome("uninstall")
            nm.wait(lambda: policy(server) == {"rules": [], "routes": []}, 10)

        for step in [remove, uninstall] if order == "remove-then-uninstall" else [uninstall, remove]:
            step()
            first = False
        assert not (nm.directory / "var/multihome").exists()
        boot(nm, server)
        assert {r["dev"] for r in ip_json(server, "route", "show", "default")} == {"eth0", "eth1"}
        time.sleep(1)  # (nothing of multihome's comes back meanwhile)
        assert policy(server) == {"rules": [], "routes": []}
