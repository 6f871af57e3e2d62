"""multihome on the hosts people run it on: two ISPs plus Docker, libvirt, a VPN, Kubernetes,
keepalived or IPv6 SLAAC, each built in namespaces with the rules, routes and nftables
tables that software creates.

In every case: `plan` picks exactly the real uplinks (eth0, eth1); `doctor` reports only the
real asymmetry before apply and nothing after; apply, watch and remove leave every foreign
rule, route and nftables table byte-identical; and the foreign feature still works.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
from collections.abc import Callable
from typing import Any

from multihome.core.records import replace
from multihome.lab import scenarios
from multihome.lab.description import Link, Port, Topology
from multihome.lab.topology import Network

from .helpers import PY, TcpServer, fetch, ip_json, multihome, selectors, selects
from .test_watch import Watch, wait_for

Build = Callable[[Topology], Network]
PROTO = {"77", "multihome"}  # `ip` prints the name once rt_protos.d knows it
UPLINKS = ["eth0", "eth1"]
CLIENT = "203.0.113.100"
# What doctor finds on the two-ISP server before apply, and only that: replies from eth1's
# addresses leave by eth0 (the lowest metric), and two default routes with no source rules.
REAL_ASYMMETRY = {
    ("asymmetric-reply", "192.0.2.42"),
    ("asymmetric-reply", "2001:db8:1::10"),
    ("several-defaults", None),
}


def host_with(
    hosts: tuple[str, ...] = (),
    bridges: tuple[tuple[str, str], ...] = (),
    links: tuple[Link, ...] = (),
    addresses: tuple[tuple[str, str, str], ...] = (),
    routes: tuple[tuple[str, str, str, str, int], ...] = (),
    sysctls: tuple[tuple[str, str, str], ...] = (),
) -> Topology:
    """The lab's two-ISP server, with more on it."""
    base = scenarios.two_isp(nics=2)
    return replace(
        base,
        name="coexistence",
        hosts=base.hosts + hosts,
        bridges=base.bridges + bridges,
        links=base.links + links,
        addresses=base.addresses + addresses,
        routes=base.routes + routes,
        sysctls=base.sysctls + sysctls,
    )


def sh(ns: str, *commands: str) -> None:
    """`ip` commands in a namespace, one a line, as the foreign software runs them."""
    for command in commands:
        subprocess.run(["ip", "-n", ns, *command.split()], check=True)


def nft(ns: str, ruleset: str) -> None:
    subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-f", "-"], input=ruleset, text=True, check=True
    )


def foreign(ns: str, theirs_only: bool = True) -> str:
    """Every rule, route and nftables table that is not multihome's (with `theirs_only`
    false: every one), as `ip -j` and `nft -j` print them; a route's `expires` (a router
    advertisement's lifetime) counts down by itself and is left out."""
    keep = {"never"} if not theirs_only else PROTO
    rules = [
        r
        for family in ("-4", "-6")
        for r in ip_json(ns, family, "rule")
        if r.get("protocol") not in keep
    ]
    routes = [
        {k: v for k, v in r.items() if k != "expires"}
        for family in ("-4", "-6")
        for r in ip_json(ns, family, "route", "show", "table", "all")
        if r.get("protocol") not in keep
    ]
    ruleset = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-j", "list", "ruleset"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    tables = [
        item
        for item in json.loads(ruleset)["nftables"]
        if "metainfo" not in item
        and next(iter(item.values())).get("table", next(iter(item.values())).get("name"))
        != "multihome"
    ]
    return json.dumps([rules, routes, tables], sort_keys=True)


def owned(ns: str) -> list[dict[str, Any]]:
    return [
        r
        for family in ("-4", "-6")
        for r in ip_json(ns, family, "rule")
        if r.get("protocol") in PROTO
    ]


def doctor(ns: str) -> tuple[int, set[tuple[str, str | None]]]:
    result = multihome(ns, "doctor", "--json", check=False)
    assert result.returncode in (0, 1), result.stderr
    findings = json.loads(result.stdout)["findings"]
    for finding in findings:  # about the uplinks only: never a bridge, veth or tunnel
        assert finding["interfaces"] and finding["interfaces"][0] in UPLINKS, finding
        assert finding["fix"], finding
    return result.returncode, {(f["check"], f["address"]) for f in findings}


