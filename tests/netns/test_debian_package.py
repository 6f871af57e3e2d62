"""The Debian package: built from this tree with dpkg-buildpackage (debhelper, pybuild),
installed in a clean root made by mmdebstrap from the Debian archive the host's apt uses
(debroot.py: cached between runs), then `multihome --version`, `multihome plan` in a lab
namespace, `man multihome` and a short `multihome lab` (with the distribution's pyroute2) run
from the installed files. Installing and purging change neither the namespace's nor the host's
routing, and purge leaves the root exactly as it was before the install.

The same root, with the package installed, is booted with systemd-nspawn in the two-ISP lab
(issue 28): install -> reboot -> the layout is recognised and protects each address from
its first instant; remove and uninstall in both orders -> reboot -> stock; purge keeps the
rt_protos name while multihome's rules are in the kernel.

Where no clean root can be made (mmdebstrap fails: no archive reachable), the package is
installed on this machine itself with apt and dpkg, and the same purge check is made; the
boot test fails then.
"""

from __future__ import annotations

import datetime
import glob
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from multihome import __version__
from multihome.lab import scenarios
from multihome.lab.description import Topology
from multihome.lab.topology import Network

from . import debroot
from .helpers import TcpServer, fetch, ip_json, snapshot
from .test_units_sandbox_boot import Container, nspawn

