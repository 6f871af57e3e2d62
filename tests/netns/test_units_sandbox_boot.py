"""The units' sandbox under a real systemd (issue 22, point 5). systemd is not PID 1 where
the tests run (CI and the dev machines are containers), so the test boots one: systemd-nspawn
with the host's own /usr (`--volatile=yes -D /`: a tmpfs root, nothing to build), in the
lab's server namespace (two uplinks, default routes). Inside, multihome.service and
multihome-watch.service as rendered (the text `export --format systemd` and `install` write)
are started with the container's systemctl; /usr/local/bin/multihome runs the worktree's.

It proves: the unit runs to success in its sandbox and makes multihome's rules (read from
outside with `ip -j rule`); its stop (`multihome remove`) takes them away; the kernel's view
of the running watch daemon is the sandbox's (capability bounding set CAP_NET_ADMIN and
CAP_NET_RAW only, no new privileges, a seccomp filter, a read-only root and /usr, /root and
/home covered, /run/multihome writable); a probe run in the same sandbox is refused what the
container's root shell may do (write /etc and /var, list /root, a syscall outside
@system-service, a personality change, socket families the unit leaves out); and the same unit
with CAP_NET_ADMIN left out of its bounding set fails without touching the rules: the
properties are in force, not just written down. The booted systemd's `systemd-analyze
security` rates both loaded units (2.7 with systemd 252; the README states 2.9, offline).

The container gets a cgroup of its own (made here, removed at the end), a private /run, and
is powered off by SIGTERM to nspawn in `finally` (killed if it does not stop in time).
`nspawn` boots any root so: test_debian_package.py boots a minimal Debian with the package
installed (install, reboot, uninstall as a user lives them).
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from multihome.core.model import Desired, Ownership
from multihome.lab import scenarios
from multihome.lab.description import Topology
from multihome.lab.topology import Network
from multihome.render import Options, systemd

from .helpers import owned_rules

Build = Callable[[Topology], Network]
REPO = Path(__file__).resolve().parents[2]
BOOT_BUDGET = 60.0  # seconds; about 3 here
STOP_BUDGET = 20.0
# Where the worktree and the tests' Python are inside (see inside_paths)
WORKTREE_INSIDE = "/opt/multihome-worktree"
PYTHON_INSIDE = "/opt/multihome-python"
SITE_INSIDE = "/opt/multihome-site"
CAP_NET_ADMIN, CAP_NET_RAW = 12, 13
PRIVATE_RUN = (  # a mount namespace with a private /run, then the command ("$@")
    *("unshare", "--mount", "--propagation", "private"),
    *("sh", "-c", 'mount -t tmpfs -o mode=0755 tmpfs /run && exec "$@"', "sh"),
)
SANDBOX = (  # what `systemctl show` must say of the sandbox (its order, its case)
    ("CapabilityBoundingSet", "cap_net_admin cap_net_raw"),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("NoNewPrivileges", "yes"),
    ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_NETLINK AF_PACKET AF_UNIX"),
    ("LimitNOFILE", "1024"),
)
# What the sandbox refuses, tried from inside it and (the control) from the container's
# root shell: each entry's errno, or "ok".
PROBE = r"""
import ctypes, errno, json, os, socket
libc = ctypes.CDLL(None, use_errno=True)

def attempt(action):
    try:
        action()
        return "ok"
    except OSError as error:
        return errno.errorcode[error.errno]

def checked(result):
    if result < 0:
        raise OSError(ctypes.get_errno(), "")

def write(path):
    with open(path, "w"):
        pass
    os.unlink(path)

def family(number):  # families the units leave out; which exist depends on the kernel
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_RAW, socket.SOCK_SEQPACKET):
        try:
            socket.socket(number, kind).close()
            return
        except OSError as error:
            if error.errno == errno.EAFNOSUPPORT:
                raise
    raise OSError(errno.EPROTONOSUPPORT, "")