def roles(ns: str) -> dict[str, tuple[str, str]]:
    shown = json.loads(multihome(ns, "show", "--json").stdout)["interfaces"]
    return {i["name"]: (i["role"], i["reason"]) for i in shown}


def planned_uplinks(ns: str) -> list[str]:
    return [u["name"] for u in json.loads(multihome(ns, "plan", "--json").stdout)["uplinks"]]


def coexist(
    net: Network,
    others: dict[str, tuple[str, str]],
    works: Callable[[], None],
    before: set[tuple[str, str | None]] = REAL_ASYMMETRY,
    while_watching: Callable[[], None] | None = None,
) -> None:
    """The checks every case shares. `others`: the foreign interfaces' role and reason;
    `works`: asserts that the foreign feature works (run before, after apply, under watch)."""
    server = net.ns("server")
    assert planned_uplinks(server) == UPLINKS
    shown = roles(server)
    assert {n for n, (role, _) in shown.items() if role == "uplink"} == set(UPLINKS)
    for name, expected in others.items():
        assert shown[name] == expected, (name, shown[name])
    assert doctor(server) == (1, before)
    works()
    untouched, theirs = foreign(server, theirs_only=False), foreign(server)
    multihome(server, "apply")
    assert doctor(server) == (0, set())
    assert foreign(server) == theirs
    works()
    multihome(server, "remove")
    assert foreign(server, theirs_only=False) == untouched
    watch = Watch(server)
    try:
        assert owned(server) and foreign(server) == theirs
        works()
        if while_watching is not None:
            while_watching()
            theirs = foreign(server)  # the foreign software changed its own state
    finally:
        assert watch.stop() == 0
    assert foreign(server) == theirs
    multihome(server, "remove")
    assert owned(server) == [] and foreign(server) == theirs


def test_docker(build: Build) -> None:
    """docker0 with a container behind a veth port, NATed out by Docker's masquerade rule
    (iptables-nft's `ip nat` and `ip filter` tables); the container reaches the internet."""
    net = build(
        host_with(
            hosts=("container",),
            bridges=(("server", "docker0"),),
            links=(Link(Port("server", "veth4a1c", "docker0"), Port("container", "eth0")),),
            addresses=(
                ("server", "docker0", "198.18.0.1/24"),
                ("container", "eth0", "198.18.0.2/24"),
            ),
            routes=(("container", "0.0.0.0/0", "198.18.0.1", "eth0", 0),),
            sysctls=(("server", "net/ipv4/ip_forward", "1"),),
        )
    )
    server, container, client = net.ns("server"), net.ns("container"), net.ns("client")
    nft(
        server,
        """
        table ip nat {
            chain POSTROUTING {
                type nat hook postrouting priority srcnat; policy accept;
                ip saddr 198.18.0.0/24 oifname != "docker0" masquerade
            }
        }
        table ip filter {
            chain DOCKER-USER { }
            chain FORWARD {
                type filter hook forward priority filter; policy drop;
                jump DOCKER-USER
                oifname "docker0" ct state related,established accept
                iifname "docker0" oifname != "docker0" accept
            }
        }
        """,
    )

    def works() -> None:
        assert fetch(container, [CLIENT], count=2) == {CLIENT: 2}

    with TcpServer(client):
        coexist(
            net,
            {
                "docker0": ("other", "bridge with no default route: not an uplink"),
                "veth4a1c": ("port", "port of docker0"),
            },
            works,
        )


