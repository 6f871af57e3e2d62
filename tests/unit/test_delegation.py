"""Gateway mode for IPv6 without a kernel: the `delegated` key, and the plan's rules that send
each delegated prefix's traffic out by its own uplink (config, or learnt from the LAN)."""

from __future__ import annotations

import ipaddress

import pytest

from multihome.core import delegation
from multihome.core.config import parse
from multihome.core.model import TABLE_MAIN, Family, HostState, Route, Rule
from multihome.core.plan import plan
from multihome.core.records import replace
from multihome.errors import ConfigError
from tests.unit.hosts import host

A, B = ipaddress.ip_network("2001:db8:a::/48"), ipaddress.ip_network("2001:db8:b::/48")
CONFIG = """\
[uplinks.eth0]
delegated = ["2001:db8:a::/48"]
[uplinks.eth1]
delegated = ["2001:db8:b::/48"]
[gateway]
lan = ["lan0"]
"""
LEARN = '[gateway]\nlan = ["lan0"]\n'


def router(routes: tuple[Route, ...] = (), v6_defaults: int = 2) -> HostState:
    """Two WANs with IPv4 and only link-local IPv6 (a PD router's usual WAN), the LAN with an
    address from each delegated prefix and a ULA one."""
    defaults = [("eth0", "192.0.2.1", 100), ("eth1", "192.0.2.33", 200)]
    defaults += [("eth0", "fe80::1", 100), ("eth1", "fe80::2", 200)][:v6_defaults]
    lan = ["198.18.0.1/24", "2001:db8:a:1::1/64", "2001:db8:b:1::1/64", "fd00:1::1/64"]
    return host(
        {"eth0": ["192.0.2.10/27"], "eth1": ["192.0.2.42/27"], "lan0": lan},
        defaults=defaults,
        routes=routes,
        sysctls={"net/ipv4/ip_forward": "1", "net/ipv6/conf/all/forwarding": "1"},
    )


def unreachable(prefix: str) -> Route:
    """The route a PD client installs for its delegated prefix."""
    network = ipaddress.ip_network(prefix)
    return Route(Family.INET6, TABLE_MAIN, network, dev="lo", protocol=16, metric=1024, type=7)


def test_the_key_is_read_and_checked() -> None:
    config = parse(CONFIG, "m.toml")
    assert [u.delegated for u in config.uplinks] == [(A,), (B,)]
    for text, fragment in [
        ('[uplinks.eth0]\ndelegated = "2001:db8:a::/48"\n', "list of up to 8"),
        ('[uplinks.eth0]\ndelegated = ["192.0.2.0/24"]\n', "not an IPv6 prefix"),
        ('[uplinks.eth0]\ndelegated = ["2001:db8:a::1/48"]\n', "not an IPv6 prefix"),
        ('[uplinks.eth0]\ndelegated = ["2001:db8:a::/80"]\n', "a /64 or wider"),
        (
            '[uplinks.eth0]\ndelegated = ["2001:db8:a::/48"]\n'
            '[uplinks.eth1]\ndelegated = ["2001:db8:a:1::/64"]\n',
            "overlaps 2001:db8:a::/48 of uplink eth0",
        ),
    ]:
        with pytest.raises(ConfigError) as caught:
            parse(text, "m.toml")
        assert fragment in str(caught.value), str(caught.value)
        assert "delegated" in str(caught.value)


