"""PURE: the gateway lab network as a `Topology` (documentation ranges and 198.18.0.0/15).

A router with uplinks eth0..ethN-1, each on its own customer subnet (a /27 of 192.0.2.0/24)
behind its own ISP router that drops spoofed sources (rp_filter=1), one default route per
uplink as DHCP installs them, strict reverse-path filtering on the router itself (as RHEL
ships it), and forwarding on. A LAN client (198.18.0.10/24) sits behind the router's lan0; a
server on the "internet" (203.0.113.100/24) behind all ISPs.
"""

from __future__ import annotations

from multihome.lab.description import Link, Port, Topology
from multihome.lab.scenarios import router_sysctls

ROUTER, CLIENT, SERVER = "router", "client", "server"
SERVER_ADDRESS = "203.0.113.100"
CLIENT_ADDRESS = "198.18.0.10"


def uplink_address(i: int) -> str:
    return f"192.0.2.{32 * i + 10}"


def gateway(nics: int = 2) -> Topology:
    hosts = [ROUTER, CLIENT, "internet", SERVER] + [f"isp{i}" for i in range(nics)]
    links = [
        Link(Port(ROUTER, "lan0"), Port(CLIENT, "eth0")),
        Link(Port(SERVER, "eth0"), Port("internet", "sws", "br0")),
    ]
    addresses = [
        (ROUTER, "lan0", "198.18.0.1/24"),
        (CLIENT, "eth0", f"{CLIENT_ADDRESS}/24"),
        (SERVER, "eth0", f"{SERVER_ADDRESS}/24"),
    ]
    routes = [(CLIENT, "0.0.0.0/0", "198.18.0.1", "eth0", 0)]
    sysctls = router_sysctls(ROUTER, strict=True, ipv6=False)  # gateway mode is IPv4
    for i in range(nics):
        isp = f"isp{i}"
        base = 32 * i
        links += [
            Link(Port(ROUTER, f"eth{i}"), Port(isp, "cust")),
            Link(Port(isp, "up"), Port("internet", f"sw{i}", "br0")),
        ]
        addresses += [
            (ROUTER, f"eth{i}", f"{uplink_address(i)}/27"),
            (isp, "cust", f"192.0.2.{base + 1}/27"),
            (isp, "up", f"203.0.113.{i + 1}/24"),
        ]
        routes += [
            (ROUTER, "0.0.0.0/0", f"192.0.2.{base + 1}", f"eth{i}", 100 * (i + 1)),
            (SERVER, f"192.0.2.{base}/27", f"203.0.113.{i + 1}", "eth0", 0),
        ]
        sysctls += router_sysctls(isp, strict=True, ipv6=False)
    return Topology(
        name="gateway",
        hosts=tuple(hosts),
        bridges=(("internet", "br0"),),
        links=tuple(links),
        addresses=tuple(addresses),
        routes=tuple(routes),
        sysctls=tuple(sysctls),
        roles={"uplink_addresses": [uplink_address(i) for i in range(nics)]},
    )


CONFIG = """\
[gateway]
lan = ["lan0"]
"""


def uplinks_config(nics: int = 2, probes: bool = True) -> str:
    """The gateway lab's config with its uplinks named and their gateways (for `watch`, whose
    failover needs them), probing the server beyond the ISPs when `probes`."""
    lines = []
    for i in range(nics):
        lines += [f"[uplinks.eth{i}]", f'gateway = "192.0.2.{32 * i + 1}"']
        if probes:
            lines.append(f'probe = ["{SERVER_ADDRESS}"]')
    lines += ["[gateway]", 'lan = ["lan0"]']
    return "\n".join(lines) + "\n"


VM_BRIDGE = "virbr0"


def vm_host(nics: int = 2) -> Topology:
    """The same network with the router as a VM host instead: its LAN side is a bridge,
    virbr0 (as libvirt names it), whose port vnet0 leads to the VM (the client, 198.18.0.10);
    a port forward to the VM is the user's to add (no [gateway] config anywhere)."""
    from multihome.core.records import replace

    base = gateway(nics)
    links = tuple(
        Link(Port(ROUTER, "vnet0", VM_BRIDGE), link.b) if link.a == Port(ROUTER, "lan0") else link
        for link in base.links
    )
    addresses = tuple(
        (host, VM_BRIDGE if (host, ifname) == (ROUTER, "lan0") else ifname, address)
        for host, ifname, address in base.addresses
    )
    return replace(
        base,
        name="vm-host",
        bridges=(*base.bridges, (ROUTER, VM_BRIDGE)),
        links=links,
        addresses=addresses,
    )


def port_forward(ports: tuple[int, ...], nics: int = 2) -> list[list[str]]:
    """A hand-made port forward on the VM host to the VM, as libvirt's documentation shows
    it (iptables; iptables-nft on current distributions): DNAT of each port on each uplink,
    the FORWARD accept, and the VM's own way out (masquerade). The argv of each command."""
    commands = []
    for port in ports:
        for i in range(nics):
            commands.append(
                ["iptables", "-t", "nat", "-A", "PREROUTING", "-i", f"eth{i}", "-p", "tcp",
                 "--dport", str(port), "-j", "DNAT", "--to-destination",
                 f"{CLIENT_ADDRESS}:{port}"]
            )  # fmt: skip
        commands.append(
            ["iptables", "-A", "FORWARD", "-d", CLIENT_ADDRESS, "-p", "tcp", "--dport",
             str(port), "-j", "ACCEPT"]
        )  # fmt: skip
    commands.append(
        ["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "198.18.0.0/24", "!", "-d",
         "198.18.0.0/24", "-j", "MASQUERADE"]
    )  # fmt: skip
    return commands
