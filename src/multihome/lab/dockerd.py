"""The real Docker (docker.io's dockerd) in a lab network namespace, for `multihome lab docker`
and the tests: Docker's own iptables-nft rules, docker0 and a container publishing a port.

The recipe: `ip netns exec` gives dockerd a private mount namespace (with a /sys
of the namespace, so without the cgroup hierarchies); there the host's cgroup hierarchies are
mounted again (same types and options, read from /proc/self/mountinfo), and tmpfs on /run and
/etc/docker, so nothing of the host's Docker is seen or changed. Every path of dockerd's is in
the caller's directory (mode 0700): data, exec root, pid file and API socket. Containers go to
a cgroup parent of their own (cgroupfs driver), docker0 to 198.19.0.1/24 (the benchmark range,
like every lab address). Stopping: SIGTERM to dockerd's pid; then SIGKILL to whatever is left in
its mount namespace or its cgroups, and the cgroup directories are removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import re
import signal
import socket
import struct
import subprocess
import tarfile
import time
from types import TracebackType

from multihome.core.records import record
from multihome.errors import MultihomeError
from multihome.host import files

DOCKERD = "/usr/sbin/dockerd"  # the docker.io package's, by absolute path: a docker CLI of
DOCKER = "/usr/bin/docker"  # another origin earlier on PATH must not be the one that runs
BUSYBOX = "/bin/busybox"  # busybox-static's: the image's only file
IPTABLES = "/usr/sbin/iptables"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
PACKAGES = ("docker.io", "busybox-static", "iptables")
BRIDGE = "198.19.0.1/24"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0  # dockerd's own --shutdown-timeout is shorter: containers get 5 s
# unix socket paths hold 107 bytes; the longest of dockerd's is containerd's debug socket
LONGEST_SOCKET = "exec/containerd/containerd-debug.sock"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

# Run by `ip netns exec NS sh -c MOUNT_THEN_EXEC sh FSTYPE SOURCE OPTIONS TARGET ... -- ARGV`:
# every mount comes as four arguments, the command after `--`. A constant script: the paths
# and options reach it as arguments, never as text of the script.
MOUNT_THEN_EXEC = """set -e
while [ "$1" != -- ]; do
    mkdir -p "$4"
    mount -t "$1" -o "$3" "$2" "$4"
    shift 4
done
shift
exec "$@"
"""


@record(frozen=True)
class Mount:
    fstype: str
    source: str
    options: str
    target: str


def _unescape(field: str) -> str:
    """mountinfo's octal escapes (a space is \\040)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def cgroup_mounts(mountinfo: str) -> list[Mount]:
    """PURE: the cgroup hierarchies of a mountinfo text (/proc/self/mountinfo), with the tmpfs
    they sit on when that is a mount of its own (/sys/fs/cgroup on a hybrid or v1 host, made
    writable), in the order they are to be mounted: parents first. The options are the mount's
    and the superblock's (the controllers of a v1 hierarchy, name=systemd) together."""
    mounts: list[Mount] = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        dash = fields.index("-")
        if len(fields) < dash + 4 or dash < 6:
            continue
        fstype, source, superblock = fields[dash + 1 : dash + 4]
        options = list(dict.fromkeys([*fields[5].split(","), *superblock.split(",")]))
        mounts.append(Mount(fstype, source, ",".join(options), _unescape(fields[4])))
    cgroups = [m for m in mounts if m.fstype in ("cgroup", "cgroup2")]
    parents = [  # writable: the hierarchies' mount points are made in it (systemd's is ro)
        Mount(
            m.fstype,
            m.source,
            ",".join("rw" if o == "ro" else o for o in m.options.split(",")),
            m.target,
        )
        for m in mounts
        if m.fstype == "tmpfs"
        and any(c.target.startswith(m.target.rstrip("/") + "/") for c in cgroups)
    ]
    # the last mount on a target is the one seen there
    seen: dict[str, Mount] = {}
    for mount in [*parents, *cgroups]:
        seen[mount.target] = mount
    return sorted(seen.values(), key=lambda m: m.target.count("/"))


def missing() -> list[str]:
    """What `multihome lab docker` and the tests need and this machine lacks, each with its
    package: empty when all is there."""
    lacking = []
    for path, package in (
        (DOCKERD, "docker.io"),
        (DOCKER, "docker.io"),
        ("/etc/docker", "docker.io"),  # mounted over; never made on the host
        (IPTABLES, "iptables"),
    ):
        if not os.path.exists(path):
            lacking.append(f"{path} ({package})")
    if not _static(BUSYBOX):
        lacking.append(f"a static {BUSYBOX} (busybox-static)")
    return lacking


def check_installed() -> None:
    lacking = missing()
    if lacking:
        raise MultihomeError(
            f"the real Docker is not installed: no {', '.join(lacking)}",
            hint=f"install it: apt-get install {' '.join(PACKAGES)}",
        )