def test_each_delegated_prefix_leaves_by_its_uplink() -> None:
    desired = plan(parse(CONFIG, "m.toml"), router())
    tables = {u.name: u.table for u in desired.uplinks}
    own = desired.ownership
    sources = [r for r in desired.rules if r.family is Family.INET6]
    # host mode's main rule (the LAN's own routes win) comes before the prefixes' rules
    assert Rule(Family.INET6, own.priorities[1], TABLE_MAIN, None, 0, own.protocol) in sources
    assert [r for r in sources if r.src is not None] == [
        Rule(Family.INET6, own.priorities[2], tables["eth0"], A, None, own.protocol),
        Rule(Family.INET6, own.priorities[2], tables["eth1"], B, None, own.protocol),
    ]
    assert all(own.owns_rule(r) for r in sources)
    # the WANs have no global IPv6 address: their tables get the default route here
    defaults6 = {
        (r.table, r.dev, str(r.gateway))
        for r in desired.routes
        if r.family is Family.INET6 and r.is_default
    }
    assert defaults6 == {(tables["eth0"], "eth0", "fe80::1"), (tables["eth1"], "eth1", "fe80::2")}
    assert all(own.owns_route(r) for r in desired.routes)
    assert [(d.uplink, d.prefix, d.origin, d.lan) for d in desired.delegations] == [
        ("eth0", A, "config", (("lan0", ipaddress.ip_network("2001:db8:a:1::/64")),)),
        ("eth1", B, "config", (("lan0", ipaddress.ip_network("2001:db8:b:1::/64")),)),
    ]
    assert any(
        "delegated 2001:db8:a::/48 (config; lan0 2001:db8:a:1::/64)" in n for n in desired.notes
    )


def test_unknown_uplinks_are_named_in_the_plan() -> None:
    """Two IPv6 uplinks and no config: the PD client's unreachable routes give the prefixes,
    not the uplinks; plan says which prefix needs `delegated`. The ULA prefix is not one."""
    state = router(routes=(unreachable("2001:db8:a::/48"), unreachable("2001:db8:b::/48")))
    desired = plan(parse(LEARN, "m.toml"), state)
    assert desired.delegations == ()
    assert not [r for r in desired.rules if r.family is Family.INET6 and r.src is not None]
    unmapped = [n for n in desired.notes if "cannot be mapped" in n]
    assert len(unmapped) == 2
    assert "a PD client's unreachable route 2001:db8:a::/48" in unmapped[0]
    assert 'delegated = ["2001:db8:a::/48"]' in unmapped[0]
    assert 'delegated = ["2001:db8:b::/48"]' in unmapped[1]
    assert not any("fd00" in n for n in desired.notes)


def test_learnt_with_one_ipv6_uplink_and_the_rest_from_config() -> None:
    state = router(routes=(unreachable("2001:db8:b::/48"),), v6_defaults=1)
    found, notes = delegation.delegations(
        parse(LEARN, "m.toml"), state, list(plan(parse(LEARN, "m.toml"), state).uplinks)
    )
    assert [(d.uplink, str(d.prefix)) for d in found] == [
        ("eth0", "2001:db8:a:1::/64"),  # no PD route: its own /64
        ("eth0", "2001:db8:b::/48"),
    ]
    assert found[1].origin.startswith("learnt: a PD client's unreachable route 2001:db8:b::/48")
    assert notes == []
    # a partial config: the configured prefix is config's, the other one still unknown
    partial = '[uplinks.eth0]\ndelegated = ["2001:db8:a::/48"]\n[uplinks.eth1]\n' + LEARN
    desired = plan(parse(partial, "m.toml"), router())
    assert [(d.uplink, d.prefix) for d in desired.delegations] == [("eth0", A)]
    assert any("2001:db8:b:1::/64" in n and "cannot be mapped" in n for n in desired.notes)


def test_no_ipv6_gateway_no_rule() -> None:
    desired = plan(parse(CONFIG, "m.toml"), router(v6_defaults=1))
    assert [d.uplink for d in desired.delegations] == ["eth0"]
    assert any("eth1: no IPv6 gateway" in n for n in desired.notes)


def test_host_mode_plans_nothing_for_delegations() -> None:
    text = CONFIG.replace('[gateway]\nlan = ["lan0"]\n', "")
    desired = plan(parse(text, "m.toml"), router())
    assert desired.delegations == ()


