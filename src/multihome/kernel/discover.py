"""Read the live state of this network namespace into a `HostState` (read only).

Links, addresses, rules and routes come from one rtnetlink socket (reader.py); sysctls
from /proc/sys, which shows the values of the namespace the process is in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from multihome.core.model import (
    Address,
    Counters,
    HostState,
    Interface,
    IPAddress,
    Lookup,
    Route,
    interface_of,
)
from multihome.core.names import problem as name_problem
from multihome.errors import MultihomeError, PrivilegeError
from multihome.kernel import namespace
from multihome.kernel.objects import AddressInfo, LinkInfo
from multihome.kernel.reader import Decoded, Reader
from multihome.kernel.transport import Refusal

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from multihome.core import counters

IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_LOWER_UP = 0x10000
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40
SCOPE_GLOBAL = 0

SYSCTL_ROOT = "/proc/sys"
# Per-interface IPv4 settings multihome plans for or the doctor checks.
CONF_KEYS = ("arp_ignore", "arp_announce", "rp_filter")


def _interface(link: LinkInfo) -> Interface:
    return Interface(
        index=link.index,
        name=link.name,
        up=bool(link.flags & IFF_UP and link.flags & IFF_LOWER_UP),
        loopback=bool(link.flags & IFF_LOOPBACK),
        master=link.master,
        kind=link.kind,
    )


def _address(name: str, info: AddressInfo) -> Address:
    return Address(name, interface_of(info.version, info.value, info.prefixlen))


def _usable(info: AddressInfo) -> bool:
    """A global address that can be a source now (not still in IPv6 duplicate detection)."""
    return info.scope == SCOPE_GLOBAL and not info.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED)


def read_sysctl(path: str) -> str | None:
    """A sysctl's value (None: no such key). Read with os.read: a host with a few dozen
    interfaces reads ~100 of these on every run, and a text file object costs more than
    the read."""
    try:
        fd = os.open(f"{SYSCTL_ROOT}/{path}", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        return os.read(fd, 4096).decode("ascii").strip()
    finally:
        os.close(fd)


GLOBAL_KEYS = (
    "net/ipv4/fib_multipath_hash_policy",
    "net/ipv6/fib_multipath_hash_policy",  # balancing, both families
    "net/ipv4/ip_forward",  # gateway mode
    "net/ipv4/conf/all/src_valid_mark",
    "net/netfilter/nf_conntrack_acct",
)


def _sysctls(interfaces: list[Interface]) -> dict[str, str]:
    values = {}
    for path in GLOBAL_KEYS:
        value = read_sysctl(path)
        if value is not None:
            values[path] = value
    for name in ["all", *(i.name for i in interfaces if not i.loopback)]:
        for key in CONF_KEYS:
            path = f"net/ipv4/conf/{name}/{key}"
            value = read_sysctl(path)
            if value is not None:
                values[path] = value
    return values


def read_state(decoded: Decoded | None = None, addresses: bool = True) -> HostState:
    """Everything multihome needs to know about this network namespace (`decoded`: what the
    reads before decoded, for a caller that reads again and again: reader.Decoded). Without
    `addresses`, none are read: `remove` needs only what multihome owns (a host's thousands
    of addresses were most of its reading)."""
    try:
        with Reader(decoded) as rtnl:
            # an interface whose name no file could hold (not UTF-8, control characters:
            # names.problem) is left out: the config cannot name it, and one such link,
            # whoever made it, must not stop apply, remove and the watch's failover
            interfaces = sorted(
                _interface(link) for link in rtnl.links() if name_problem(link.name) is None
            )
            names = {i.index: i.name for i in interfaces}
            # sorted by interface, family and address, as comparing the objects would
            found = sorted(
                (names[a.index], a.order, i, a)
                for i, a in enumerate(rtnl.addresses() if addresses else ())
                if _usable(a) and a.index in names
            )
            read = [_address(name, a) for name, _, _, a in found]
            rules = rtnl.rules()
            routes = rtnl.routes(names)
    except PermissionError:
        raise PrivilegeError("reading the routing state was refused", "run as root") from None
    except OSError as error:
        raise MultihomeError(f"cannot read the routing state: {error}") from None
    return HostState(
        interfaces=tuple(interfaces),
        addresses=tuple(read),
        routes=tuple(routes),
        rules=tuple(rules),
        sysctls=_sysctls(interfaces),
        netns_id=namespace.identity(),
    )


def read_counters() -> dict[str, Counters]:
    """Every interface's traffic counters, by name."""
    try:
        with Reader() as rtnl:
            return {link.name: Counters(*link.stats) for link in rtnl.links()}
    except OSError as error:
        raise MultihomeError(f"cannot read the interface counters: {error}") from None