pidfd = os.pidfd_open(os.getpid())
print(json.dumps({
    "write /etc": attempt(lambda: write("/etc/multihome-probe")),
    "write /var": attempt(lambda: write("/var/multihome-probe")),
    "list /root": attempt(lambda: os.listdir("/root")),
    # pidfd_getfd (438 on every architecture) is in @debug, not @system-service
    "pidfd_getfd": attempt(lambda: checked(libc.syscall(438, pidfd, 0, 0))),
    # LockPersonality: the query (0xffffffff) is allowed, a change is not
    "personality": attempt(lambda: checked(libc.personality(libc.personality(0xFFFFFFFF)))),
    "AF_VSOCK": attempt(lambda: family(40)),
    "AF_XDP": attempt(lambda: family(44)),
}))
"""
REFUSED = {  # the sandbox's answer to each probe
    "write /etc": "EROFS",
    "write /var": "EROFS",
    "list /root": "EACCES",
    "pidfd_getfd": "EPERM",
    "personality": "EPERM",
    "AF_VSOCK": "EAFNOSUPPORT",
    "AF_XDP": "EAFNOSUPPORT",
}
UPLINKS = ("192.0.2.10", "192.0.2.42")  # the server's addresses in the two-ISP lab


def cgroup_hierarchies() -> list[Path]:
    """This process's cgroup in the unified hierarchy and in systemd's v1 one (a hybrid
    host has both): nspawn puts the container under the cgroup it starts in."""
    mounts: dict[str, str] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" - ")
        point, (fstype, _, options) = fields[0].split()[4], fields[1].split()[:3]
        if fstype == "cgroup2":
            mounts.setdefault("", point)
        elif fstype == "cgroup" and "name=systemd" in options.split(","):
            mounts.setdefault("name=systemd", point)
    found = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers in mounts:
            found.append(Path(mounts[controllers] + path))
    return found


def remove_cgroup(path: Path) -> None:
    """Remove a cgroup tree the container left (empty cgroups, deepest first)."""
    if not path.is_dir():
        return
    for child in path.iterdir():
        if child.is_dir():
            remove_cgroup(child)
    path.rmdir()


def inside_paths() -> tuple[list[str], str, str]:
    """The bind mounts that give the container this worktree's multihome and the tests'
    Python; the environment and the Python that run it inside. The worktree,
    and the tests' Python where it is not the system's, go under /opt: ProtectHome=yes hides
    /root and /home (pyenv's Python, a CI runner's checkout) from the unit."""
    binds = [f"--bind-ro={REPO}:{WORKTREE_INSIDE}"]
    base = Path(sys.base_prefix).resolve()
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if base.is_relative_to("/usr"):
        python, libs = f"{base}/bin/{version}", ""
    else:  # its libpython is found by an absolute RUNPATH: point the loader at the new one
        binds.append(f"--bind-ro={base}:{PYTHON_INSIDE}")
        python, libs = f"{PYTHON_INSIDE}/bin/{version}", f"{PYTHON_INSIDE}/lib"
    site = Path(sysconfig.get_path("purelib")).resolve()
    if site.is_relative_to(REPO):
        site_inside = f"{WORKTREE_INSIDE}/{site.relative_to(REPO)}"
    else:
        binds.append(f"--bind-ro={site}:{SITE_INSIDE}")
        site_inside = SITE_INSIDE
    env = f"export PYTHONPATH={WORKTREE_INSIDE}/src:{site_inside}\n" + (
        f"export LD_LIBRARY_PATH={libs}\n" if libs else ""
    )
    return binds, env, python


class Container:
    """A booted systemd in a network namespace; `run` is a command in all its namespaces."""

    def __init__(self, nspawn: subprocess.Popen[str], log: Path) -> None:
        self.nspawn = nspawn
        self.log = log
        self.pid = 0

    def wait_booted(self) -> None:
        deadline = time.monotonic() + BOOT_BUDGET
        children = Path(f"/proc/{self.nspawn.pid}/task/{self.nspawn.pid}/children")
        while not self.pid:
            assert self.nspawn.poll() is None, "nspawn ended:\n" + self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no container:\n" + self.log.read_text()[-3000:]
            for child in children.read_text().split():
                if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                    self.pid = int(child)
            time.sleep(0.05)
        while True:
            state = self.run("systemctl", "is-system-running", "--wait", check=False)
            if state.stdout.strip() in ("running", "degraded"):
                return
            # before its private socket is up, systemctl fails at once
            assert time.monotonic() < deadline, f"not booted: {state.stdout}{state.stderr}"
            time.sleep(0.1)

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-a", *argv],
            capture_output=True,
            text=True,
            timeout=120,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SYSTEMD_COLORS": "0"},
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{argv} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def start(self, unit: str) -> None:
        """`systemctl start`, with the unit's journal in the error when it fails."""
        result = self.run("systemctl", "start", unit, check=False)
        assert result.returncode == 0, f"{unit} failed:\n{self.journal(unit)}"

    def journal(self, unit: str) -> str:
        return self.run("journalctl", "--no-pager", "-o", "cat", "-u", unit).stdout

    def show(self, unit: str, *names: str) -> dict[str, str]:
        out = self.run("systemctl", "show", "-p", ",".join(names), unit).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


