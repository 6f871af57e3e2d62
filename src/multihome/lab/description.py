"""PURE: a test network described as data (hosts, bridges, links, addresses, routes,
sysctls, rate limits) -- topology.py builds it. Kept apart so that describing a network
costs no netlink library."""

from __future__ import annotations

from typing import Any

from multihome.core.records import field, record


@record(frozen=True)
class Port:
    """One end of a link: an interface name in a host (or a port of a bridge there)."""

    host: str
    ifname: str
    bridge: str | None = None  # enslave this end to the named bridge in `host`


@record(frozen=True)
class Link:
    a: Port
    b: Port


@record(frozen=True)
class Topology:
    """A test network, by logical host names."""

    name: str  # scenario name, for messages
    hosts: tuple[str, ...]
    bridges: tuple[tuple[str, str], ...] = ()  # (host, bridge name)
    links: tuple[Link, ...] = ()
    addresses: tuple[tuple[str, str, str], ...] = ()  # (host, ifname, "192.0.2.10/24")
    routes: tuple[tuple[str, str, str, str, int], ...] = ()  # (host, dst, via, dev, metric)
    sysctls: tuple[tuple[str, str, str], ...] = ()  # (host, path under /proc/sys, value)
    rate_limits: tuple[tuple[str, str, int], ...] = ()  # (host, ifname, bits per second)
    # IPv6 has no rp_filter: (host, ifname, prefix) drops what arrives on ifname to be
    # forwarded from a source outside prefix (an ISP's anti-spoofing filter)
    source_filters6: tuple[tuple[str, str, str], ...] = ()
    # Interfaces that segment like a physical NIC: TSO/GSO off, so a TX packet is at most
    # one MTU and the counters compare with a real server's (veth would send 64 KB skbs).
    no_offload: tuple[tuple[str, str], ...] = ()
    roles: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def addresses_of(self, host: str, ifname: str | None = None) -> list[str]:
        return [a for h, i, a in self.addresses if h == host and (ifname is None or i == ifname)]
