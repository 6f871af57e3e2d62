"""The Debian package: built from this tree with dpkg-buildpackage (debhelper, pybuild),
installed in a clean root made by mmdebstrap from the Debian archive the host's apt uses
(debroot.py: cached between runs),
then `multihome --version`, `multihome plan` in a lab namespace, `man multihome` and a short
`multihome lab` (with the distribution's pyroute2) run from the installed files. Installing and purging change neither the namespace's nor the host's
routing, and purge leaves the root exactly as it was before the install.

Where no clean root can be made (mmdebstrap fails: no archive reachable), the package is
installed on this machine itself with apt and dpkg, and the same purge check is made.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from multihome import __version__
from multihome.lab import scenarios
from multihome.lab.description import Topology
from multihome.lab.topology import Network

from . import debroot
from .helpers import snapshot

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
    result = subprocess.run(
        ["dpkg-buildpackage", "-us", "-uc", "-b"],
        cwd=source,
        env=SYSTEM_ENV,
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