@contextmanager
def booted(ns: str, workdir: Path, units: dict[str, str]) -> Iterator[Container]:
    """Boot systemd in namespace `ns` with `units` in its /etc/systemd/system; power it off
    and remove its cgroups at the end, also when the test fails."""
    binds, env, python = inside_paths()
    # /usr/local/bin inside: multihome (the path the rendered units run) and the probe
    (workdir / "bin").mkdir()
    (workdir / "bin" / "sandbox-probe.py").write_text(PROBE)
    wrappers = {
        "multihome": f'exec {python} -m multihome "$@"\n',
        "sandbox-probe": f"exec {python} /usr/local/bin/sandbox-probe.py\n",
    }
    for name, line in wrappers.items():
        (workdir / "bin" / name).write_text(f"#!/bin/sh\n{env}{line}")
        (workdir / "bin" / name).chmod(0o755)
    (workdir / "units").mkdir()
    for name, text in units.items():
        (workdir / "units" / name).write_text(text)
    # A machine id: not a first boot, so no presets enable the host's services (its
    # NetworkManager would take the namespace's links); only /usr's own wants start.
    (workdir / "machine-id").write_text(os.urandom(16).hex() + "\n")
    with nspawn(
        ns,
        workdir / "console.log",
        [
            "--directory=/",
            "--volatile=yes",
            *binds,
            f"--bind-ro={workdir}/bin:/usr/local/bin",
            f"--bind-ro={workdir}/units:/etc/systemd/system",
            f"--bind-ro={workdir}/machine-id:/etc/machine-id",
        ],
    ) as container:
        yield container


@contextmanager
def nspawn(ns: str, log: Path, directory: list[str]) -> Iterator[Container]:
    """Boot a container (`directory`: nspawn's options for its root and mounts) in network
    namespace `ns`, wait until its systemd has booted; power it off and remove its cgroups
    at the end, also when the test fails."""
    cgroups = [path / f"multihome-boot-{os.getpid()}" for path in cgroup_hierarchies()]
    made: list[Path] = []
    process: subprocess.Popen[str] | None = None
    netns = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        for path in cgroups:
            path.mkdir()
            made.append(path)
        command = [
            "systemd-nspawn",
            "--quiet",
            "--boot",
            *directory,
            f"--machine=mhboot{os.getpid()}",
            "--register=no",
            "--keep-unit",
            f"--network-namespace-path=/proc/self/fd/{netns}",
            # what nspawn gives a container with a network of its own (--private-network);
            # with a namespace path it leaves it out
            "--capability=CAP_NET_ADMIN",
            "--console=read-only",
            "systemd.unit=multi-user.target",
        ]
        with open(log, "w") as out:
            # a mount namespace of its own with a private /run, where nspawn keeps its
            # bookkeeping: nothing of it reaches the host's /run
            process = subprocess.Popen(
                [*PRIVATE_RUN, *command],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                pass_fds=(netns,),
                preexec_fn=lambda: join_cgroups(made),
            )
        container = Container(process, log)
        container.wait_booted()
        yield container
    finally:
        os.close(netns)
        if process is not None:
            # SIGTERM: nspawn asks the container's systemd to power off, in order
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_BUDGET)
            except subprocess.TimeoutExpired:
                # the container's processes first: nspawn reaps its init and ends
                kill_all(made, but=process.pid)
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        kill_all(made)  # what outlived nspawn was the container's: ours to end
        for path in made:
            for _ in range(50):
                if not left_in(path):
                    break
                time.sleep(0.1)
            remove_cgroup(path)


