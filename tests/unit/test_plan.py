from __future__ import annotations

import ipaddress

import pytest

from multihome.core.config import Config, parse
from multihome.core.model import TABLE_MAIN, Desired, Family, GatewaySource, HostState, Route, Rule
from multihome.core.plan import plan
from multihome.core.records import replace
from multihome.errors import ConfigError

from .hosts import host

ARTICLE = host(
    {"eth0": ["192.0.2.10/24"], "eth1": ["192.0.2.11/24"]},
    defaults=[("eth0", "192.0.2.1", 0)],
)
TWO_ISP = host(
    {
        "eth0": ["192.0.2.10/27", "2001:db8::10/64"],
        "eth1": ["192.0.2.42/27", "2001:db8:1::10/64"],
    },
    defaults=[
        ("eth0", "192.0.2.1", 100),
        ("eth1", "192.0.2.33", 200),
        ("eth0", "fe80::1", 100),
        ("eth1", "fe80::1", 200),
    ],
)


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


def test_article_layout() -> None:
    desired = plan(Config(), ARTICLE)
    eth0, eth1 = desired.uplinks
    assert (eth0.name, eth0.table, eth1.name, eth1.table) == ("eth0", 100, "eth1", 101)
    assert eth0.source4 is GatewaySource.DHCP  # hosts.py gives main's defaults proto dhcp
    assert eth1.source4 is GatewaySource.SHARED_SUBNET
    assert str(eth1.gateway4) == "192.0.2.1"
    assert desired.rules == (
        Rule(Family.INET, 1000, 100, net("192.0.2.10/32"), 0, 77),
        Rule(Family.INET, 1000, 101, net("192.0.2.11/32"), 0, 77),
        Rule(Family.INET, 1001, TABLE_MAIN, None, 0, 77),
        Rule(Family.INET, 1002, 100, net("192.0.2.10/32"), None, 77),
        Rule(Family.INET, 1002, 101, net("192.0.2.11/32"), None, 77),
    )
    on_link = Route(
        Family.INET,
        101,
        net("192.0.2.0/24"),
        dev="eth1",
        prefsrc=ipaddress.ip_address("192.0.2.11"),
        scope=253,
        protocol=77,
    )
    default = Route(
        Family.INET,
        101,
        net("0.0.0.0/0"),
        dev="eth1",
        gateway=ipaddress.ip_address("192.0.2.1"),
        protocol=77,
    )
    assert on_link in desired.routes and default in desired.routes
    assert {s.path: s.value for s in desired.sysctls} == {
        "net/ipv4/conf/eth0/arp_ignore": "1",
        "net/ipv4/conf/eth0/arp_announce": "2",
        "net/ipv4/conf/eth1/arp_ignore": "1",
        "net/ipv4/conf/eth1/arp_announce": "2",
    }