def read_links() -> list[tuple[counters.Link, Counters]]:
    """Every interface but loopback as ifconfig shows it (flags, MTU, global addresses) and
    its counters."""
    from multihome.core import counters  # `multihome counters` only

    try:
        with Reader() as rtnl:
            links = [link for link in rtnl.links() if not link.flags & IFF_LOOPBACK]
            addresses: dict[int, list[str]] = {}
            for a in rtnl.addresses():
                if _usable(a):
                    addresses.setdefault(a.index, []).append(f"{a.address}/{a.prefixlen}")
    except OSError as error:
        raise MultihomeError(f"cannot read the interfaces: {error}") from None
    return [
        (
            counters.Link(link.name, link.flags, link.mtu, tuple(addresses.get(link.index, ()))),
            Counters(*link.stats),
        )
        for link in links
    ]


def route_lookups(
    state: HostState,
    probes: list[tuple[IPAddress, IPAddress]],
    marks: Mapping[IPAddress, int] | None = None,
) -> dict[tuple[IPAddress, IPAddress], Lookup]:
    """The kernel's answer to `ip route get DST from SRC` for each (dst, src); with the
    mark that `marks` gives a source (the nft form of source selection marks its packets,
    and the kernel routes them again by the mark), `ip route get DST from SRC mark M`."""
    names = {i.index: i.name for i in state.interfaces}
    marks = marks or {}
    results: dict[tuple[IPAddress, IPAddress], Lookup] = {}
    with Reader() as rtnl:
        for dst, src in probes:
            answer: Route | Refusal = rtnl.route_get(dst, src, names, mark=marks.get(src, 0))
            if isinstance(answer, Refusal):
                results[dst, src] = Lookup(dst, src, error=str(answer))
            else:
                results[dst, src] = Lookup(
                    dst, src, dev=answer.dev, gateway=answer.gateway, table=answer.table
                )
    return results


def forwarded_lookups(
    state: HostState, probes: list[tuple[IPAddress, IPAddress, str, int]]
) -> dict[tuple[IPAddress, IPAddress, str, int], Lookup]:
    """The kernel's answer to `ip route get DST from SRC iif DEV mark MARK` for each
    (dst, src, dev, mark): the route a packet forwarded from DEV with that mark takes."""
    names = {i.index: i.name for i in state.interfaces}
    indexes = {i.name: i.index for i in state.interfaces}
    results: dict[tuple[IPAddress, IPAddress, str, int], Lookup] = {}
    with Reader() as rtnl:
        for dst, src, dev, mark in probes:
            if dev not in indexes:
                continue
            answer = rtnl.route_get(dst, src, names, indexes[dev], mark)
            if isinstance(answer, Refusal):
                found = Lookup(dst, src, error=str(answer), iif=dev, mark=mark)
            else:
                found = Lookup(
                    dst,
                    src,
                    dev=answer.dev,
                    gateway=answer.gateway,
                    table=answer.table,
                    iif=dev,
                    mark=mark,
                )
            results[dst, src, dev, mark] = found
    return results


NETIF_LINKS = "run/systemd/netif/links"


def network_files(state: HostState, root: str = "/") -> dict[str, str]:
    """The .network file systemd-networkd uses for each interface (where networkd runs).

    /run is not per network namespace: networkd's files describe the interfaces of the
    namespace it runs in (the host's), whose ifindexes mean other links here. They are read
    only where this process is in the host's namespace, or under another root.
    """
    if root == "/" and not namespace.is_initial():
        return {}
    found = {}
    for interface in state.interfaces:
        path = os.path.join(root, NETIF_LINKS, str(interface.index))
        try:
            with open(path, encoding="utf-8") as file:
                for line in file:
                    if line.startswith("NETWORK_FILE="):
                        found[interface.name] = line.split("=", 1)[1].strip().rsplit("/", 1)[-1]
        except FileNotFoundError:
            continue
    return found