def test_libvirt_bridge_without_ports_then_a_guest(build: Build) -> None:
    """virbr0 with no ports and libvirt's NAT table; a guest starts while watch runs:
    virbr0 gets its first port, is still no uplink, and the guest reaches the internet."""
    net = build(
        host_with(
            hosts=("guest",),
            bridges=(("server", "virbr0"),),
            addresses=(("server", "virbr0", "198.18.122.1/24"),),
            sysctls=(("server", "net/ipv4/ip_forward", "1"),),
        )
    )
    server, guest, client = net.ns("server"), net.ns("guest"), net.ns("client")
    nft(
        server,
        """
        table ip libvirt_network {
            chain guest_nat {
                type nat hook postrouting priority srcnat; policy accept;
                ip saddr 198.18.122.0/24 ip daddr != 198.18.122.0/24 masquerade
            }
        }
        """,
    )

    def works() -> None:  # the network is there for guests: main routes it to virbr0
        route = ip_json(server, "route", "get", "198.18.122.10")[0]
        assert route["dev"] == "virbr0" and route["prefsrc"] == "198.18.122.1"

    def guest_starts() -> None:
        sh(server, f"link add vnet0 type veth peer name eth0 netns {guest}")
        sh(server, "link set vnet0 master virbr0", "link set vnet0 up")
        sh(guest, "link set eth0 up", "addr add 198.18.122.10/24 dev eth0")
        sh(guest, "route add default via 198.18.122.1")
        wait_for(lambda: roles(server)["virbr0"][0] == "other" and _up(server, "virbr0"), 5)
        assert planned_uplinks(server) == UPLINKS
        with TcpServer(client):
            assert fetch(guest, [CLIENT], count=2) == {CLIENT: 2}
        assert selectors(server) == {
            "192.0.2.0/27",
            "192.0.2.32/27",
            "2001:db8::/64",
            "2001:db8:1::/64",
        }
        sourced = ip_json(server, "-6", "route", "show", "table", "main", "proto", "77")
        assert {r["from"] for r in sourced} == {"2001:db8::/64", "2001:db8:1::/64"}

    coexist(
        net,
        {"virbr0": ("other", "bridge with no default route: not an uplink")},
        works,
        while_watching=guest_starts,
    )


def _up(ns: str, ifname: str) -> bool:
    return "LOWER_UP" in ip_json(ns, "link", "show", ifname)[0]["flags"]


def _point_to_point(ns: str, ifname: str, peer_ns: str, peer: str) -> None:
    """A veth pair that behaves like a layer-3 tunnel (wg0, tailscale0): no ARP, and both
    ends share one MAC, so a packet routed `dev wg0` with no gateway reaches the far end."""
    mac = ip_json(ns, "link", "show", ifname)[0]["address"]
    sh(ns, f"link set {ifname} arp off")
    sh(peer_ns, f"link set {peer} arp off address {mac}")