def test_two_isps_each_default_route_any_metric_and_ipv6() -> None:
    desired = plan(Config(), TWO_ISP)
    gateways = {u.name: (str(u.gateway4), str(u.gateway6)) for u in desired.uplinks}
    assert gateways == {"eth0": ("192.0.2.1", "fe80::1"), "eth1": ("192.0.2.33", "fe80::1")}
    # where they came from: DHCP (proto dhcp) and router advertisements (proto ra)
    assert {(u.source4, u.source6) for u in desired.uplinks} == {
        (GatewaySource.DHCP, GatewaySource.RA)
    }
    six = [r for r in desired.routes if r.family is Family.INET6]
    assert all(r.metric == 1024 for r in six)  # what the kernel reports for IPv6
    # IPv6, each alone on its prefix: a route from it in main, no table and no rule
    assert {(str(r.dst), str(r.source), r.table, r.dev, str(r.gateway)) for r in six} == {
        ("::/0", "2001:db8::/64", TABLE_MAIN, "eth0", "fe80::1"),
        ("::/0", "2001:db8:1::/64", TABLE_MAIN, "eth1", "fe80::1"),
    }
    # and one rule per prefix, `from P lookup main`, ahead of anyone's suppress rule
    assert {(r.priority, str(r.src), r.table) for r in desired.rules if r.family is Family.INET6} == {
        (1002, "2001:db8::/64", TABLE_MAIN),
        (1002, "2001:db8:1::/64", TABLE_MAIN),
    }
    # planned again on the host it built: the same (main is nobody's table, however many
    # of multihome's routes it holds)
    built = replace(TWO_ISP, routes=TWO_ISP.routes + desired.routes, rules=desired.rules)
    again = plan(Config(), built)
    assert again.routes == desired.routes and again.rules == desired.rules
    assert [u.table for u in again.uplinks] == [100, 101]
    wide = parse("[multihome]\ntable_range = [1000, 1099]\n")
    first = plan(wide, TWO_ISP)
    built = replace(TWO_ISP, routes=TWO_ISP.routes + first.routes, rules=first.rules)
    assert plan(wide, built).routes == first.routes
    # someone else's route from eth1's prefix in main: eth1 keeps its table and rules
    theirs = Route(
        Family.INET6,
        TABLE_MAIN,
        ipaddress.ip_network("::/0"),
        dev="eth1",
        gateway=ipaddress.ip_address("fe80::2"),
        protocol=3,
        metric=1024,
        source=ipaddress.ip_network("2001:db8:1::/64"),
    )
    mixed = plan(Config(), replace(TWO_ISP, routes=(*TWO_ISP.routes, theirs)))
    assert {(r.dev, r.table) for r in mixed.routes if r.family is Family.INET6 and r.is_default} == {
        ("eth1", 101)
    }
    assert [r.dev for r in mixed.routes if r.source is not None] == ["eth0"]
    inside = replace(theirs, source=ipaddress.ip_network("2001:db8:1::5/128"))  # (it would win)
    nested = plan(Config(), replace(TWO_ISP, routes=(*TWO_ISP.routes, inside)))
    assert [r.dev for r in nested.routes if r.source is not None and r.protocol == 77] == ["eth0"]
    # ... but the copy the stack brings back after `multihome install` is this layout's
    from multihome.core.model import layout_key

    copy = replace(next(r for r in desired.routes if r.dev == "eth1" and r.source), protocol=4)
    installed = replace(Config().ownership, installed=frozenset({layout_key(copy)}))
    kept = plan(replace(Config(), ownership=installed), replace(TWO_ISP, routes=(*TWO_ISP.routes, copy)))
    assert [r.dev for r in kept.routes if r.source is not None] == ["eth0", "eth1"]
    assert desired.uplinks[0].sources_why == "its subnet; IPv6: a route in main, no table"
    # with balancing (its rule after main's suppress rule would take their replies) or a
    # prefix shared with another NIC, IPv6 keeps the tables and rules
    balanced = plan(parse("[multihome]\nbalance = true\n"), TWO_ISP)
    assert not [r for r in balanced.routes if r.source is not None]
    assert Rule(Family.INET6, 1001, TABLE_MAIN, None, 0, 77) in balanced.rules
    # so does a config for a kernel without IPV6_SUBTREES: IPv6 as IPv4, a table each
    tables = plan(parse("[multihome]\nipv6_source_routes = false\n"), TWO_ISP)
    assert not [r for r in tables.routes if r.source is not None]
    assert {(r.dev, r.table) for r in tables.routes if r.family is Family.INET6 and r.is_default} == {
        ("eth0", 100),
        ("eth1", 101),
    }
    assert {(r.priority, str(r.src), r.table) for r in tables.rules if r.family is Family.INET6} == {
        (1001, "None", TABLE_MAIN),
        (1002, "2001:db8::/64", 100),
        (1002, "2001:db8:1::/64", 101),
    }
    assert tables.uplinks[0].sources_why == "its subnet"
    assert desired.sysctls == ()  # different subnets: no ARP flux, nothing to set


def test_uplink_without_gateway_gets_rule_1_only_on_a_shared_subnet() -> None:
    state = host(
        {"eth0": ["192.0.2.10/24"], "eth1": ["198.51.100.10/24"]},
        defaults=[("eth0", "192.0.2.1", 0)],
    )
    assert plan(Config(), state).uplinks == ()  # detected: eth1 leads to no gateway
    desired = plan(parse("[uplinks.eth0]\n[uplinks.eth1]\n"), state)  # named: an uplink
    # alone on its subnet: main's route there is its own, so not even rule 1
    assert [r for r in desired.rules if r.table == 101] == []
    assert [str(r.dst) for r in desired.routes if r.table == 101] == ["198.51.100.0/24"]
    assert any("eth1: no IPv4 gateway" in n for n in desired.notes)
    # on a subnet shared with eth0: rule 1 for its address, and no rule 3
    state = host(
        {"eth0": ["192.0.2.10/24"], "eth1": ["198.51.100.10/24", "192.0.2.11/24"]},
        defaults=[("eth0", "192.0.2.1", 0)],
    )
    desired = plan(parse("[uplinks.eth0]\n[uplinks.eth1]\n"), state)
    eth1_rules = [r for r in desired.rules if r.table == 101 and r.priority == 1000]
    assert [str(r.src) for r in eth1_rules] == ["192.0.2.11/32", "198.51.100.0/24"]


