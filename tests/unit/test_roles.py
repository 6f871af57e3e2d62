"""What an uplink is (plan.roles), and a doctor that looks only at uplinks and prescribes
`multihome apply` only where apply changes the finding. No kernel."""

from __future__ import annotations

import ipaddress

from multihome.core.config import Config, parse
from multihome.core.diff import diff
from multihome.core.doctor import diagnose, off_link_targets, probes
from multihome.core.model import (
    TABLE_MAIN,
    Family,
    HostState,
    IPAddress,
    Lookup,
    Route,
    Rule,
)
from multihome.core.plan import Role, plan, roles, uplink_names
from multihome.core.records import replace

from .hosts import host
from .test_plan import TWO_ISP


def ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


def busy_host() -> HostState:
    """Two ISPs (eth0, eth1), a second NIC on eth0's switch (eth2), and what Docker,
    libvirt, WireGuard, Tailscale and a spare NIC on another subnet add."""
    state = host(
        {
            "eth0": ["192.0.2.10/27", "2001:db8::10/64"],
            "eth1": ["192.0.2.42/27"],
            "eth2": ["192.0.2.11/27"],
            "eth3": ["198.51.100.10/24"],
            "docker0": ["198.18.0.1/24"],
            "veth4a1c": [],
            "virbr0": ["198.18.122.1/24"],
            "wg0": ["198.19.10.2/24"],
            "tailscale0": ["198.19.100.1/32"],
        },
        defaults=[("eth0", "192.0.2.1", 100), ("eth1", "192.0.2.33", 200)],
        routes=(
            Route(Family.INET, 51820, Family.INET.any, dev="wg0"),
            Route(Family.INET6, TABLE_MAIN, Family.INET6.any, dev="eth0", gateway=ip("fe80::1")),
        ),
    )
    kinds = {"docker0": "bridge", "virbr0": "bridge", "veth4a1c": "veth", "wg0": "wireguard"}
    docker0 = next(i.index for i in state.interfaces if i.name == "docker0")
    interfaces = tuple(
        replace(
            i,
            kind=kinds.get(i.name, "tun" if i.name == "tailscale0" else ""),
            master=docker0 if i.name == "veth4a1c" else None,
            up=i.name != "virbr0",  # libvirt's network not started
        )
        for i in state.interfaces
    )
    return replace(state, interfaces=interfaces)


def test_only_interfaces_that_lead_to_a_gateway_are_uplinks() -> None:
    found = roles(Config(), busy_host())
    assert found == {
        "lo": (Role.LOOPBACK, "loopback"),
        "eth0": (Role.UPLINK, "default route via 192.0.2.1, fe80::1"),
        "eth1": (Role.UPLINK, "default route via 192.0.2.33"),
        "eth2": (Role.UPLINK, "shares 192.0.2.0/27 with eth0, which has a default route"),
        "eth3": (Role.OTHER, "interface with no default route: not an uplink"),
        "docker0": (Role.OTHER, "bridge with no default route: not an uplink"),
        "veth4a1c": (Role.PORT, "port of docker0"),
        "virbr0": (Role.OTHER, "bridge with no default route: not an uplink"),
        "wg0": (Role.OTHER, "WireGuard tunnel with no default route: not an uplink"),
        "tailscale0": (Role.OTHER, "tun/tap device with no default route: not an uplink"),
    }
    desired = plan(Config(), busy_host())
    assert [u.name for u in desired.uplinks] == ["eth0", "eth1", "eth2"]
    assert not [n for n in desired.notes if "no IPv4 gateway" in n]


def test_a_default_route_of_any_family_and_metric_makes_an_uplink() -> None:
    state = host(
        {"eth0": ["192.0.2.10/24"], "eth1": ["198.51.100.10/24", "2001:db8:1::10/64"]},
        defaults=[("eth0", "192.0.2.1", 0), ("eth1", "fe80::1", 4000)],
    )
    assert uplink_names(roles(Config(), state)) == ["eth0", "eth1"]


def test_the_config_decides_whatever_the_interface_is() -> None:
    config = parse("[uplinks.eth0]\n[uplinks.docker0]\n[uplinks.virbr0]\n", "m.toml")
    found = roles(config, busy_host())
    assert found["docker0"] == (Role.UPLINK, "named in the config")
    assert found["eth1"] == (Role.OTHER, "not in the config's [uplinks]: not managed")
    assert found["virbr0"] == (
        Role.LEFT_OUT,
        "named in the config, but the link is down: left out until it is up",
    )
    desired = plan(config, busy_host())
    assert [u.name for u in desired.uplinks] == ["eth0", "docker0"]
    assert "virbr0: named in the config, but the link is down" in desired.notes[0]


def test_a_docker_host_with_one_isp_is_single_homed() -> None:
    state = host(
        {"eth0": ["192.0.2.10/24"], "docker0": ["198.18.0.1/24"]},
        defaults=[("eth0", "192.0.2.1", 0)],
    )
    assert plan(Config(), state).rules == ()
    assert diagnose(state, {}, plan(Config(), state), [], ["eth0"]).notes == (
        "single-homed: one uplink, routing is symmetric",
    )


