"""Test networks in network namespaces: a frozen description, then a builder that removes
exactly what it created.

The description (`Topology`) is plain data: hosts, bridges, veth links, addresses, routes,
sysctls and rate limits, by logical host name. `Network` turns it into namespaces named
with a per-run prefix, records them in a run file before creating them, and deletes them
on exit, error or signal; a run killed with SIGKILL is cleaned up by the next one from its
run file (never by a name pattern).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import ipaddress
import json
import os
import re
import signal
import socket
import struct
from collections.abc import Iterator
from types import FrameType, TracebackType
from typing import Any

from pyroute2 import IPRoute, netns

from multihome.core.model import Sysctl
from multihome.core.records import record
from multihome.host import files, state
from multihome.kernel import namespace, writer
from multihome.kernel.processes import pid_alive
from multihome.lab.description import Topology


def run_dir() -> str:
    """Where each run records its networks; read at each use, like the state directory."""
    return os.path.join(state.state_dir(), "lab")


IFA_F_NODAD = 0x02
BASELINE_SYSCTLS = [
    ("net/ipv6/conf/all/accept_dad", "0"),
    ("net/ipv6/conf/default/accept_dad", "0"),
]


def _remove_namespace(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        netns.remove(name)


@record(frozen=True)
class LabRecord:
    """A lab network as its run recorded it (in run_dir()/NAME.json, before building it)."""

    name: str  # the namespaces' prefix without its dash: "mhlab1234d", or a kept run's name
    pid: int
    namespaces: tuple[str, ...]
    kept: bool  # left up with --keep: removed only on request
    info: dict[str, Any]  # what a kept network's users need (scenario, server addresses)

    def stale(self) -> bool:
        """A network its run no longer owns: the run died without cleaning up; or a record
        that describes nothing any more (its run is gone and so are its namespaces: a kept
        network deleted by hand), which must not hold its name."""
        if pid_alive(self.pid):
            return False
        return not self.kept or not any(
            os.path.exists(os.path.join(namespace.NETNS_DIR, n)) for n in self.namespaces
        )


def lab_networks() -> list[LabRecord]:
    """Every lab network recorded on this machine (the runs' own records, never names)."""
    records: list[LabRecord] = []
    directory = run_dir()
    if not os.path.isdir(directory):
        return records
    for entry in sorted(os.listdir(directory)):
        if not entry.endswith(".json"):
            continue
        name = entry.removesuffix(".json")
        try:
            data = json.loads(_trusted_text(os.path.join(directory, entry)))
            records.append(
                LabRecord(
                    name=name,
                    pid=int(data.get("pid", 0)),
                    # a record removes only namespaces of its own prefix, whatever it lists
                    namespaces=tuple(
                        n for n in data.get("namespaces", []) if str(n).startswith(name + "-")
                    ),
                    kept=data.get("keep") is True,
                    info=dict(data.get("info", {})),
                )
            )
        except (OSError, ValueError, TypeError, AttributeError, RecursionError):
            continue
    return records


def _trusted_text(path: str) -> str:
    """A lab record's text: a regular file, not through a link, that root (this user) owns
    and no one else may write; others' files are not records (they would have root delete
    namespaces of their choosing)."""
    fd, info = files.open_regular(path)
    with os.fdopen(fd, encoding="utf-8") as file:
        if info.st_uid != os.geteuid() or info.st_mode & 0o022:
            raise ValueError(f"{path} is not a record of this user's")
        return file.read(1 << 20)


def _run_dir() -> str:
    """The directory of the lab's records, made root's alone whatever the umask; one another
    user owns or may write is refused."""
    directory = run_dir()
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        files.check_directory(fd, directory)
    finally:
        os.close(fd)
    return directory


def damaged_records() -> list[tuple[str, tuple[str, ...]]]:
    """Records lab_networks cannot read (their namespaces may be left up): each file's path
    and the namespace names it still shows, if any can be made out. Never removed by a
    guess: the user decides (`ip netns del NAME`, then the file)."""
    found: list[tuple[str, tuple[str, ...]]] = []
    directory = run_dir()
    if not os.path.isdir(directory):
        return found
    readable = {r.name for r in lab_networks()}
    for entry in sorted(os.listdir(directory)):
        if not entry.endswith(".json") or entry.removesuffix(".json") in readable:
            continue
        path = os.path.join(directory, entry)
        try:
            with open(path, encoding="utf-8", errors="replace") as file:
                text = file.read()
        except OSError:
            text = ""
        listed = re.search(r'"namespaces"\s*:\s*\[([^\]]*)', text)
        names = tuple(re.findall(r'"([^"\\/]+)"', listed.group(1))) if listed else ()
        found.append((path, names))
    return found


def remove_network(record: LabRecord) -> list[str]:
    """Delete a recorded network's namespaces and its record; the namespaces that existed."""
    removed = []
    for name in record.namespaces:
        if os.path.exists(os.path.join(namespace.NETNS_DIR, name)):
            _remove_namespace(name)
            removed.append(name)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(run_dir(), record.name + ".json"))
    return removed


