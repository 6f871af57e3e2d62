"""The real NetworkManager (and its D-Bus) in a lab namespace, for the netns tests.

The recipe of DESIGN.md: a private mount namespace (`unshare -m` inside `ip netns exec`)
with a fresh /run, the test's own directories on /etc/NetworkManager, /var/lib and
/etc/sysctl.d (so keyfiles, state and multihome's manifest live in the test's directory and
survive a restart of the daemon, as on a disk), /sys read-only, then `dbus-daemon --system
--fork` and `NetworkManager --no-daemon`. Commands reach it with `nsenter` into the daemon's
mount and network namespaces. Both processes are killed by pid when done.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

from .helpers import PY

CONF = """[main]
plugins=keyfile
no-auto-default=*
dhcp=internal
[logging]
level=INFO
[device]
match-device=*
managed=1
"""

SCRIPT = """set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/dbus /run/NetworkManager
mount --bind "$1/etc" /etc/NetworkManager
mount --bind "$1/var" /var/lib
mount --bind "$1/sysctl.d" /etc/sysctl.d
# no D-Bus activation: nm-dispatcher and nm-priv-helper would outlive the test's processes
mount -t tmpfs tmpfs /usr/share/dbus-1/system-services
mount -o remount,ro /sys
dbus-daemon --system --fork --print-pid=1
exec NetworkManager --debug 1>&2  # --debug: no fork, log to stderr
"""


def nm_available() -> bool:
    return all(shutil.which(tool) for tool in ("NetworkManager", "nmcli", "dbus-daemon"))


class NetworkManager:
    """NetworkManager running in network namespace `ns`; its files under `directory`."""

    def __init__(self, ns: str, directory: Path) -> None:
        self.ns = ns
        self.directory = directory
        self.pid = 0
        self.dbus_pid = 0
        self.proc: subprocess.Popen[str] | None = None
        for sub in ("etc/system-connections", "var/NetworkManager", "var/dbus", "sysctl.d"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        (directory / "etc/NetworkManager.conf").write_text(CONF)
        machine_id = Path("/var/lib/dbus/machine-id")
        if machine_id.exists():
            shutil.copy(machine_id, directory / "var/dbus/machine-id")
        self.log = directory / "NetworkManager.log"

    def start(self) -> NetworkManager:
        with open(self.log, "a") as log:
            script = ["sh", "-c", SCRIPT, "sh", str(self.directory)]
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, "unshare", "-m", *script],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise AssertionError(f"dbus-daemon did not start: {line!r}\n{self.log.read_text()}")
        # `ip netns exec`, `unshare` and `sh` each exec the next: the child is NetworkManager
        self.dbus_pid, self.pid = int(line), self.proc.pid
        self.wait(lambda: self.run("nmcli", "-t", "general", "status", check=False) == 0, 20)
        return self

    def stop(self) -> None:
        for pid in (self.pid, self.dbus_pid):
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()  # type: ignore[union-attr]
        if self.dbus_pid:
            deadline = time.monotonic() + 10
            while _alive(self.dbus_pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(self.dbus_pid):
                os.kill(self.dbus_pid, signal.SIGKILL)
        self.pid = self.dbus_pid = 0
        self.proc = None

    def __enter__(self) -> NetworkManager:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- commands in the daemon's namespaces ---------------------------------------------------

    def argv(self, *args: str) -> list[str]:
        return ["nsenter", "-t", str(self.pid), "-m", "-n", *args]

    def run(self, *args: str, check: bool = True) -> int:
        result = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)}: {result.stdout}{result.stderr}")
        return result.returncode

    def output(self, *args: str) -> str:
        result = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise AssertionError(f"{' '.join(args)}: {result.stdout}{result.stderr}")
        return result.stdout

    def multihome(self, *args: str) -> str:
        """The real command line, where NetworkManager's files and D-Bus are."""
        return self.output(PY, "-m", "multihome", *args)

    def connected(self, device: str) -> bool:
        state = self.output("nmcli", "-g", "GENERAL.STATE", "device", "show", device)
        return state.startswith("100")

    def keyfile(self, name: str) -> bytes:
        return (self.directory / f"etc/system-connections/{name}.nmconnection").read_bytes()

    @staticmethod
    def wait(condition: object, seconds: float) -> float:
        assert callable(condition)
        start = time.monotonic()
        while not condition():
            if time.monotonic() - start > seconds:
                raise AssertionError(f"not within {seconds} s")
            time.sleep(0.05)
        return time.monotonic() - start


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
