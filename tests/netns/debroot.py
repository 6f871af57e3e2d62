"""A minimal Debian root for the package tests, made by mmdebstrap from the Debian archive the
host's apt uses, and cached between runs: the first build takes a few minutes, every later
test copies the cached root (seconds).

The cache is the tests' own directory, /var/cache/multihome-tests (root's alone, 0700: a root
others could write would run their code as root in the tests). A root is kept under a name
made from what built it (the packages, the suite, the archive's sources): a change of any
makes a new one, and the older ones are removed. It is built into a temporary directory
beside and renamed into place when complete, so an interrupted build leaves no half root.
The root holds what the package tests use: python3 and pyroute2 (the package's
dependencies), systemd (booted with systemd-nspawn: systemd-networkd manages the uplinks),
iproute2 and man-db.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

CACHE = Path("/var/cache/multihome-tests")
PACKAGES = ("python3", "python3-pyroute2", "man-db", "systemd", "iproute2")
# The system's tools, not a virtualenv's or pyenv's python: the package is for Debian's.
SYSTEM_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LC_ALL": "C.UTF-8"}


def debian_sources() -> list[str]:
    """The host's apt sources for its Debian (or Ubuntu) archive: the files whose URIs name
    the distribution's own archive, not third-party repositories."""
    files = ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*"))]
    wanted = []
    for path in files:
        if not path.endswith((".list", ".sources")) or not os.path.isfile(path):
            continue
        text = Path(path).read_text()
        if "deb.debian.org" in text or "archive.ubuntu.com" in text or "/debian" in text:
            wanted.append(path)
    return wanted


def codename() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip('"')
    raise AssertionError("no VERSION_CODENAME in /etc/os-release")


def command(target: Path) -> list[str]:
    return [
        "mmdebstrap",
        "--variant=essential",  # no apt: dpkg installs the package, its dependencies are in
        f"--include={','.join(PACKAGES)}",
        "--dpkgopt=path-exclude=/usr/share/doc/*",  # less to unpack
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        codename(),
        str(target),
        *debian_sources(),
    ]


def cache_dir() -> Path:
    """The cache directory, made root's alone; refused if anyone else could write it."""
    CACHE.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = CACHE.lstat()
    assert not CACHE.is_symlink() and info.st_uid == 0, f"{CACHE} is not root's own directory"
    if info.st_mode & 0o077:
        CACHE.chmod(0o700)
    return CACHE


def cached_root() -> Path:
    """The path of the root for today's packages and sources (it may not be built yet)."""
    key = hashlib.sha256(repr(command(Path("ROOT"))).encode())
    for source in debian_sources():
        key.update(Path(source).read_bytes())
    return cache_dir() / f"root-{key.hexdigest()[:16]}"


class Build:
    """mmdebstrap making the cached root in the background (nothing to do when it is
    cached); `wait` gives the root, or the reason it could not be made."""

    def __init__(self) -> None:
        self.root = cached_root()
        self.log = self.root.with_suffix(".log")
        self.process: subprocess.Popen[bytes] | None = None
        self.partial = self.root.with_name(self.root.name + ".partial")
        if self.root.is_dir():
            return
        shutil.rmtree(self.partial, ignore_errors=True)
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                command(self.partial),
                env=SYSTEM_ENV,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait(self, timeout: float) -> tuple[Path | None, str]:
        if self.process is not None:
            try:
                code = self.process.wait(timeout=max(timeout, 1))
            except subprocess.TimeoutExpired:
                self.stop()
                return None, f"mmdebstrap not done within {timeout:.0f} s"
            self.process = None
            if code != 0:
                shutil.rmtree(self.partial, ignore_errors=True)
                return None, "mmdebstrap failed:\n" + self.log.read_text()[-3000:]
            os.rename(self.partial, self.root)
            for old in CACHE.glob("root-*"):  # roots of other packages or sources
                if old != self.root and old != self.log and not old.name.endswith(".partial"):
                    if old.is_dir():
                        shutil.rmtree(old, ignore_errors=True)
                    else:
                        old.unlink(missing_ok=True)
        return self.root, ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # its apt and dpkg too
            self.process.wait()
        self.process = None
        shutil.rmtree(self.partial, ignore_errors=True)


def copy(root: Path, target: Path) -> Path:
    """A copy of the cached root to change (install the package, boot it)."""
    subprocess.run(["cp", "-a", "--reflink=auto", str(root), str(target)], check=True)
    return target