Build = Callable[[Topology], Network]
PACKAGE = f"/tmp/multihome-test-{os.getpid()}.deb"
EMPTY = f"/tmp/multihome-test-{os.getpid()}.toml"
MMDEBSTRAP_BUDGET = 300  # seconds, for the first build (30-70 with a nearby mirror); then cached
START = 0.0  # when the module's work began
REPO = Path(__file__).resolve().parents[2]
SYSTEM_ENV = debroot.SYSTEM_ENV
# Where a package puts files, less the package manager's own bookkeeping, which install and
# purge rightly change.
TREES = ("etc", "usr", "var", "opt")
VOLATILE = ("var/lib/dpkg", "var/lib/apt", "var/cache", "var/log", "var/tmp")


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    global START
    START = time.monotonic()
    path = Path(tempfile.mkdtemp(prefix="multihome-deb-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def bootstrap(workdir: Path) -> Iterator[debroot.Build]:
    """Start making the clean root (debroot: cached between runs, so mostly nothing to do)
    while the package builds."""
    build = debroot.Build()
    try:
        yield build
    finally:
        build.stop()


@pytest.fixture(scope="module")
def deb(workdir: Path, bootstrap: debroot.Build) -> Path:
    """Build the binary package from the files git knows (tracked and new, not ignored)."""
    source = workdir / "multihome"
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        src = REPO / name.decode()
        if src.is_file():
            (source / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, source / name.decode())
    started = time.monotonic()
    # as a user with a pyenv (or virtualenv) python3 first on PATH builds: debian/rules
    # must still build with Debian's own
    user_path = f"{Path(sys.executable).parent}:{SYSTEM_ENV['PATH']}"
    result = subprocess.run(
        ["dpkg-buildpackage", "-us", "-uc", "-b"],
        cwd=source,
        env={**SYSTEM_ENV, "PATH": user_path},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    print(f"package built in {time.monotonic() - started:.1f} s")
    (package,) = workdir.glob("multihome_*_all.deb")
    return package


@pytest.fixture(scope="module")
def cached(bootstrap: debroot.Build) -> Path | None:
    """The cached clean root; None where mmdebstrap could not make one within its budget."""
    root, failure = bootstrap.wait(MMDEBSTRAP_BUDGET - (time.monotonic() - START))
    print(f"mmdebstrap: {failure or 'done'} {time.monotonic() - START:.1f} s after the start")
    return root


@pytest.fixture
def root(cached: Path | None, tmp_path: Path) -> Path | None:
    """A copy of the clean root for one test to change."""
    return None if cached is None else debroot.copy(cached, tmp_path / "root")


class Root:
    """Run commands in the clean root (chroot), or on this machine where there is none."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def run(
        self, *argv: str, ns: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        if self.path is None:
            command = list(argv)
        else:
            # /proc and /sys of the namespace the command runs in (multihome reads /proc/sys
            # and /proc/self/ns/net); `ip netns exec` gives the command a mount namespace of
            # its own (else unshare does), so the mounts go away with it.
            script = (
                'mount -t proc proc "$0/proc" && mount -t sysfs sysfs "$0/sys" && '
                'exec chroot "$0" "$@"'
            )
            command = ["unshare", "--mount", "--propagation", "private"] if ns is None else []
            command += ["sh", "-c", script, str(self.path), *argv]
        if ns is not None:
            command = ["ip", "netns", "exec", ns, *command]
        result = subprocess.run(
            command, env=SYSTEM_ENV, capture_output=True, text=True, timeout=120
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{argv} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def file(self, path: str) -> Path:
        return Path(str(self.path or "/") + path)

    def files(self) -> dict[str, tuple[int, ...]]:
        """Every path in the root's trees with its mode (and a file's size and mtime)."""
        top = Path(str(self.path or "/"))
        found: dict[str, tuple[int, ...]] = {}
        skip = {top / v for v in VOLATILE}
        for tree in TREES:
            for directory, dirs, names in os.walk(top / tree):
                here = Path(directory)
                dirs[:] = [d for d in dirs if here / d not in skip and not (here / d).is_mount()]
                for name in dirs:
                    found[str((here / name).relative_to(top))] = (os.lstat(here / name).st_mode,)
                for name in names:
                    info = os.lstat(here / name)
                    key = str((here / name).relative_to(top))
                    found[key] = (info.st_mode, info.st_size, int(info.st_mtime))
        return found


def host_rules() -> bytes:
    return subprocess.run(["ip", "-j", "rule"], capture_output=True, check=True).stdout + (
        subprocess.run(["ip", "-6", "-j", "rule"], capture_output=True, check=True).stdout
    )


def test_package_builds_installs_runs_and_purges(
    build: Build, deb: Path, root: Path | None
) -> None:
    started = time.monotonic()
    net = build(scenarios.two_isp(nics=2))
    server = net.ns("server")
    target = Root(root)
    if root is None:
        # No clean root: install the package's dependencies first, so that the purge check
        # below compares the machine with and without multihome alone.
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "python3-pyroute2", "man-db"],
            env={**SYSTEM_ENV, "DEBIAN_FRONTEND": "noninteractive"},
            check=True,
            capture_output=True,
        )
    shutil.copy(deb, target.file(PACKAGE))
    before_files = target.files()
    before_ns, before_host = snapshot(server), host_rules()

    target.run("dpkg", "-i", PACKAGE, ns=server)
    try:
        # what it installed, and how
        config = target.file("/etc/multihome/multihome.toml")
        assert config.stat().st_mode & 0o777 == 0o600
        assert target.file("/etc/iproute2/rt_protos.d/multihome.conf").read_text().endswith(
            "77\tmultihome\n"
        )
        for unit in ("multihome.service", "multihome-watch.service"):
            text = target.file(f"/lib/systemd/system/{unit}").read_text()
            assert "ExecStart=/usr/bin/multihome " in text
            assert not glob.glob(str(target.file(f"/etc/systemd/system/*/{unit}")))  # disabled
        assert target.file("/usr/share/bash-completion/completions/multihome").is_file()
        assert target.file("/usr/share/zsh/vendor-completions/_multihome").is_file()

        # the commands, from the installed files with the system's python3
        version = target.run("multihome", "--version").stdout
        assert version.strip() == f"multihome {__version__}"
        plan = target.run("multihome", "plan", "--format", "ip", ns=server).stdout
        assert "ip -4 rule add pref 1002 from 192.0.2.0/27 lookup 100 proto 77" in plan, plan
        assert "ip -4 route add default via 192.0.2.33 dev eth1 table 101 proto 77" in plan
        page = target.run("man", "-P", "cat", "multihome").stdout
        assert "multihome - source-based policy routing" in page
        assert "multihome apply [--netns NAME]" in page, page
        toml_page = target.run("man", "-P", "cat", "5", "multihome.toml").stdout
        assert "table_range = [100, 199]" in toml_page

        if root is not None:
            # the lab, with the distribution's pyroute2 (bookworm: 0.7.2); its namespaces are
            # the root's own (its /run/netns, in a mount namespace that ends with the run)
            run = target.run("multihome", "--json", "lab", "--requests", "100", "--concurrency", "4")
            destination, policy = json.loads(run.stdout)["phases"]
            assert destination["interfaces"]["eth0"]["tx_share"] > 0.95
            assert policy["requests"] == {"ok": 100, "failed": 0}
            assert 0.4 < policy["interfaces"]["eth1"]["tx_share"] < 0.6, policy
            assert not os.listdir(target.file("/run/netns"))

        # the shipped config is the defaults: with it, the plan is the plan without a config
        empty = target.file(EMPTY)
        empty.write_text("")
        empty.chmod(0o600)
        shipped = target.run("multihome", "plan", "--json", ns=server).stdout
        assert shipped == target.run("multihome", "-c", EMPTY, "plan", "--json", ns=server).stdout
        assert snapshot(server) == before_ns
        listed = target.run("dpkg", "-L", "multihome").stdout.split()
    finally:
        target.run("dpkg", "--purge", "multihome", ns=server)
        for path in (PACKAGE, EMPTY):
            target.file(path).unlink(missing_ok=True)
    after_files = target.files()
    if root is not None:
        changed = {k for k in after_files.keys() ^ before_files.keys()} | {
            k for k in after_files.keys() & before_files.keys() if after_files[k] != before_files[k]
        }
        assert not changed, sorted(changed)
    else:
        # on a live machine other things may add files meanwhile: check that what the
        # package installed is gone, and that nothing that was there before went with it
        left = [p for p in listed if p.lstrip("/") not in before_files and os.path.lexists(p)]
        assert not left, left
        gone = [p for p in before_files if p not in after_files]
        assert not gone, gone
    assert snapshot(server) == before_ns
    assert host_rules() == before_host
    print(f"install, run and purge: {time.monotonic() - started:.1f} s")


# -- the package on a booted Debian: install, reboot, uninstall (issue 28) -----------------

UPLINK_ADDRESSES = ("192.0.2.10", "192.0.2.42")  # the two-ISP lab's server, eth0 and eth1
STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)\] (.*)$")


class Monitor:
    """`ip -ts monitor address rule` in a namespace from before a boot: when each address and
    rule appeared, by the kernel's events (an independent clock of what multihome does)."""

    def __init__(self, ns: str) -> None:
        self.proc = subprocess.Popen(
            ["ip", "-n", ns, "-ts", "monitor", "address", "rule"],
            stdout=subprocess.PIPE,
            text=True,
        )

    def lines(self) -> list[tuple[float, str]]:
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        found = []
        for line in out.splitlines():
            match = STAMP.match(line)
            if match:
                when = datetime.datetime.fromisoformat(match.group(1)).timestamp()
                found.append((when, match.group(2)))
        return found

    def windows(self) -> dict[str, float]:
        """For each uplink address: how long it went without an off-link source rule (1002)
        that selects it, from its appearing (0 when the rule came first)."""
        lines = self.lines()
        result = {}
        for address in UPLINK_ADDRESSES:
            ip = ipaddress.ip_address(address)
            added = [t for t, text in lines if f"inet {address}/" in text and "Deleted" not in text]
            ruled = [
                t
                for t, text in lines
                if text.startswith("1002:")
                and (words := text.split())[1] == "from"
                and ip in ipaddress.ip_network(words[2], strict=False)
            ]
            assert added and ruled, (address, lines)
            result[address] = max(0.0, min(ruled) - min(added))
        return result


def policy(ns: str) -> tuple[list[str], list[str]]:
    """multihome's band of rules and its tables' routes, as `ip` prints them."""
    rules = [
        line
        for family in ("-4", "-6")
        for line in subprocess.run(
            ["ip", "-n", ns, family, "rule"], capture_output=True, text=True, check=True
        ).stdout.splitlines()
        if line.split(":")[0].strip().isdigit() and 1000 <= int(line.split(":")[0]) <= 1003
    ]
    routes = [
        line
        for family in ("-4", "-6")
        for line in subprocess.run(
            ["ip", "-n", ns, family, "route", "show", "table", "all"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        if re.search(r"\btable 1\d\d\b", line)
    ]
    return rules, routes


def network_file(ifname: str, address: str, address6: str, gateway: str, metric: int) -> str:
    return (
        f"[Match]\nName={ifname}\n\n[Network]\nIPv6AcceptRA=no\nAddress={address}\n"
        f"Address={address6}\n\n[Route]\nGateway={gateway}\nMetric={metric}\n"
    )


def host_files(root: Path) -> set[str]:
    """Every file, link and directory under the root's /etc and /var/lib (the systemd's and
    dpkg's own bookkeeping aside), for the check that nothing of multihome's is left."""
    found = set()
    for tree in ("etc", "var/lib"):
        for path in (root / tree).rglob("*"):
            relative = str(path.relative_to(root))
            if not relative.startswith(("var/lib/systemd", "var/lib/dpkg", "etc/machine-id")):
                found.add(relative)
    return found


def test_the_package_on_a_booted_debian_installs_reboots_and_uninstalls(
    build: Build, deb: Path, root: Path | None
) -> None:
    """A minimal Debian (the cached root) with the package installed, booted with
    systemd-nspawn in the two-ISP lab's server namespace, systemd-networkd managing both
    uplinks. `multihome install` -> reboot: plan --check exits 0, the doctor finds nothing,
    apply has nothing to do, replies leave through each ISP, and each address had its source
    rule within 1 s of appearing (the window is measured and printed). Then remove and
    uninstall, in both orders, each followed by a reboot: stock routing, and no file or
    directory of multihome's left. Last, purge with multihome's rules in the kernel keeps
    the rt_protos name."""
    assert shutil.which("systemd-nspawn"), "systemd-nspawn (systemd-container) is missing"
    assert root is not None, "no clean root could be made (see the mmdebstrap log above)"
    started = time.monotonic()
    shutil.copy(deb, root / PACKAGE.lstrip("/"))
    chroot = Root(root)
    chroot.run("dpkg", "-i", PACKAGE)
    (root / PACKAGE.lstrip("/")).unlink()
    # networkd manages the uplinks, as on a server; a machine id: not a first boot
    chroot.run("systemctl", "enable", "systemd-networkd.service")
    (root / "etc/machine-id").write_text(os.urandom(16).hex() + "\n")
    for i, (address, gateway) in enumerate((("192.0.2.10/27", "192.0.2.1"),
                                            ("192.0.2.42/27", "192.0.2.33"))):  # fmt: skip
        (root / f"etc/systemd/network/10-eth{i}.network").write_text(
            network_file(f"eth{i}", address, f"2001:db8:{i}::10/64", gateway, 100 * (i + 1))
        )
    stock_files: set[str] = set()  # after the first boot (which makes its own files)
    baseline: list[bool] = []
    boots: list[float] = []

    @contextmanager
    def boot() -> Iterator[tuple[Network, Container, Monitor]]:
        """Power on in a fresh lab (a reboot: the kernel's side starts from nothing)."""
        net = build(scenarios.two_isp(nics=2))
        server = net.ns("server")
        for dev in ("eth0", "eth1"):  # networkd configures them, not the lab
            subprocess.run(["ip", "-n", server, "addr", "flush", "dev", dev], check=True)
            subprocess.run(["ip", "-n", server, "route", "flush", "dev", dev], check=True)
        monitor = Monitor(server)
        begun = time.monotonic()
        log = root.parent / f"console-{len(boots)}.log"
        # the root as the package left it: no time zone or resolv.conf of the host's
        options = [f"--directory={root}", "--timezone=off", "--resolv-conf=off"]
        try:
            with nspawn(server, log, options) as box:
                deadline = time.monotonic() + 30
                while len(ip_json(server, "route", "show", "default")) < 2:
                    assert time.monotonic() < deadline, box.run("networkctl", check=False).stdout
                    time.sleep(0.1)
                boots.append(time.monotonic() - begun)
                yield net, box, monitor
        finally:
            if monitor.proc.poll() is None:
                monitor.proc.kill()
                monitor.proc.communicate()

    def stock(server: str) -> None:
        """No routing of multihome's; no file or directory but those of the first boot."""
        assert policy(server) == ([], []), policy(server)
        stock_files.update(() if baseline else host_files(root))
        baseline.append(True)
        assert host_files(root) == stock_files, host_files(root) ^ stock_files

    def installs(box: Container) -> None:
        done = json.loads(box.run("multihome", "install", "--json").stdout)
        assert done["formats"][0] == "networkd", done

    def checked_after_reboot(net: Network, box: Container, monitor: Monitor) -> None:
        server = net.ns("server")
        check = box.run("multihome", "plan", "--check", check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        doctor = json.loads(box.run("multihome", "doctor", "--json", check=False).stdout)
        assert not doctor["findings"], doctor
        assert "nothing to do" in box.run("multihome", "apply").stdout
        with TcpServer(server):
            assert fetch(net.ns("client"), list(UPLINK_ADDRESSES), 3) == dict.fromkeys(
                UPLINK_ADDRESSES, 3
            )
        windows = monitor.windows()
        formats = "watch" if box.show("multihome-watch.service", "ActiveState")[
            "ActiveState"
        ] == "active" else "networkd"
        print(f"unprotected window after boot ({formats}; address -> its source rule):", windows)
        assert max(windows.values()) < 1.0, windows

    for order in (("remove", "uninstall"), ("uninstall", "remove")):
        with boot() as (net, box, _):
            stock(net.ns("server"))
            installs(box)
        with boot() as (net, box, monitor):
            checked_after_reboot(net, box, monitor)
            for step in order:
                box.run("multihome", step)
            assert policy(net.ns("server")) == ([], []), (order, policy(net.ns("server")))
        with boot() as (net, box, _):
            stock(net.ns("server"))

    # where no stack carries the layout (--format systemd): multihome-watch.service, started
    # before the network, routes each address by its source as it comes
    with boot() as (net, box, _):
        done = json.loads(box.run("multihome", "install", "--format", "systemd", "--json").stdout)
        assert "/etc/systemd/system/multi-user.target.wants/multihome-watch.service" in done["written"]
    with boot() as (net, box, monitor):
        assert box.show("multihome-watch.service", "ActiveState")["ActiveState"] == "active"
        before = box.run("systemctl", "show", "-p", "Before", "multihome-watch.service").stdout
        assert "network-pre.target" in before, before
        checked_after_reboot(net, box, monitor)
        box.run("multihome", "remove")  # stops the watch first (it would put it all back)
        box.run("multihome", "uninstall")
    with boot() as (net, box, _):
        stock(net.ns("server"))
        assert box.show("multihome-watch.service", "ActiveState")["ActiveState"] == "inactive"

    # purge while multihome's rules are in the kernel: `ip` keeps their name
    with boot() as (net, box, _):
        box.run("multihome", "apply")
        purged = box.run("dpkg", "--purge", "multihome")
        assert "still in the kernel" in purged.stderr, purged.stderr
        assert (root / "etc/iproute2/rt_protos.d/multihome.conf").read_text().endswith(
            "77\tmultihome\n"
        )
        assert "proto multihome" in box.run("ip", "rule").stdout
    print(f"boots: {', '.join(f'{b:.1f}' for b in boots)} s; whole test"
          f" {time.monotonic() - started:.1f} s")  # fmt: skip