def test_wireguard_full_tunnel_and_tailscale(build: Build) -> None:
    """wg-quick's full tunnel (table 51820, `not fwmark 51820`, `lookup main
    suppress_prefixlength 0`, its nftables table) and Tailscale's table 52 with rules
    5210-5270. Both VPNs keep working after apply; and the replies to connections that
    arrive on the uplinks, which wg-quick sends into the tunnel, leave by their uplink."""
    net = build(
        host_with(
            hosts=("vpn", "tsnet"),
            links=(
                Link(Port("server", "wg0"), Port("vpn", "wg0s")),
                Link(Port("server", "tailscale0"), Port("tsnet", "ts0")),
            ),
            addresses=(
                ("server", "wg0", "198.19.10.2/24"),
                ("vpn", "wg0s", "198.19.10.1/24"),
                ("vpn", "lo", "198.51.100.80/32"),  # a site reached through the tunnel
                ("server", "tailscale0", "198.19.100.1/32"),
                ("tsnet", "ts0", "198.19.100.2/32"),
            ),
        )
    )
    server, vpn, tsnet, client = (net.ns(h) for h in ("server", "vpn", "tsnet", "client"))
    _point_to_point(server, "wg0", vpn, "wg0s")
    _point_to_point(server, "tailscale0", tsnet, "ts0")
    # wg-quick up wg0 (AllowedIPs = 0.0.0.0/0), in its order and with its own commands
    sh(
        server,
        "-4 route add 0.0.0.0/0 dev wg0 table 51820",
        "-4 rule add not fwmark 51820 table 51820",
        "-4 rule add table main suppress_prefixlength 0",
    )
    subprocess.run(
        ["ip", "netns", "exec", server, "sysctl", "-qw", "net.ipv4.conf.all.src_valid_mark=1"],
        check=True,
    )
    nft(
        server,
        """
        add table ip wg-quick-wg0
        add chain ip wg-quick-wg0 preraw { type filter hook prerouting priority -300; }
        add chain ip wg-quick-wg0 premangle { type filter hook prerouting priority -150; }
        add chain ip wg-quick-wg0 postmangle { type filter hook postrouting priority -150; }
        add rule ip wg-quick-wg0 preraw iifname != "wg0" ip daddr 198.19.10.2 fib saddr type != local drop
        add rule ip wg-quick-wg0 postmangle meta l4proto udp mark 51820 ct mark set mark
        add rule ip wg-quick-wg0 premangle meta l4proto udp meta mark set ct mark
        """,
    )
    # tailscaled: its rules, table 52 (a peer and the quad-100 service), its nftables tables
    for family in ("-4", "-6"):
        sh(
            server,
            f"{family} rule add pref 5210 fwmark 0x80000/0xff0000 table main",
            f"{family} rule add pref 5230 fwmark 0x80000/0xff0000 table default",
            f"{family} rule add pref 5250 fwmark 0x80000/0xff0000 type unreachable",
            f"{family} rule add pref 5270 table 52",
        )
    sh(
        server,
        "route add 198.19.100.2 dev tailscale0 table 52",
        "route add 198.19.100.100 dev tailscale0 table 52",
        "-6 route add 2001:db8:7a::/48 dev tailscale0 table 52",
    )
    sh(tsnet, "route add 198.19.100.1 dev ts0")
    nft(
        server,
        """
        table ip ts-filter {
            chain ts-input {
                type filter hook input priority filter; policy accept;
                iifname "tailscale0" ip saddr 198.19.100.0/24 accept
            }
        }
        table ip ts-nat {
            chain ts-postrouting {
                type nat hook postrouting priority srcnat; policy accept;
                meta mark & 0x00ff0000 == 0x00040000 masquerade
            }
        }
        """,
    )
    servers = [TcpServer(vpn), TcpServer(tsnet), TcpServer(net.ns("server"))]

    def works() -> None:
        # the full tunnel: the internet through wg0, from wg0's address
        route = ip_json(server, "route", "get", "198.51.100.80")[0]
        assert (route["dev"], route["table"], route["prefsrc"]) == ("wg0", "51820", "198.19.10.2")
        assert fetch(server, ["198.51.100.80"], count=2) == {"198.51.100.80": 2}
        # WireGuard's own packets (fwmark 51820) leave by main's default route
        route = ip_json(server, "route", "get", "203.0.113.9", "mark", "51820")[0]
        assert route["dev"] == "eth0"
        # a Tailscale peer through table 52
        route = ip_json(server, "route", "get", "198.19.100.2")[0]
        assert (route["dev"], route["table"]) == ("tailscale0", "52")
        assert fetch(server, ["198.19.100.2"], count=2) == {"198.19.100.2": 2}

    for started in servers:
        started.__enter__()
    try:
        # The doctor's finding about eth0 is real: with wg-quick's rules, replies to the
        # connections that arrive on the uplinks go into the tunnel and are lost.
        assert fetch(client, ["192.0.2.10", "192.0.2.42"], count=1) == {
            "192.0.2.10": 0,
            "192.0.2.42": 0,
        }
        coexist(
            net,
            {
                "wg0": ("other", "veth with no default route: not an uplink"),
                "tailscale0": ("other", "veth with no default route: not an uplink"),
            },
            works,
            before=REAL_ASYMMETRY | {("asymmetric-reply", "192.0.2.10")},
        )
        multihome(server, "apply")
        assert fetch(client, ["192.0.2.10", "192.0.2.42"], count=1) == {
            "192.0.2.10": 1,
            "192.0.2.42": 1,
        }
        works()
    finally:
        for started in servers:
            started.__exit__()