def test_a_dead_uplinks_lan_prefixes_are_deprecated_in_a_drop_in() -> None:
    desired = plan(parse(CONFIG, "m.toml"), router())
    assert delegation.deprecated(desired.delegations, {"eth1"}) == [
        ipaddress.ip_network("2001:db8:b:1::/64")
    ]
    assert delegation.deprecated(desired.delegations, ()) == []
    text = delegation.dnsmasq_drop_in(delegation.deprecated(desired.delegations, {"eth1"}))
    assert text.splitlines()[-1] == "dhcp-range=2001:db8:b:1::,ra-only,64,deprecated"
    assert delegation.is_drop_in(text)
    assert not delegation.is_drop_in("dhcp-range=2001:db8:b:1::,ra-only,64,deprecated\n")
    assert not delegation.is_drop_in(text + "dhcp-script=/bin/evil\n")


def test_the_ra_config_keys() -> None:
    config = parse('[gateway]\nlan = ["lan0"]\nra_daemon = "dnsmasq"\n', "m.toml")
    assert config.gateway is not None and config.gateway.ra_daemon == "dnsmasq"
    assert config.gateway.ra_conf_dir == "/etc/dnsmasq.d"
    assert config.gateway.ra_restart == ("systemctl", "restart", "dnsmasq.service")
    radvd = parse('[gateway]\nlan = ["lan0"]\nra_daemon = "radvd"\n', "m.toml").gateway
    assert radvd is not None and radvd.ra_restart == ("systemctl", "reload", "radvd.service")
    assert radvd.ra_config == "/etc/radvd.conf"
    for text, fragment in [
        ('ra_daemon = "bird"\n', "gateway.ra_daemon"),
        ('ra_conf_dir = "etc/dnsmasq.d"\n', "absolute path"),
        ("ra_restart = []\n", "list of its words"),
        ('ra_restart = "systemctl restart dnsmasq"\n', "list of its words"),
    ]:
        with pytest.raises(ConfigError) as caught:
            parse('[gateway]\nlan = ["lan0"]\n' + text, "m.toml")
        assert fragment in str(caught.value), str(caught.value)


def test_npt_maps_the_ula_prefix_into_each_delegation_and_balances_it() -> None:
    inside = ipaddress.ip_network("fd00:1:0:5::/64")
    assert delegation.outside_prefix(inside, A) == ipaddress.ip_network("2001:db8:a:5::/64")
    assert delegation.outside_prefix(ipaddress.ip_network("fd00::/40"), A) is None
    config = parse(CONFIG + 'npt = ["fd00:1:0:5::/64"]\n', "m.toml")
    desired = plan(config, router())
    assert [(m.uplink, str(m.outside)) for m in desired.npt] == [
        ("eth0", "2001:db8:a:5::/64"),
        ("eth1", "2001:db8:b:5::/64"),
    ]
    own = desired.ownership
    assert (
        Rule(Family.INET6, own.priorities[2], own.balance_table, inside, None, own.protocol)
        in desired.rules
    )
    (route,) = [
        r for r in desired.routes if r.table == own.balance_table and r.family is Family.INET6
    ]
    assert [(h.dev, str(h.gateway)) for h in route.nexthops] == [
        ("eth0", "fe80::1"),
        ("eth1", "fe80::2"),
    ]
    # an uplink that died leaves the route; its NPT mapping stays (its flows' replies)
    dead = plan(config, router(), down=frozenset({"eth1"}))
    (route,) = [r for r in dead.routes if r.table == own.balance_table and r.family is Family.INET6]
    assert route.dev == "eth0" and not route.nexthops and len(dead.npt) == 2


def test_npt_chains_as_ip6tables_restore_takes_them() -> None:
    from multihome.core.model import NptMapping
    from multihome.kernel import npt

    mapping = (
        NptMapping(
            "eth0", ipaddress.ip_network("fd00:1::/64"), ipaddress.ip_network("2001:db8:a::/64")
        ),
    )
    text = npt.script(mapping, set(), set())
    assert "-I POSTROUTING 1 -j MULTIHOME-NPT-POST" in text.splitlines()
    assert (
        "-A MULTIHOME-NPT-POST -s fd00:1::/64 -o eth0 -j SNPT --src-pfx fd00:1::/64 --dst-pfx 2001:db8:a::/64"
        in text
    )
    removal = npt.script((), {npt.PRE, npt.POST, npt.RAW}, {npt.PRE, npt.POST, npt.RAW})
    assert "-X MULTIHOME-NPT-RAW" in removal and "-D POSTROUTING -j MULTIHOME-NPT-POST" in removal
    with pytest.raises(Exception, match="cannot take"):
        npt.rules((NptMapping("eth 0", mapping[0].inside, mapping[0].outside),))