def test_the_doctor_probes_only_uplinks() -> None:
    state = busy_host()
    uplinks = uplink_names(roles(Config(), state))
    sources = {str(src) for _, src in probes(state, uplinks)}
    assert sources == {"192.0.2.10", "2001:db8::10", "192.0.2.42", "192.0.2.11"}


def test_the_off_link_target_is_routed_by_main_default_route() -> None:
    state = busy_host()
    assert off_link_targets(state) == {
        Family.INET: ip("203.0.113.254"),
        Family.INET6: ip("2001:db8:ffff::1"),
    }
    specific = (
        Route(Family.INET, TABLE_MAIN, ipaddress.ip_network("203.0.113.0/24"), dev="eth0"),
        Route(Family.INET, 52, ipaddress.ip_network("198.51.100.0/24"), dev="tailscale0"),
        Route(Family.INET6, 52, ipaddress.ip_network("2001:db8:ffff::/48"), dev="tailscale0"),
    )
    covered = replace(state, routes=state.routes + specific)
    # 198.51.100.254 is routed by table 52, 192.0.2.254 is on eth0's subnet: the first gap
    assert off_link_targets(covered) == {
        Family.INET: ip("192.0.2.254"),
        Family.INET6: ip("2001:db8:fffe::1"),
    }
    everything = replace(
        state,
        routes=state.routes
        + tuple(
            Route(Family.INET, TABLE_MAIN, ipaddress.ip_network(n), dev="tun0")
            for n in ("0.0.0.0/1", "128.0.0.0/1")  # an OpenVPN client's def1
        ),
    )
    assert Family.INET not in off_link_targets(everything)
    assert Family.INET not in off_link_targets(replace(state, routes=state.routes[2:]))


def test_the_first_gap_when_all_documentation_addresses_are_covered() -> None:
    state = busy_host()
    wide = tuple(
        Route(Family.INET, TABLE_MAIN, ipaddress.ip_network(n), dev="eth3")
        for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "1.0.0.0/24")
    )
    assert off_link_targets(replace(state, routes=state.routes + wide))[Family.INET] == ip(
        "1.0.1.0"
    )


def lookups(
    state: HostState, uplinks: list[str], dev: str, table: int = 254
) -> dict[tuple[IPAddress, IPAddress], Lookup]:
    return {(d, s): Lookup(d, s, dev=dev, table=table) for d, s in probes(state, uplinks)}


def test_apply_is_prescribed_only_where_it_changes_the_finding() -> None:
    # eth1 named in the config without a gateway: apply steers only on-link replies
    state = host(
        {"eth0": ["192.0.2.10/24"], "eth1": ["198.51.100.10/24"]},
        defaults=[("eth0", "192.0.2.1", 0)],
    )
    config = parse("[uplinks.eth0]\n[uplinks.eth1]\n", "m.toml")
    desired = plan(config, state)
    report = diagnose(
        state,
        lookups(state, ["eth0", "eth1"], "eth0"),
        desired,
        diff(desired, state),
        ["eth0", "eth1"],
    )
    (reply,) = [f for f in report.findings if f.check == "asymmetric-reply"]
    assert reply.fix.startswith("name eth1's IPv4 gateway in the config ([uplinks.eth1] gateway")
    # the ARP sysctls are not multihome's to set when [sysctls] arp = false
    seed = host({"eth0": ["192.0.2.10/24"], "eth1": ["192.0.2.11/24"]}, [("eth0", "192.0.2.1", 0)])
    no_arp = parse("[sysctls]\narp = false\n", "m.toml")
    desired = plan(no_arp, seed)
    (flux,) = [
        f
        for f in diagnose(seed, {}, desired, diff(desired, seed), ["eth0", "eth1"]).findings
        if f.check == "arp-flux"
    ]
    assert flux.fix.startswith("sysctl -w net.ipv4.conf.eth0.arp_ignore=1")


def test_a_rule_before_multihome_s_is_named_instead_of_apply() -> None:
    """Applied, but a VPN's rule (wg-quick started after multihome: its rule took priority
    999) still sends the replies into the tunnel: apply would change nothing."""
    desired = plan(Config(), TWO_ISP)
    vpn_rule = Rule(Family.INET, 999, 51820, None, None, 0, other_selectors=True)
    applied = replace(
        TWO_ISP,
        rules=(*desired.rules, vpn_rule),
        routes=TWO_ISP.routes
        + desired.routes
        + (Route(Family.INET, 51820, Family.INET.any, dev="wg0"),),
    )
    uplinks = ["eth0", "eth1"]
    owner = {a.ip.ip: a.ifname for a in applied.addresses}
    answers = {
        (d, s): Lookup(d, s, dev="wg0", table=51820)
        if d == ip("203.0.113.254")
        else Lookup(d, s, dev=owner[s], table=100)
        for d, s in probes(applied, uplinks)
    }
    report = diagnose(applied, answers, desired, diff(desired, applied), uplinks)
    fixes = {f.fix for f in report.findings if f.check == "asymmetric-reply"}
    assert fixes == {
        "rule `pref 999 from all lookup 51820 proto 0` comes before multihome's rules"
        " (priority 1000): set [multihome] priority below it in the config and run"
        " multihome apply"
    }