def test_kubernetes_cni_bridge_flannel_and_kube_proxy_marks(build: Build) -> None:
    """A cni0 bridge with a pod, flannel's VXLAN device with a route to another node's pods,
    and kube-proxy's nftables table with its marks (0x4000 masquerade, 0x8000 drop): the
    pod's traffic is marked, masqueraded and reaches the internet."""
    net = build(
        host_with(
            hosts=("pod",),
            bridges=(("server", "cni0"),),
            links=(Link(Port("server", "veth9f2e", "cni0"), Port("pod", "eth0")),),
            addresses=(
                ("server", "cni0", "198.18.244.1/24"),
                ("pod", "eth0", "198.18.244.2/24"),
            ),
            routes=(("pod", "0.0.0.0/0", "198.18.244.1", "eth0", 0),),
            sysctls=(("server", "net/ipv4/ip_forward", "1"),),
        )
    )
    server, pod, client = net.ns("server"), net.ns("pod"), net.ns("client")
    sh(
        server,
        "link add flannel.1 type vxlan id 1 dev eth0 dstport 8472 nolearning",
        "addr add 198.18.245.0/32 dev flannel.1",
        "link set flannel.1 up",
        "route add 198.18.246.0/24 via 198.18.246.0 dev flannel.1 onlink",
    )
    nft(
        server,
        """
        table ip kube-proxy {
            chain mark-for-masquerade {
                meta mark set meta mark | 0x00004000
            }
            chain masquerading {
                type nat hook postrouting priority srcnat; policy accept;
                meta mark & 0x00004000 == 0x00000000 return
                meta mark set meta mark ^ 0x00004000
                masquerade fully-random
            }
            chain nat-prerouting {
                type nat hook prerouting priority dstnat; policy accept;
                ip saddr 198.18.244.0/24 ip daddr != 198.18.0.0/15 jump mark-for-masquerade
            }
            chain filter-forward {
                type filter hook forward priority filter; policy accept;
                meta mark & 0x00008000 == 0x00008000 drop
            }
        }
        """,
    )

    def works() -> None:
        assert fetch(pod, [CLIENT], count=2) == {CLIENT: 2}
        route = ip_json(server, "route", "get", "198.18.246.7")[0]
        assert route["dev"] == "flannel.1"

    with TcpServer(client):
        coexist(
            net,
            {
                "cni0": ("other", "bridge with no default route: not an uplink"),
                "veth9f2e": ("port", "port of cni0"),
                "flannel.1": ("other", "VXLAN overlay with no default route: not an uplink"),
            },
            works,
        )


def test_keepalived_virtual_address(build: Build) -> None:
    """A VRRP virtual address (/32) that keepalived adds to eth1 and removes again: it lies
    in eth1's subnet, which eth1's rules select already, so no rule changes; clients reach
    it through eth1's ISP (which drops replies from the wrong uplink) at once."""
    net = build(host_with())
    server, client = net.ns("server"), net.ns("client")
    vip = "192.0.2.50"

    def works() -> None:
        assert fetch(client, ["192.0.2.10"], count=1) == {"192.0.2.10": 1}

    def failover() -> None:  # this node becomes MASTER, then BACKUP again
        before = owned(server)
        sh(server, f"addr add {vip}/32 dev eth1")
        assert selects(server, vip, 1002)  # (alone on their subnets: no rule 1)
        assert fetch(client, [vip], count=2) == {vip: 2}
        code, found = doctor(server)
        assert (code, found) == (0, set())
        sh(server, f"addr del {vip}/32 dev eth1")
        assert owned(server) == before

    with TcpServer(server):
        coexist(net, {}, works, while_watching=failover)


def _router_advertisement(ns: str, ifname: str, prefixes: list[tuple[str, int, int]]) -> None:
    """One router advertisement on `ifname`, as radvd sends it: router lifetime 1800 s and,
    per prefix (prefix/64, valid, preferred lifetimes), on-link and autonomous (SLAAC)."""
    body = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0)
    for prefix, valid, preferred in prefixes:
        network = socket.inet_pton(socket.AF_INET6, prefix)
        body += struct.pack("!BBBBIII", 3, 4, 64, 0xC0, valid, preferred, 0) + network
    code = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_INET6,socket.SOCK_RAW,socket.IPPROTO_ICMPV6)\n"
        "s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_MULTICAST_HOPS,255)\n"
        "s.setsockopt(socket.SOL_SOCKET,socket.SO_BINDTODEVICE,sys.argv[1].encode())\n"
        "s.sendto(bytes.fromhex(sys.argv[2]),('ff02::1',0,0,socket.if_nametoindex(sys.argv[1])))\n"
    )
    subprocess.run(
        ["ip", "netns", "exec", ns, PY, "-c", code, ifname, body.hex()], check=True, timeout=10
    )