def _static(path: str) -> bool:
    """An ELF executable without a program interpreter (PT_INTERP): it runs in an image that
    holds nothing else."""
    try:
        with open(path, "rb") as file:
            head = file.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit ELF only
                return False
            order = "<" if head[5] == 1 else ">"
            (phoff,) = struct.unpack_from(order + "Q", head, 32)
            phentsize, phnum = struct.unpack_from(order + "HH", head, 54)
            file.seek(phoff)
            table = file.read(phentsize * phnum)
    except OSError:
        return False
    types = [struct.unpack_from(order + "I", table, i * phentsize)[0] for i in range(phnum)]
    return 3 not in types  # PT_INTERP


def _die_with_parent() -> None:
    """dockerd ends (in order: SIGTERM) when the lab or test that started it dies, even by
    SIGKILL (PR_SET_PDEATHSIG; kept across the execs of ip, sh and dockerd)."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def cgroup_directories(mounts: list[Mount], name: str) -> list[str]:
    """The cgroup directories of the dockerd named `name` (its containers' cgroup parent, in
    every hierarchy), deepest first."""
    found = []
    for mount in mounts:
        if mount.fstype in ("cgroup", "cgroup2"):
            top = os.path.join(mount.target, name)
            found += [directory for directory, _, _ in os.walk(top, topdown=False)]
    return found


def remove_cgroups(name: str) -> None:
    """The cgroups a dockerd named `name` left when its run was killed (SIGKILL: dockerd
    stopped, its containers gone, the empty directories left). A cgroup that still holds a
    process is not empty and stays (rmdir refuses it)."""
    if not NAME.fullmatch(name):
        return
    with open("/proc/self/mountinfo", encoding="utf-8") as file:
        mounts = cgroup_mounts(file.read())
    for directory in cgroup_directories(mounts, name):
        with contextlib.suppress(OSError):
            os.rmdir(directory)


def _own_directory(path: str) -> None:
    """dockerd's directory: made if need be, not through a link, root's alone (mode 0700), as
    dockerd runs as root with everything in it."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        files.check_directory(fd, path)
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def busybox_image(contents: dict[str, bytes]) -> bytes:
    """A tarball for `docker import`: the static busybox as /bin/busybox and /bin/sh, and
    `contents` (path in the image: content)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for directory in ("bin", *sorted({os.path.dirname(p) for p in contents if "/" in p})):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        with open(BUSYBOX, "rb") as binary:
            data = binary.read()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("bin/sh")
        link.type, link.linkname = tarfile.SYMTYPE, "busybox"
        tar.addfile(link)
        for path, content in sorted(contents.items()):
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(content), 0o644
            tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


class Dockerd:
    """dockerd in network namespace `ns`, its files under `directory` (made 0700), its
    containers in the cgroup /`name` of every hierarchy. A context manager: started on enter,
    stopped (with everything it left) on exit."""

    def __init__(self, ns: str, directory: str, name: str) -> None:
        if not NAME.fullmatch(name):
            raise ValueError(f"not a cgroup name for dockerd: {name!r}")
        socket_path = os.path.join(os.path.abspath(directory), LONGEST_SOCKET)
        if len(socket_path.encode()) > 107:
            raise MultihomeError(
                f"{directory} is too long a path for dockerd's sockets ({socket_path})",
                hint="use a shorter directory",
            )
        self.ns = ns
        self.directory = os.path.abspath(directory)
        self.name = name
        self.socket = os.path.join(self.directory, "docker.sock")
        self.log = os.path.join(self.directory, "dockerd.log")
        self.storage_driver = "overlay2"  # vfs where overlay2 does not start
        self.proc: subprocess.Popen[bytes] | None = None
        self.mount_namespace = ""
        _own_directory(self.directory)
        with open("/proc/self/mountinfo", encoding="utf-8") as file:
            self.cgroups = cgroup_mounts(file.read())

    # -- the daemon -----------------------------------------------------------------------------

    def argv(self) -> list[str]:
        d = self.directory
        mounts = [
            *self.cgroups,
            Mount("tmpfs", "tmpfs", "mode=755", "/run"),
            Mount("tmpfs", "tmpfs", "mode=755", "/etc/docker"),
        ]
        mount_args = [a for m in mounts for a in (m.fstype, m.source, m.options, m.target)]
        dockerd = [
            DOCKERD,
            f"--data-root={d}/data",
            f"--exec-root={d}/exec",
            f"--pidfile={d}/dockerd.pid",
            f"--host=unix://{self.socket}",
            "--exec-opt=native.cgroupdriver=cgroupfs",
            f"--cgroup-parent=/{self.name}",
            f"--bip={BRIDGE}",
            f"--storage-driver={self.storage_driver}",
            "--shutdown-timeout=5",
        ]
        return [
            "ip", "netns", "exec", self.ns,
            "sh", "-c", MOUNT_THEN_EXEC, "sh", *mount_args, "--", *dockerd,
        ]  # fmt: skip

    def start(self) -> Dockerd:
        """Start dockerd and wait until its API answers (about a second); overlay2 first, vfs
        when overlay2 cannot be used on this file system."""
        check_installed()
        try:
            self._start()
        except MultihomeError:
            if self.storage_driver != "overlay2":
                raise
            self.storage_driver = "vfs"
            self._start()
        return self

    def _start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=_die_with_parent,
                # dockerd finds iptables on PATH: the system's first (`su` without `-`
                # leaves /usr/sbin out)
                env={**os.environ, "PATH": SYSTEM_PATH + ":" + os.environ.get("PATH", "")},
            )
        deadline = time.monotonic() + START_TIMEOUT
        own = os.readlink("/proc/self/ns/mnt")
        while not self._ping():
            self._note_mount_namespace(own)
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._end()
                raise MultihomeError(
                    f"dockerd did not start in {self.ns} (storage driver {self.storage_driver})",
                    hint="the end of its log (removed with the lab's directory):\n"
                    + self._log_tail(),
                )
            time.sleep(0.05)
        self._note_mount_namespace(own)

    def _note_mount_namespace(self, own: str) -> None:
        """dockerd's mount namespace, which its helpers share (ip, sh and dockerd each exec
        the next: the pid is dockerd's; `ip netns exec` made the namespace before the exec)."""
        if self.proc is not None and not self.mount_namespace:
            with contextlib.suppress(OSError):
                found = os.readlink(f"/proc/{self.proc.pid}/ns/mnt")
                if found != own:
                    self.mount_namespace = found

    def _ping(self) -> bool:
        """Does the API answer (GET /_ping)?"""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            try:
                sock.connect(self.socket)
                sock.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                return sock.recv(4096).startswith(b"HTTP/1.0 200")
            except OSError:
                return False

    def _log_tail(self, lines: int = 15) -> str:
        try:
            with open(self.log, encoding="utf-8", errors="replace") as file:
                return "".join(file.readlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM to dockerd (it stops its containers and containerd), then SIGKILL to what
        is left of it, and its cgroups removed. Safe to call when it is not running."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._end()

    def restart(self) -> None:
        """As `systemctl restart docker`: a clean stop, and a start with the same files (the
        containers with a restart policy come back)."""
        self.stop()
        self._start()

    def _end(self) -> None:
        """Whatever dockerd left: processes in its mount namespace (containerd, shims,
        docker-proxy) or in its cgroups (containers) are killed; the cgroups removed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        deadline = time.monotonic() + 10
        while True:
            left = self._leftovers()
            if not left:
                break
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise MultihomeError(f"processes of dockerd in {self.ns} outlived SIGKILL: {left}")
            time.sleep(0.05)
        self.mount_namespace = ""
        for directory in self._cgroup_directories():
            for attempt in range(100):  # the kernel frees a cgroup a moment after its last task
                try:
                    os.rmdir(directory)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if attempt == 99:
                        raise
                    time.sleep(0.02)

    def _cgroup_directories(self) -> list[str]:
        return cgroup_directories(self.cgroups, self.name)

    def _leftovers(self) -> list[int]:
        pids: set[int] = set()
        for directory in self._cgroup_directories():
            procs = os.path.join(directory, "cgroup.procs")
            with contextlib.suppress(FileNotFoundError), open(procs, encoding="ascii") as file:
                pids.update(int(p) for p in file.read().split())
        if self.mount_namespace:
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    with contextlib.suppress(OSError):
                        if os.readlink(f"/proc/{entry}/ns/mnt") == self.mount_namespace:
                            pids.add(int(entry))
        return sorted(pids)

    def __enter__(self) -> Dockerd:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the docker command line ----------------------------------------------------------------

    def docker(self, *args: str, stdin: bytes | None = None, timeout: float = 60) -> str:
        """The docker CLI on this daemon's socket (its config in our directory, not root's)."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "DOCKER_CONFIG": os.path.join(self.directory, "cli"),
        }
        result = subprocess.run(
            [DOCKER, f"--host=unix://{self.socket}", *args],
            input=stdin,
            capture_output=True,
            timeout=timeout,
            env=env,
        )
        if result.returncode != 0:
            raise MultihomeError(
                f"docker {' '.join(args[:3])} failed: {result.stderr.decode(errors='replace')}"
            )
        return result.stdout.decode(errors="replace")

    def version(self) -> str:
        return self.docker("version", "--format", "{{.Server.Version}}").strip()

    def import_image(self, tag: str, contents: dict[str, bytes]) -> None:
        """An image without a registry: `docker import` of busybox_image(contents)."""
        self.docker("import", "-", tag, stdin=busybox_image(contents))

    def wait_running(self, container: str, seconds: float = 30) -> None:
        """Until the container runs again (after a restart of dockerd)."""
        deadline = time.monotonic() + seconds
        while True:
            with contextlib.suppress(MultihomeError):
                state = self.docker("inspect", "--format", "{{.State.Running}}", container)
                if state.strip() == "true":
                    return
            if time.monotonic() > deadline:
                raise MultihomeError(f"container {container} did not run within {seconds} s")
            time.sleep(0.1)