def test_an_uplink_alone_on_its_subnets_needs_no_on_link_rule() -> None:
    """Main's own route to a subnet no other interface holds leaves by the uplink already:
    rule 1 there would only cost every lookup a table more (bench/bench_datapath.py)."""
    state = host(
        {"eth0": ["192.0.2.10/24"], "eth1": ["198.51.100.10/24"]},
        defaults=[("eth0", "192.0.2.1", 0), ("eth1", "198.51.100.1", 100)],
    )
    desired = plan(Config(), state)
    assert {(r.priority, str(r.src), r.table) for r in desired.rules} == {
        (1001, "None", TABLE_MAIN),
        (1002, "192.0.2.0/24", 100),
        (1002, "198.51.100.0/24", 101),
    }
    shared = host(
        {"eth0": ["192.0.2.10/24"], "eth1": ["192.0.2.11/24"]},
        defaults=[("eth0", "192.0.2.1", 0)],
    )
    on_link = {(str(r.src), r.table) for r in plan(Config(), shared).rules if r.priority == 1000}
    assert on_link == {("192.0.2.10/32", 100), ("192.0.2.11/32", 101)}


def test_main_routing_part_of_an_uplinks_subnet_elsewhere_keeps_rule_1() -> None:
    """Alone by its addresses is not enough: where main sends part of the subnet another
    way (wg-quick's /32 of a peer, a VPN's route to the LAN), or holds no route to it by
    the uplink (noprefixroute), the uplink's on-link replies need rule 1 as before."""
    defaults = [("eth0", "192.0.2.1", 0), ("eth1", "198.51.100.1", 100)]
    links = {"eth0": ["192.0.2.10/24"], "eth1": ["198.51.100.10/24"], "wg0": ["198.18.9.1/32"]}

    def on_link(state: HostState) -> set[int]:
        return {r.table for r in plan(Config(), state).rules if r.priority == 1000}

    assert on_link(host(links, defaults)) == set()
    peer = Route(Family.INET, TABLE_MAIN, ipaddress.ip_network("198.51.100.50/32"), dev="wg0")
    assert on_link(host(links, defaults, routes=(peer,))) == {101}
    vpn = Route(
        Family.INET, TABLE_MAIN, ipaddress.ip_network("192.0.2.0/24"), dev="wg0", metric=50
    )
    assert on_link(host(links, defaults, routes=(vpn,))) == {100}
    via = Route(
        Family.INET,
        TABLE_MAIN,
        ipaddress.ip_network("192.0.2.128/25"),
        dev="eth1",
        gateway=ipaddress.ip_address("198.51.100.1"),
    )
    assert on_link(host(links, defaults, routes=(via,))) == {100}
    wider = Route(Family.INET, TABLE_MAIN, ipaddress.ip_network("192.0.0.0/16"), dev="wg0")
    assert on_link(host(links, defaults, routes=(wider,))) == set()  # the /24 wins over it
    to_gateway = Route(Family.INET, TABLE_MAIN, ipaddress.ip_network("192.0.2.1/32"), dev="eth0")
    assert on_link(host(links, defaults, routes=(to_gateway,))) == set()  # (DHCP's, by eth0)
    state = host(links, defaults)
    no_prefix_route = replace(
        state, routes=tuple(r for r in state.routes if str(r.dst) != "198.51.100.0/24")
    )
    assert on_link(no_prefix_route) == {101}


def test_single_homed_host_needs_nothing() -> None:
    desired = plan(Config(), host({"eth0": ["192.0.2.10/24"]}, [("eth0", "192.0.2.1", 0)]))
    assert desired.rules == () and desired.routes == ()
    assert "single-homed" in desired.notes[0]


def test_loopback_down_links_and_bridge_ports_are_not_uplinks() -> None:
    from multihome.core.records import replace

    state = host({"eth0": ["192.0.2.10/24"], "eth1": ["192.0.2.11/24"], "eth2": ["192.0.2.12/24"]})
    interfaces = tuple(
        replace(i, up=False)
        if i.name == "eth1"
        else replace(i, master=9)
        if i.name == "eth2"
        else i
        for i in state.interfaces
    )
    desired = plan(Config(), replace(state, interfaces=interfaces))
    assert desired.uplinks == ()


