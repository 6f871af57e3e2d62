"""PURE: the dual-stack router lab (`multihome lab gateway --ipv6`) as a `Topology`, with its
RA daemon's and multihome's configs.

A router with uplinks eth0..ethN-1, each behind its own ISP; ISP i delegated the prefix
2001:db8:X::/48 (X = a, b, ...) to the router, which holds 2001:db8:X:1::1/64 on its LAN
bridge lan0 as a DHCPv6-PD client would put it there (no PD server: the lab assigns it), with
the unreachable route for the whole /48 a PD client installs. The WAN links have IPv4 and only
link-local IPv6 (fe80::10 on the router, fe80::1 on the ISP), as many ISPs hand out PD, and
one IPv6 default route per uplink. Each ISP drops forwarded IPv6 from a source outside its
delegation (anti-spoofing). LAN hosts take an address from each prefix by SLAAC from
dnsmasq's router advertisements; a server on the "internet" (2001:db8:ff::100) behind all
ISPs echoes.
"""

from __future__ import annotations

from multihome.lab.description import Link, Port, Topology
from multihome.lab.scenarios import router_sysctls

ROUTER, SERVER = "router", "server"
SERVER6 = "2001:db8:ff::100"
SERVER4 = "203.0.113.100"
ROUTER_LL, ISP_LL = "fe80::10", "fe80::1"
MAX_NICS = 6  # the delegations' letters a-f


def letter(i: int) -> str:
    return "abcdef"[i]


def delegated(i: int) -> str:
    """The prefix ISP i delegated to the router."""
    return f"2001:db8:{letter(i)}::/48"


def lan_prefix(i: int) -> str:
    """The LAN's /64 from ISP i's delegation."""
    return f"2001:db8:{letter(i)}:1::/64"


def clients(count: int) -> list[str]:
    return [f"client{k}" for k in range(count)]


def gateway6(nics: int = 2, hosts: int = 2) -> Topology:
    if not 2 <= nics <= MAX_NICS:
        raise ValueError(f"--nics must be 2-{MAX_NICS} with --ipv6, not {nics}")
    names = [ROUTER, *clients(hosts), "internet", SERVER] + [f"isp{i}" for i in range(nics)]
    links = [
        Link(Port(c, "eth0"), Port(ROUTER, f"lp{k}", "lan0")) for k, c in enumerate(clients(hosts))
    ]
    links.append(Link(Port(SERVER, "eth0"), Port("internet", "sws", "br0")))
    addresses = [
        (ROUTER, "lan0", "198.18.0.1/24"),
        (SERVER, "eth0", f"{SERVER4}/24"),
        (SERVER, "eth0", f"{SERVER6}/64"),
    ]
    routes = []
    sysctls = router_sysctls(ROUTER, strict=True)
    filters = []
    for i in range(nics):
        isp = f"isp{i}"
        links += [
            Link(Port(ROUTER, f"eth{i}"), Port(isp, "cust")),
            Link(Port(isp, "up"), Port("internet", f"sw{i}", "br0")),
        ]
        addresses += [
            (ROUTER, "lan0", f"2001:db8:{letter(i)}:1::1/64"),
            (ROUTER, f"eth{i}", f"192.0.2.{32 * i + 10}/27"),
            (ROUTER, f"eth{i}", f"{ROUTER_LL}/64"),
            (isp, "cust", f"192.0.2.{32 * i + 1}/27"),
            (isp, "cust", f"{ISP_LL}/64"),
            (isp, "up", f"203.0.113.{i + 1}/24"),
            (isp, "up", f"2001:db8:ff::{i + 1}/64"),
        ]
        metric = 100 * (i + 1)
        routes += [
            (ROUTER, "0.0.0.0/0", f"192.0.2.{32 * i + 1}", f"eth{i}", metric),
            (ROUTER, "::/0", ISP_LL, f"eth{i}", metric),
            (isp, delegated(i), ROUTER_LL, "cust", 0),
            (SERVER, f"192.0.2.{32 * i}/27", f"203.0.113.{i + 1}", "eth0", 0),
            (SERVER, delegated(i), f"2001:db8:ff::{i + 1}", "eth0", 0),
        ]
        sysctls += router_sysctls(isp, strict=True)
        # the upstream's addresses outlive the lab's outage, as a router's do
        sysctls.append((isp, "net/ipv6/conf/up/keep_addr_on_down", "1"))
        filters.append((isp, "cust", delegated(i)))
    return Topology(
        name="gateway6",
        hosts=tuple(names),
        bridges=((ROUTER, "lan0"), ("internet", "br0")),
        links=tuple(links),
        addresses=tuple(addresses),
        routes=tuple(routes),
        sysctls=tuple(sysctls),
        source_filters6=tuple(filters),
        roles={"clients": clients(hosts)},
    )


def pd_routes(nics: int) -> list[list[str]]:
    """The `ip -6 route` arguments of the routes a PD client installs for its delegations
    (the unreachable /48: addresses of it not on the LAN go nowhere)."""
    return [["unreachable", delegated(i), "proto", "dhcp"] for i in range(nics)]


def dnsmasq_config(nics: int, conf_dir: str) -> str:
    """The RA daemon's own configuration: SLAAC for each delegated LAN prefix, and the
    conf-dir where multihome puts its drop-in."""
    lines = ["enable-ra", "ra-param=lan0,4"]
    lines += [f"dhcp-range=2001:db8:{letter(i)}:1::,ra-only,64" for i in range(nics)]
    lines.append(f"conf-dir={conf_dir}")
    return "\n".join(lines) + "\n"


def config(nics: int, ra_conf_dir: str | None = None, restart: list[str] | None = None) -> str:
    """multihome's config for the router: the uplinks with their delegations and probes past
    the ISPs (for watch), gateway mode, and the RA daemon when `ra_conf_dir` is given."""
    lines = []
    for i in range(nics):
        lines += [
            f"[uplinks.eth{i}]",
            f'gateway = "192.0.2.{32 * i + 1}"',
            f'probe = ["{SERVER4}"]',
            f'delegated = ["{delegated(i)}"]',
        ]
    lines += ["[gateway]", 'lan = ["lan0"]']
    if ra_conf_dir is not None:
        words = ", ".join(f'"{w}"' for w in restart or [])
        lines += [
            'ra_daemon = "dnsmasq"',
            f'ra_conf_dir = "{ra_conf_dir}"',
            f"ra_restart = [{words}]",
        ]
    return "\n".join(lines) + "\n"
