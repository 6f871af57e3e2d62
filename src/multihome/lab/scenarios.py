"""PURE: the lab's scenarios as `Topology` descriptions (documentation address ranges only).

seed     the article's set-up: the server's NICs eth0..ethN-1 on one subnet (192.0.2.0/24)
         behind one switch, a router, and the client on another network (198.51.100.0/24).
two-isp  dual stack: each server NIC on its own customer subnet (a /27 of 192.0.2.0/24, and
         2001:db8:i::/64) behind its own ISP router; the routers filter spoofed sources
         (rp_filter=1 for IPv4, a source rule for IPv6), as real ISPs do. The client sits on
         the "internet" (203.0.113.0/24, 2001:db8:ff::/64) behind both and fetches from
         every server address of both families. The server has one default route per NIC
         and family, with rising metrics, as DHCP clients and router advertisements install
         them.
"""

from __future__ import annotations

from multihome.core.records import replace
from multihome.lab import MAX_NICS, SCENARIO_NAMES
from multihome.lab.description import Link, Port, Topology

SERVER, CLIENT = "server", "client"


def router_sysctls(host: str, strict: bool, ipv6: bool = True) -> list[tuple[str, str, str]]:
    """A lab host that forwards (for IPv6 too, unless `ipv6` is False)."""
    items = [(host, "net/ipv4/ip_forward", "1")]
    if ipv6:
        items.append((host, "net/ipv6/conf/all/forwarding", "1"))
    if strict:  # anti-spoofing: drop what arrives from a source not routed back that way
        items += [
            (host, "net/ipv4/conf/all/rp_filter", "1"),
            (host, "net/ipv4/conf/default/rp_filter", "1"),
        ]
    return items


def seed(nics: int = 2, rate_bps: int | None = None) -> Topology:
    """The article's topology: N server NICs on one switch, one router, one client."""
    _check(nics)
    links = [Link(Port(SERVER, f"eth{i}"), Port("switch", f"sw{i}", "br0")) for i in range(nics)]
    links += [
        Link(Port("router", "lan"), Port("switch", "swr", "br0")),
        Link(Port("router", "wan"), Port(CLIENT, "eth0")),
    ]
    addresses = [(SERVER, f"eth{i}", f"192.0.2.{10 + i}/24") for i in range(nics)]
    addresses += [
        ("router", "lan", "192.0.2.1/24"),
        ("router", "wan", "198.51.100.1/24"),
        (CLIENT, "eth0", "198.51.100.100/24"),
    ]
    return Topology(
        name="seed",
        hosts=(SERVER, "switch", "router", CLIENT),
        bridges=(("switch", "br0"),),
        links=tuple(links),
        addresses=tuple(addresses),
        routes=(
            (SERVER, "0.0.0.0/0", "192.0.2.1", "eth0", 0),
            (CLIENT, "0.0.0.0/0", "198.51.100.1", "eth0", 0),
        ),
        sysctls=tuple(router_sysctls("router", strict=False)),
        rate_limits=tuple((SERVER, f"eth{i}", rate_bps) for i in range(nics) if rate_bps),
        no_offload=tuple((SERVER, f"eth{i}") for i in range(nics)),
        roles={"server_addresses": [f"192.0.2.{10 + i}" for i in range(nics)]},
    )