def clean_stale() -> list[LabRecord]:
    """Remove the networks of lab runs whose process is gone (never kept ones); returns
    their records."""
    stale = [network for network in lab_networks() if network.stale()]
    for network in stale:
        remove_network(network)
    return stale


SIOCETHTOOL = 0x8946
ETHTOOL_STSO, ETHTOOL_SGSO = 0x1F, 0x24


def _ethtool_set(sock: socket.socket, ifname: str, command: int, value: int) -> None:
    request = ctypes.create_string_buffer(struct.pack("=II", command, value), 8)
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(request)) + bytes(16)
    fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)


def _write_sysctls(items: list[tuple[str, str]]) -> None:
    for path, value in items:
        writer.write_sysctl(Sysctl(path, value))


@contextlib.contextmanager
def _rtnl(ns: str) -> Iterator[Any]:
    """A pyroute2 socket opened inside the namespace (without pyroute2's helper process)."""
    with namespace.inside(ns):
        ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


class Network:
    """A built `Topology`. Use as a context manager; `keep=True` leaves it up on exit."""

    def __init__(
        self,
        topology: Topology,
        prefix: str | None = None,
        keep: bool = False,
        info: dict[str, Any] | None = None,
    ):
        self.topology = topology
        self.prefix = prefix or f"mhlab{os.getpid()}-"
        self.keep = keep
        self.info = info or {}
        self.created: list[str] = []
        self._record = os.path.join(run_dir(), f"{self.prefix.rstrip('-')}.json")
        self._old_handlers: dict[int, Any] = {}
        self._owner = os.getpid()

    def ns(self, host: str) -> str:
        """The real namespace name of a logical host."""
        return self.prefix + host

    def _save_record(self, kept: bool = False) -> None:
        _run_dir()
        data: dict[str, Any] = {
            "pid": os.getpid(),
            "namespaces": [self.ns(h) for h in self.topology.hosts],
        }
        if kept:  # only once built: a run killed mid-build leaves a stale network, not a kept one
            data["keep"] = True
            data["info"] = self.info
        files.atomic_write(self._record, json.dumps(data))

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # SIGTERM unwinds like Ctrl-C, so that the `finally` of the owner removes the network.
        if os.getpid() != self._owner:
            os._exit(128 + signum)  # a forked helper: leave the cleanup to the owner
        raise KeyboardInterrupt(f"signal {signum}")

    def __enter__(self) -> Network:
        clean_stale()
        self._old_handlers[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._on_signal)
        try:
            self.build()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self.keep or error is not None:
            self.destroy()
        else:
            self._save_record(kept=True)
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler)

    def build(self) -> None:
        topo = self.topology
        self._save_record()  # first, so that even a SIGKILL mid-build is cleaned up later
        for host in topo.hosts:
            name = self.ns(host)
            if os.path.exists(os.path.join(namespace.NETNS_DIR, name)):
                raise RuntimeError(f"namespace {name} exists already")
            with _signals_held():  # made and listed together: a Ctrl-C comes before or after
                netns.create(name)
                self.created.append(name)
            with namespace.inside(name):
                # No duplicate address detection: addresses (link-local ones too) are usable
                # at once, and the state does not change under a running test.
                _write_sysctls(BASELINE_SYSCTLS)
        for host in topo.hosts:
            with _rtnl(self.ns(host)) as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
                for bridge_host, bridge in topo.bridges:
                    if bridge_host == host:
                        ipr.link("add", ifname=bridge, kind="bridge")
                        ipr.link("set", index=ipr.link_lookup(ifname=bridge)[0], state="up")
        for link in topo.links:
            with _rtnl(self.ns(link.a.host)) as ipr:
                ipr.link(
                    "add",
                    ifname=link.a.ifname,
                    kind="veth",
                    peer={"ifname": link.b.ifname, "net_ns_fd": self.ns(link.b.host)},
                )
            for port in (link.a, link.b):
                with _rtnl(self.ns(port.host)) as ipr:
                    index = ipr.link_lookup(ifname=port.ifname)[0]
                    if port.bridge:
                        master = ipr.link_lookup(ifname=port.bridge)[0]
                        ipr.link("set", index=index, master=master)
                    ipr.link("set", index=index, state="up")
        sysctls: dict[str, list[tuple[str, str]]] = {}
        for host, path, value in topo.sysctls:
            sysctls.setdefault(host, []).append((path, value))
        for host, items in sysctls.items():  # before addresses: rp_filter, forwarding
            with namespace.inside(self.ns(host)):
                _write_sysctls(items)
        for host, ifname, address in topo.addresses:
            iface = ipaddress.ip_interface(address)
            with _rtnl(self.ns(host)) as ipr:
                index = ipr.link_lookup(ifname=ifname)[0]
                extra = {"flags": IFA_F_NODAD} if iface.version == 6 else {}
                ipr.addr(
                    "add",
                    index=index,
                    address=str(iface.ip),
                    prefixlen=iface.network.prefixlen,
                    **extra,
                )
        for host, dst, via, dev, metric in topo.routes:
            with _rtnl(self.ns(host)) as ipr:
                spec: dict[str, Any] = {"dst": dst, "gateway": via, "priority": metric}
                if dev:
                    spec["oif"] = ipr.link_lookup(ifname=dev)[0]
                ipr.route("add", **spec)
        for priority, (host, ifname, prefix) in enumerate(topo.source_filters6, 100):
            # from the prefix: the routes as usual; from anywhere else: dropped. Packets to
            # the router itself (neighbour discovery) match the local table's rule first.
            network = ipaddress.ip_network(prefix)
            with _rtnl(self.ns(host)) as ipr:
                common = {"family": socket.AF_INET6, "iifname": ifname}
                source = {"src": str(network.network_address), "src_len": network.prefixlen}
                ipr.rule("add", priority=2 * priority, table=254, **source, **common)
                ipr.rule("add", priority=2 * priority + 1, action="blackhole", **common)
        for host, ifname in topo.no_offload:
            with namespace.inside(self.ns(host)):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with sock:
                for command in (ETHTOOL_STSO, ETHTOOL_SGSO):
                    _ethtool_set(sock, ifname, command, 0)
        for host, ifname, rate in topo.rate_limits:
            with _rtnl(self.ns(host)) as ipr:
                index = ipr.link_lookup(ifname=ifname)[0]
                # A burst of ~4 ms at the rate (at least 32 KB) keeps TCP's throughput at the
                # configured rate without shaping effects of its own.
                burst = max(32 * 1024, rate // 8 // 250)
                ipr.tc("add", "tbf", index=index, rate=rate // 8, burst=burst, latency="50ms")

    def destroy(self) -> None:
        """Remove every namespace this run created (their interfaces go with them); a second
        Ctrl-C waits until it is done."""
        with _signals_held():
            for name in reversed(self.created):
                _remove_namespace(name)
            self.created.clear()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._record)


# Ctrl-C (SIGINT to the whole job) and SIGTERM
_INTERRUPTS = frozenset({signal.SIGINT, signal.SIGTERM})


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM for the block, delivered when it ends (as KeyboardInterrupt).
    pyroute2 makes a namespace in a forked child, which keeps the mask: an interrupt can no
    longer land between the namespace appearing and its name being listed for removal, nor
    stop the child halfway (a mount point without its namespace)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _INTERRUPTS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