def join_cgroups(paths: list[Path]) -> None:
    """(In the child, before exec) move into the cgroups made for the container."""
    for path in paths:
        (path / "cgroup.procs").write_text(str(os.getpid()))


def kill_all(cgroups: list[Path], but: int = 0) -> None:
    """SIGKILL every process in the cgroups made for the container (all started by it)."""
    for path in cgroups:
        for pid in left_in(path):
            if pid != but:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def left_in(path: Path) -> list[int]:
    """The processes in a cgroup tree."""
    if not path.is_dir():
        return []
    return [int(p) for procs in path.rglob("cgroup.procs") for p in procs.read_text().split()]


def routed_by_source(ns: str) -> set[str]:
    """The uplinks' addresses that one of multihome's rules (protocol 77) selects by source."""
    prefixes = [
        ipaddress.ip_network(f"{r['src']}/{r.get('srclen', 32)}")
        for r in owned_rules(ns)
        if r.get("src", "all") != "all"
    ]
    return {a for a in UPLINKS if any(ipaddress.ip_address(a) in p for p in prefixes)}


def status(pid: int) -> dict[str, str]:
    """A process's /proc status as the kernel reports it: the independent reader of what
    the sandbox really gave it."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, v in (line.split(":", 1) for line in lines)}


def test_the_units_run_in_their_sandbox_under_a_booted_systemd(
    build: Build, tmp_path: Path
) -> None:
    assert shutil.which("systemd-nspawn"), "systemd-nspawn (systemd-container) is missing"
    started = time.monotonic()
    net = build(scenarios.two_isp(nics=2))
    server = net.ns("server")
    files = systemd.render(Desired(Ownership()), Options()).files
    service = files["multihome.service"]
    bounding = "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW\n"
    assert bounding in service
    units = {
        "multihome.service": service,
        "multihome-watch.service": files["multihome-watch.service"],
        # the same sandbox running the probe
        "multihome-probe.service": service.replace(
            "ExecStart=/usr/local/bin/multihome apply", "ExecStart=/usr/local/bin/sandbox-probe"
        ).replace("ExecStop=/usr/local/bin/multihome remove\n", ""),
        # the negative: the same unit without CAP_NET_ADMIN in its bounding set
        "multihome-nocap.service": service.replace(bounding, "CapabilityBoundingSet=CAP_NET_RAW\n"),
    }
    with booted(server, tmp_path, units) as box:
        boot = time.monotonic() - started
        assert not owned_rules(server)

        # without CAP_NET_ADMIN the unit cannot do its work: the bounding set is in force
        failed = box.run("systemctl", "start", "multihome-nocap.service", check=False)
        assert failed.returncode != 0
        shown = box.show("multihome-nocap.service", "Result", "ExecMainStatus")
        assert shown["Result"] == "exit-code" and shown["ExecMainStatus"] != "0", shown
        assert not owned_rules(server), "the unit without CAP_NET_ADMIN changed the rules"
        assert "needs CAP_NET_ADMIN" in box.journal("multihome-nocap.service")

        # the unit as rendered: runs to success and makes multihome's rules
        box.start("multihome.service")
        shown = box.show(
            "multihome.service", "Result", "ExecMainStatus", "ActiveState", *dict(SANDBOX)
        )
        journal = box.journal("multihome.service")
        assert shown["Result"] == "success", (shown, journal)
        assert shown["ExecMainStatus"] == "0" and shown["ActiveState"] == "active", shown
        assert {k: shown[k] for k, _ in SANDBOX} == dict(SANDBOX), shown
        assert routed_by_source(server) == set(UPLINKS), (owned_rules(server), journal)

        # its stop is `multihome remove`: the rules go
        box.run("systemctl", "stop", "multihome.service")
        assert box.show("multihome.service", "Result")["Result"] == "success"
        assert not owned_rules(server), "ExecStop (multihome remove) left rules"

        # the daemon: ready (Type=notify), its rules made, and the kernel's view of the
        # process is the sandbox's
        box.start("multihome-watch.service")
        shown = box.show("multihome-watch.service", "ActiveState", "MainPID")
        assert shown["ActiveState"] == "active", shown
        assert routed_by_source(server) == set(UPLINKS), owned_rules(server)
        # MainPID is in the container's PID namespace; find the same process from here
        watch = host_pid(box.pid, int(shown["MainPID"]))
        proc = status(watch)
        assert int(proc["CapBnd"], 16) == (1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW), proc
        assert proc["NoNewPrivs"] == "1" and proc["Seccomp"] == "2", proc
        mounts = mount_options(watch)
        # ProtectSystem=strict: read-only but its state; ProtectHome=yes: /root is covered
        assert "ro" in mounts["/"] and "ro" in mounts["/usr"], mounts
        assert "rw" in mounts["/run/multihome"], mounts
        assert {"/root", "/home", "/run/user"} <= set(mounts), mounts
        box.run("systemctl", "stop", "multihome-watch.service")
        shown = box.show("multihome-watch.service", "ActiveState", "Result")
        assert shown == {"ActiveState": "inactive", "Result": "success"}, shown

        # what the sandbox refuses, and the control: the container's root may do it all
        box.start("multihome-probe.service")
        (line,) = [x for x in box.journal("multihome-probe.service").splitlines() if x[:1] == "{"]
        sandboxed = json.loads(line)
        control = json.loads(box.run("/usr/local/bin/sandbox-probe").stdout)
        families = [k for k in ("AF_VSOCK", "AF_XDP") if control[k] == "ok"]
        assert families, f"the kernel has neither AF_VSOCK nor AF_XDP: {control}"
        tried = [k for k in REFUSED if not k.startswith("AF_") or k in families]
        assert {k: control[k] for k in tried} == dict.fromkeys(tried, "ok"), control
        print("probe in the sandbox:", sandboxed, "control:", control)
        assert {k: sandboxed[k] for k in tried} == {k: REFUSED[k] for k in tried}, sandboxed

        # systemd's own rating of the loaded units: no worse than the README's 2.9
        for unit in ("multihome.service", "multihome-watch.service"):
            rating = box.run("systemd-analyze", "security", "--no-pager", unit).stdout
            score = float(rating.split(f"Overall exposure level for {unit}: ")[1].split()[0])
            print(f"systemd-analyze security {unit}: {score}")
            assert score <= 2.9, rating
    print(f"booted in {boot:.1f} s; whole test {time.monotonic() - started:.1f} s")


def mount_options(pid: int) -> dict[str, set[str]]:
    """Each mount point a process sees, with its options (the last mount on a point wins)."""
    found = {}
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        found[fields[4]] = set(fields[5].split(","))
    return found


def host_pid(container_init: int, inner: int) -> int:
    """The host's pid of the container's process `inner` (NSpid: its pid in each namespace
    level, outermost first)."""
    ns = os.readlink(f"/proc/{container_init}/ns/pid")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns" / "pid") != ns:
                continue
            nspid = status(int(entry.name))["NSpid"].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if int(nspid[-1]) == inner:
            return int(entry.name)
    raise AssertionError(f"no process {inner} in the container")