def test_ipv6_slaac_temporary_and_deprecated_addresses(build: Build) -> None:
    """eth1 configured by router advertisements (SLAAC) with privacy addresses
    (use_tempaddr=2) and an old prefix being phased out (preferred lifetime 0: its address
    is deprecated). IPv6 goes out by eth1 (eth0's static IPv6 default has a higher metric),
    so outgoing connections use eth1's temporary address; ISP 1 drops IPv6 from sources not
    its own, as ISPs should. Every one of these addresses gets source rules."""
    topology = host_with(
        sysctls=(
            ("server", "net/ipv6/conf/eth1/use_tempaddr", "2"),
            ("server", "net/ipv6/conf/eth1/accept_ra", "1"),
        )
    )
    topology = replace(
        topology,
        source_filters6=(),  # the nftables filter below is ISP 1's: it admits the old prefix
        addresses=tuple(
            a for a in topology.addresses if a != ("server", "eth1", "2001:db8:1::10/64")
        ),
        routes=tuple(
            (h, d, via, dev, 2000 if (h, d, dev) == ("server", "::/0", "eth0") else metric)
            for h, d, via, dev, metric in topology.routes
            if (h, d, dev) != ("server", "::/0", "eth1")
        ),
    )
    net = build(topology)
    server, isp1, client = net.ns("server"), net.ns("isp1"), net.ns("client")
    old = "2001:db8:1:d::"
    sh(isp1, f"-6 route add {old}/64 dev cust")
    sh(client, f"-6 route add {old}/64 via 2001:db8:ff::2")
    nft(
        isp1,
        """
        table ip6 antispoof {
            chain forward {
                type filter hook forward priority filter; policy accept;
                iifname "cust" ip6 saddr != { 2001:db8:1::/64, 2001:db8:1:d::/64 } drop
            }
        }
        """,
    )
    _router_advertisement(isp1, "cust", [("2001:db8:1::", 86400, 14400), (old, 3600, 0)])

    def slaac() -> dict[str, set[str]]:
        kinds: dict[str, set[str]] = {"temporary": set(), "deprecated": set(), "stable": set()}
        for entry in ip_json(server, "-6", "addr", "show", "dev", "eth1", "scope", "global"):
            for a in entry["addr_info"]:
                if "local" not in a:  # `ip -j` leaves the filtered-out addresses empty
                    continue
                kind = (
                    "temporary"
                    if a.get("temporary")
                    else "deprecated"
                    if a.get("deprecated")
                    else "stable"
                )
                kinds[kind].add(a["local"])
        return kinds

    wait_for(lambda: all(slaac().values()), 5)
    wait_for(lambda: any(r.get("protocol") == "ra" for r in ip_json(server, "-6", "route")), 5)
    kinds = slaac()
    (temporary,) = kinds["temporary"]
    (deprecated,) = kinds["deprecated"]
    (stable,) = kinds["stable"]
    assert deprecated.startswith("2001:db8:1:d:")
    before = {
        ("asymmetric-reply", "2001:db8::10"),  # eth0's IPv6 replies leave by eth1 now
        ("asymmetric-reply", "192.0.2.42"),
        ("several-defaults", None),
    }
    served = TcpServer(client)

    def works() -> None:
        code = (
            "import socket\n"
            "s=socket.create_connection(('2001:db8:ff::100',8080),timeout=2)\n"
            "print(s.getsockname()[0]); n=0\n"
            "while (d:=s.recv(65536)): n+=len(d)\n"
            "print(n)\n"
        )
        source, received = subprocess.run(
            ["ip", "netns", "exec", server, PY, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.split()
        assert source == temporary and int(received) > 0  # privacy address, as it should

    with served:
        coexist(net, {}, works, before=before)
        multihome(server, "apply")
        # the addresses outgoing connections use, and the deprecated one, are selected (by
        # eth1's route from its /64 in main: IPv6 needs no rule there)
        for address in (stable, temporary, deprecated):
            route = ip_json(server, "route", "get", "2001:db8:ff::100", "from", address)[0]
            assert route["dev"] == "eth1", route
    with TcpServer(server):  # connections to them are answered through eth1's ISP
        assert fetch(client, [temporary, deprecated], count=1) == {temporary: 1, deprecated: 1}