def test_tables_skip_foreign_ones_and_keep_existing_assignment() -> None:
    foreign = Route(Family.INET, 100, net("203.0.113.0/24"), dev="eth0", protocol=4)
    owned_eth1 = Route(
        Family.INET,
        105,
        net("0.0.0.0/0"),
        dev="eth1",
        gateway=ipaddress.ip_address("192.0.2.1"),
        protocol=77,
    )
    state = host(
        {"eth0": ["192.0.2.10/24"], "eth1": ["192.0.2.11/24"]},
        defaults=[("eth0", "192.0.2.1", 0)],
        routes=(foreign, owned_eth1),
        rules=(Rule(Family.INET, 50, 101, None, None, 4),),  # a foreign rule uses 101
    )
    tables = {u.name: u.table for u in plan(Config(), state).uplinks}
    assert tables == {"eth0": 102, "eth1": 105}


def test_config_uplinks_gateway_table_and_families() -> None:
    config = parse(
        '[uplinks.eth0]\ntable = 110\n[uplinks.eth1]\ngateway = "192.0.2.33"\nipv6 = false\n',
        "m.toml",
    )
    desired = plan(config, TWO_ISP)
    eth0, eth1 = sorted(desired.uplinks, key=lambda u: u.name)
    assert eth0.table == 110 and eth1.table == 100
    assert eth1.source4 is GatewaySource.CONFIG and eth1.gateway6 is None
    assert all(r.family is Family.INET for r in desired.routes if r.table == 100)


def test_config_errors_need_the_host() -> None:
    with pytest.raises(
        ConfigError,
        match=r"m.toml:2: uplinks.eth1.gateway: gateway 192.0.2.1 is not on eth1's subnet",
    ):
        plan(parse('[uplinks.eth1]\ngateway = "192.0.2.1"\n', "m.toml"), TWO_ISP)
    with pytest.raises(ConfigError, match=r"m.toml:1: uplinks.wlan9: no interface named"):
        plan(parse("[uplinks.wlan9]\n", "m.toml"), TWO_ISP)
    foreign = Route(Family.INET, 120, net("203.0.113.0/24"), dev="eth0", protocol=4)
    state = host({"eth0": ["192.0.2.10/24"]}, routes=(foreign,))
    with pytest.raises(ConfigError, match="table 120 already holds routes"):
        plan(parse("[uplinks.eth0]\ntable = 120\n", "m.toml"), state)


def test_rp_filter_is_loosened_only_when_asked() -> None:
    assert not [s for s in plan(Config(), TWO_ISP).sysctls if "rp_filter" in s.path]
    loose = plan(parse('[sysctls]\nrp_filter = "loose"\n'), TWO_ISP)
    assert {s.path for s in loose.sysctls if s.value == "2"} == {
        "net/ipv4/conf/eth0/rp_filter",
        "net/ipv4/conf/eth1/rp_filter",
    }


def test_slash_32_addresses_get_no_on_link_route() -> None:
    state = host(
        {"eth0": ["192.0.2.10/32"], "eth1": ["192.0.2.11/24"]},
        defaults=[("eth0", "192.0.2.1", 0), ("eth1", "192.0.2.1", 10)],
    )
    desired = plan(Config(), state)
    assert [str(r.dst) for r in desired.routes if r.dev == "eth0"] == ["0.0.0.0/0"]


