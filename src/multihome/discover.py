"""Read the live state of this network namespace into a `HostState` (read only).

Links and addresses come from pyroute2; rules and routes from the lean codec in netlink.py
(thousands of them on a host with many addresses); sysctls from /proc/sys, which shows the
values of the namespace the process is in.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pyroute2 import IPRoute

from multihome import namespace
from multihome.errors import MultihomeError, PrivilegeError
from multihome.model import Address, Family, HostState, Interface
from multihome.netlink import RtnlSocket

IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_LOWER_UP = 0x10000
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40
SCOPE_GLOBAL = 0

SYSCTL_ROOT = "/proc/sys"
# Per-interface IPv4 settings multihome plans for or the doctor checks.
CONF_KEYS = ("arp_ignore", "arp_announce", "rp_filter")


def _links(ipr: Any) -> list[Interface]:
    links = []
    for msg in ipr.get_links():
        flags = msg["flags"]
        kind = ""
        info = msg.get_attr("IFLA_LINKINFO")
        if info is not None:
            kind = info.get_attr("IFLA_INFO_KIND") or ""
        links.append(
            Interface(
                index=msg["index"],
                name=msg.get_attr("IFLA_IFNAME"),
                up=bool(flags & IFF_UP and flags & IFF_LOWER_UP),
                loopback=bool(flags & IFF_LOOPBACK),
                master=msg.get_attr("IFLA_MASTER"),
                kind=kind,
            )
        )
    return sorted(links)


def _addresses(ipr: Any, names: dict[int, str]) -> list[Address]:
    addresses = []
    for msg in ipr.get_addr():
        if msg["scope"] != SCOPE_GLOBAL:
            continue
        flags = msg.get_attr("IFA_FLAGS") or msg["flags"]
        if flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED):
            continue  # not usable as a source yet (IPv6 duplicate address detection)
        local = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
        ifname = names.get(msg["index"])
        if local is None or ifname is None:
            continue
        addresses.append(Address(ifname, ipaddress.ip_interface(f"{local}/{msg['prefixlen']}")))
    return sorted(addresses, key=lambda a: (a.ifname, a.ip.version, a.ip))


def read_sysctl(path: str) -> str | None:
    try:
        with open(f"{SYSCTL_ROOT}/{path}", encoding="ascii") as file:
            return file.read().strip()
    except FileNotFoundError:
        return None


def _sysctls(interfaces: list[Interface]) -> dict[str, str]:
    values = {}
    for name in ["all", *(i.name for i in interfaces if not i.loopback)]:
        for key in CONF_KEYS:
            path = f"net/ipv4/conf/{name}/{key}"
            value = read_sysctl(path)
            if value is not None:
                values[path] = value
    return values


def read_state() -> HostState:
    """Everything multihome needs to know about this network namespace."""
    try:
        with IPRoute() as ipr:
            interfaces = _links(ipr)
            names = {i.index: i.name for i in interfaces}
            addresses = _addresses(ipr, names)
        with RtnlSocket() as rtnl:
            rules = rtnl.rules()
            routes = rtnl.routes(names)
    except PermissionError:
        raise PrivilegeError("reading the routing state was refused", "run as root") from None
    except OSError as error:
        raise MultihomeError(f"cannot read the routing state: {error}") from None
    return HostState(
        interfaces=tuple(interfaces),
        addresses=tuple(addresses),
        routes=tuple(routes),
        rules=tuple(rules),
        sysctls=_sysctls(interfaces),
        netns_id=namespace.identity(),
    )


def families(state: HostState) -> set[Family]:
    return {a.family for a in state.addresses}