def two_isp(nics: int = 2, rate_bps: int | None = None) -> Topology:
    """One ISP per server NIC; the ISPs drop packets with a source that is not theirs."""
    _check(nics)
    hosts = [SERVER, "internet", CLIENT] + [f"isp{i}" for i in range(nics)]
    links = [Link(Port(CLIENT, "eth0"), Port("internet", "swc", "br0"))]
    addresses = [(CLIENT, "eth0", "203.0.113.100/24"), (CLIENT, "eth0", "2001:db8:ff::100/64")]
    routes = []
    sysctls = []
    filters = []
    server_addresses = []
    for i in range(nics):
        isp = f"isp{i}"
        base = 32 * i
        links += [
            Link(Port(SERVER, f"eth{i}"), Port(isp, "cust")),
            Link(Port(isp, "up"), Port("internet", f"sw{i}", "br0")),
        ]
        addresses += [
            (SERVER, f"eth{i}", f"192.0.2.{base + 10}/27"),
            (SERVER, f"eth{i}", f"2001:db8:{i}::10/64"),
            (isp, "cust", f"192.0.2.{base + 1}/27"),
            (isp, "cust", f"2001:db8:{i}::1/64"),
            (isp, "up", f"203.0.113.{i + 1}/24"),
            (isp, "up", f"2001:db8:ff::{i + 1}/64"),
        ]
        metric = 100 * (i + 1)
        routes += [
            (SERVER, "0.0.0.0/0", f"192.0.2.{base + 1}", f"eth{i}", metric),
            (SERVER, "::/0", f"2001:db8:{i}::1", f"eth{i}", metric),
            (CLIENT, f"192.0.2.{base}/27", f"203.0.113.{i + 1}", "eth0", 0),
            (CLIENT, f"2001:db8:{i}::/64", f"2001:db8:ff::{i + 1}", "eth0", 0),
        ]
        sysctls += router_sysctls(isp, strict=True)
        filters.append((isp, "cust", f"2001:db8:{i}::/64"))
        server_addresses.append(f"192.0.2.{base + 10}")
    return Topology(
        name="two-isp",
        hosts=tuple(hosts),
        bridges=(("internet", "br0"),),
        links=tuple(links),
        addresses=tuple(addresses),
        routes=tuple(routes),
        sysctls=tuple(sysctls),
        rate_limits=tuple((SERVER, f"eth{i}", rate_bps) for i in range(nics) if rate_bps),
        no_offload=tuple((SERVER, f"eth{i}") for i in range(nics)),
        source_filters6=tuple(filters),
        roles={  # the lab's client fetches from both lists
            "server_addresses": server_addresses,
            "server_addresses6": [f"2001:db8:{i}::10" for i in range(nics)],
        },
    )


# Past the ISPs: the benchmark ranges, routed by the "internet" client (see two_isp_routed)
FAR = {4: ("198.18.0.0/15", "198.18.0.1"), 6: ("2001:db8:ee::/48", "2001:db8:ee::1")}


def routed_config(nics: int = 2) -> str:
    """The config of `multihome watch` on two_isp_routed's server: balancing, the health
    checks' second hop toward FAR, and the uplinks named (the lab's static default routes die
    with their link)."""
    lines = [
        "[multihome]",
        "balance = true",
        "[health]",
        f'trace = "{FAR[4][1]}"',
        f'trace6 = "{FAR[6][1]}"',
    ]
    for i in range(nics):
        lines += [f"[uplinks.eth{i}]", f'gateway = "192.0.2.{32 * i + 1}"']
    return "\n".join(lines) + "\n"


def two_isp_routed(nics: int = 2, rate_bps: int | None = None) -> Topology:
    """two-isp, with a second hop past each ISP: the "internet" client also routes (it
    forwards, and sends the far ranges of FAR back to ISP 0), and the ISPs route FAR to it.
    A probe toward FAR with hop limit 2 expires at the client, which answers time exceeded:
    the health checks of multihome watch see the path one hop past each gateway. The ISPs'
    upstream IPv6 addresses outlive a link flap, as a router's do (keep_addr_on_down)."""
    base = two_isp(nics, rate_bps)
    routes = [
        (CLIENT, FAR[4][0], "203.0.113.1", "eth0", 0),
        (CLIENT, FAR[6][0], "2001:db8:ff::1", "eth0", 0),
    ]
    sysctls = router_sysctls(CLIENT, strict=False)
    for i in range(nics):
        routes += [
            (f"isp{i}", FAR[4][0], "203.0.113.100", "up", 0),
            (f"isp{i}", FAR[6][0], "2001:db8:ff::100", "up", 0),
        ]
        sysctls.append((f"isp{i}", "net/ipv6/conf/up/keep_addr_on_down", "1"))
    return replace(
        base, routes=base.routes + tuple(routes), sysctls=base.sysctls + tuple(sysctls)
    )


SCENARIOS = {"seed": seed, "two-isp": two_isp}
assert tuple(SCENARIOS) == SCENARIO_NAMES, "keep multihome.lab.SCENARIO_NAMES in step"


def _check(nics: int) -> None:
    if not 2 <= nics <= MAX_NICS:
        raise ValueError(f"--nics must be 2-{MAX_NICS}, not {nics}")