def test_balancing_route_over_healthy_uplinks_by_weight() -> None:
    config = parse(
        "[multihome]\nbalance = true\n[uplinks.eth0]\nweight = 3\n[uplinks.eth1]\n", "m.toml"
    )
    desired = plan(config, TWO_ISP)

    def balancing(d: Desired, family: Family) -> list[Route]:
        return [r for r in d.routes if r.table == 199 and r.family is family]

    (route4,) = balancing(desired, Family.INET)
    (route6,) = balancing(desired, Family.INET6)
    assert route4.is_default and route6.is_default
    assert [(h.dev, str(h.gateway), h.weight) for h in route4.nexthops] == [
        ("eth0", "192.0.2.1", 3),
        ("eth1", "192.0.2.33", 1),
    ]
    assert [(h.dev, str(h.gateway), h.weight) for h in route6.nexthops] == [
        ("eth0", "fe80::1", 3),
        ("eth1", "fe80::1", 1),
    ]
    assert route6.metric == 1024  # what the kernel reads back for an IPv6 route
    assert Rule(Family.INET, 1003, 199, None, None, 77) in desired.rules
    assert Rule(Family.INET6, 1003, 199, None, None, 77) in desired.rules
    assert {s.path: s.value for s in desired.sysctls} == {
        "net/ipv4/fib_multipath_hash_policy": "1",
        "net/ipv6/fib_multipath_hash_policy": "1",
    }
    # a dead uplink leaves the balancing route; its table and source rules stay
    degraded = plan(config, TWO_ISP, down=frozenset({"eth0"}))
    (route,) = balancing(degraded, Family.INET)
    assert route.nexthops == () and route.dev == "eth1"
    assert balancing(degraded, Family.INET6) == [route6]  # IPv6 health is its own
    assert [r for r in degraded.rules if r.table == 100] == [
        r for r in desired.rules if r.table == 100
    ]
    # ... and the same per IPv6
    degraded6 = plan(config, TWO_ISP, down6=frozenset({"eth1"}))
    (route,) = balancing(degraded6, Family.INET6)
    assert route.nexthops == () and (route.dev, str(route.gateway)) == ("eth0", "fe80::1")
    assert balancing(degraded6, Family.INET) == [route4]
    assert not balancing(plan(config, TWO_ISP, frozenset({"eth0", "eth1"})), Family.INET)
    assert not balancing(plan(config, TWO_ISP, down6=frozenset({"eth0", "eth1"})), Family.INET6)


def test_sysctls_carry_their_interface() -> None:
    desired = plan(parse("[multihome]\nbalance = true\n", "m.toml"), ARTICLE)
    assert {s.path: s.interface for s in desired.sysctls} == {
        "net/ipv4/conf/eth0/arp_ignore": "eth0",
        "net/ipv4/conf/eth0/arp_announce": "eth0",
        "net/ipv4/conf/eth1/arp_ignore": "eth1",
        "net/ipv4/conf/eth1/arp_announce": "eth1",
        "net/ipv4/fib_multipath_hash_policy": None,
    }


def test_every_namespace_wide_sysctl_the_plan_sets_is_read_by_discover() -> None:
    """diff compares a wanted sysctl with the value discover read: one that discover does not
    read would be passed over without a word (the IPv6 hash policy once was)."""
    from multihome.core import gateway
    from multihome.core.plan import MULTIPATH_HASH
    from multihome.kernel import discover

    wanted = {*MULTIPATH_HASH.values(), gateway.SRC_VALID_MARK, gateway.CT_ACCOUNTING}
    assert wanted <= set(discover.GLOBAL_KEYS)


def test_rules_an_older_install_persisted_are_named_in_a_note() -> None:
    """A host installed with the layout before rule 1 went for uplinks alone on their
    subnets: the stack brings the old rule 1 back at each boot; the plan says to reinstall."""
    from multihome.core.model import layout_key

    old = Rule(Family.INET, 1000, 100, ipaddress.ip_network("192.0.2.0/27"), 0, 4)
    desired = plan(Config(), TWO_ISP)
    keys = {layout_key(r) for r in desired.rules} | {layout_key(r) for r in desired.routes}
    current = replace(Config().ownership, installed=frozenset(keys))
    assert not any("persisted" in n for n in plan(replace(Config(), ownership=current), TWO_ISP).notes)
    older = replace(current, installed=frozenset({*keys, layout_key(old)}))
    (note,) = [n for n in plan(replace(Config(), ownership=older), TWO_ISP).notes if "persisted" in n]
    assert note.startswith("1 rules that `multihome install` persisted are not in this plan")


def test_multihome_owns_only_its_routes_from_a_prefix_in_main() -> None:
    from multihome.core.model import Ownership

    own = Ownership()
    source = ipaddress.ip_network("2001:db8::/64")
    ours = Route(Family.INET6, TABLE_MAIN, ipaddress.ip_network("::/0"), dev="eth0", protocol=77, source=source)
    assert own.owns_route(ours)
    assert not own.owns_route(replace(ours, source=None))  # main's own default, proto 77 or not
    assert not own.owns_route(replace(ours, protocol=9))  # the RA's, from a prefix or not
    assert not ours.is_default and replace(ours, source=None).is_default
    assert ours.ip_args().startswith("default from 2001:db8::/64 dev eth0 table main")