def test_an_uplink_left_out_keeps_its_delegation_to_be_deprecated() -> None:
    """eth1's link is down: plan leaves it out, its prefix is not steered, and watch (and
    the doctor) count it dead, so the RA daemon announces its LAN prefix deprecated."""
    state = router()
    state = HostState(
        interfaces=tuple(replace(i, up=False) if i.name == "eth1" else i for i in state.interfaces),
        addresses=state.addresses,
        routes=state.routes,
        sysctls=state.sysctls,
    )
    desired = plan(parse(CONFIG, "m.toml"), state)
    assert [d.uplink for d in desired.delegations] == ["eth0", "eth1"]
    assert [str(r.src) for r in desired.rules if r.family is Family.INET6 and r.src] == [
        "2001:db8:a::/48"
    ]
    dead = delegation.dead_uplinks(desired, ())
    assert dead == {"eth1"}
    assert delegation.deprecated(desired.delegations, dead) == [
        ipaddress.ip_network("2001:db8:b:1::/64")
    ]


def dhcpv6_reply(*prefixes: str, valid: int = 7200) -> bytes:
    """A DHCPv6 REPLY as dhcpcd keeps it in IFNAME.lease6: a client id, then an IA_PD with
    an IAPREFIX per prefix."""
    import struct

    def option(code: int, value: bytes) -> bytes:
        return struct.pack("!HH", code, len(value)) + value

    inner = b"".join(
        option(26, struct.pack("!IIB", 3600, valid, n.prefixlen) + n.network_address.packed)
        for n in map(ipaddress.IPv6Network, prefixes)
    )
    ia_pd = option(25, struct.pack("!III", 1, 1800, 2880) + inner)
    return bytes([7, 1, 2, 3]) + option(1, b"\x00\x03\x00\x01" + bytes(6)) + ia_pd


def test_prefixes_from_a_dhcpcd_lease() -> None:
    assert delegation.dhcpv6_prefixes(dhcpv6_reply("2001:db8:b::/48")) == [B]
    assert delegation.dhcpv6_prefixes(dhcpv6_reply("2001:db8:b::/48", valid=0)) == []
    assert delegation.dhcpv6_prefixes(dhcpv6_reply("2001:db8:b:1:2::/80")) == []  # not a PD
    truncated = dhcpv6_reply("2001:db8:b::/48")[:-3]
    assert delegation.dhcpv6_prefixes(truncated) == []
    assert delegation.dhcpv6_prefixes(b"\x07") == []


def test_a_pd_clients_record_maps_the_lan_prefix_to_its_uplink() -> None:
    state = replace(router(routes=(unreachable("2001:db8:a::/48"),)), pd_records=(("eth1", B),))
    desired = plan(parse(LEARN, "m.toml"), state)
    assert [(d.uplink, d.prefix, d.origin) for d in desired.delegations] == [
        ("eth1", B, "learnt: eth1's DHCPv6 lease")
    ]
    assert any("2001:db8:a:1::/64" in n and "cannot be mapped" in n for n in desired.notes)


def test_a_lease_cannot_claim_a_wide_prefix_or_another_uplinks() -> None:
    """A DHCPv6 server's word is bounded: a lease wider than /32 (2000::/3) is not taken,
    so each LAN prefix keeps the uplink whose own lease delegated it."""
    wide = ipaddress.ip_network("2000::/3")
    state = replace(router(), pd_records=(("eth0", wide), ("eth1", B)))
    desired = plan(parse(LEARN, "m.toml"), state)
    assert ("eth1", B) in [(d.uplink, d.prefix) for d in desired.delegations]
    assert wide not in [d.prefix for d in desired.delegations]
