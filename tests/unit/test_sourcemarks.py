"""The nft form of source selection (sourcemarks.py): interleaved addresses of one subnet
over several NICs get one nft set per uplink and fwmark rules, not a rule per address."""

from __future__ import annotations

import ipaddress

from multihome.core import gateway, sourcemarks
from multihome.core.config import Config, parse
from multihome.core.model import TABLE_MAIN, Family, Ownership, Rule
from multihome.core.plan import plan
from multihome.core.records import replace
from multihome.kernel import nftables

from .hosts import host


def interleaved(count: int, v6: bool = False) -> dict[str, list[str]]:
    links: dict[str, list[str]] = {"eth0": [], "eth1": []}
    for i in range(count):
        text = f"2001:db8:b::{i + 1:x}/64" if v6 else str(ipaddress.IPv4Address(0xC6120001 + i))
        links[f"eth{i % 2}"].append(text if v6 else f"{text}/16")
    return links


def interleaved_host(count: int) -> object:
    return host(
        interleaved(count),
        [("eth0", "198.18.255.254", 100), ("eth1", "198.18.255.254", 200)],
    )


def test_interleaved_addresses_above_the_threshold_get_a_set_and_two_rules_per_uplink() -> None:
    desired = plan(Config(), interleaved_host(2000))  # type: ignore[arg-type]
    rules = sorted(desired.rules, key=lambda r: (r.priority, r.table))
    mask = Config().mark_mask
    assert [(r.priority, r.table, r.fwmark, r.suppress_prefixlen) for r in rules] == [
        (1000, 100, 0x01000000, 0),
        (1000, 101, 0x02000000, 0),
        (1001, TABLE_MAIN, None, 0),
        (1002, 100, 0x01000000, None),
        (1002, 101, 0x02000000, None),
    ]
    assert all(r.fwmask == mask for r in rules if r.fwmark is not None)
    layout = desired.gateway
    assert layout is not None and layout.sources is not None and not layout.marks
    sets = {s.name: s for s in layout.sources.sets}
    assert sorted(sets) == ["src4_1", "src4_2"]
    assert len(sets["src4_1"].addresses) == len(sets["src4_2"].addresses) == 1000
    eth1 = desired.uplinks[1]
    assert eth1.source_sets == ("src4_2",) and eth1.sources == ()
    assert "nft set src4_2" in eth1.sources_why and "shared with eth0" in eth1.sources_why
    assert any(s.path == gateway.SRC_VALID_MARK and s.value == "1" for s in desired.sysctls)
    # the table: the sets, a route-type output chain and a prerouting chain that mark
    text = sourcemarks.script(layout)
    # (marked where the first lookup chose another device: then the kernel routes it again)
    assert (
        'oifname != "eth1" ip saddr @src4_2 meta mark set meta mark & 0xf0ffffff | 0x02000000'
        in text
    )
    assert "ip daddr @src4_2 meta mark set meta mark & 0xf0ffffff | 0x02000000" in text
    assert "type route hook output" in text
    # ... and an ARP table marking ARP requests for the addresses (strict rp_filter)
    assert "arp daddr ip @src4_2 meta mark set meta mark & 0xf0ffffff | 0x02000000" in text
    assert text.count("198.18.") == 2 * 2000  # every address once per table, as an element


def test_few_interleaved_addresses_keep_rules_and_no_table() -> None:
    desired = plan(Config(), interleaved_host(10))  # type: ignore[arg-type]
    assert desired.gateway is None
    assert all(r.fwmark is None for r in desired.rules)
    assert len(desired.rules) == 2 * 10 + 1


def test_the_fwmark_rules_are_gateway_modes_where_they_coincide() -> None:
    config = parse('[gateway]\nlan = ["lan0"]\n')
    state = host(
        {**interleaved(200), "lan0": ["192.0.2.1/24"]},
        [("eth0", "198.18.255.254", 100), ("eth1", "198.18.255.254", 200)],
        sysctls={"net/ipv4/ip_forward": "1"},
    )
    desired = plan(config, state)
    assert len(desired.rules) == len(set(desired.rules))
    marked = [r for r in desired.rules if r.fwmark is not None]
    assert sorted((r.priority, r.table) for r in marked) == [
        (1000, 100),
        (1000, 101),
        (1002, 100),
        (1002, 101),
    ]
    layout = desired.gateway
    assert layout is not None and layout.marks and layout.sources is not None
    assert "chain sources_out" in gateway.table_text(layout)
    assert [s.path for s in desired.sysctls].count(gateway.SRC_VALID_MARK) == 1


def test_ownership_owns_the_fwmark_rules_at_the_priorities_used_only() -> None:
    own = Ownership()
    rule1 = Rule(Family.INET6, 1000, 100, None, 0, 77, fwmark=0x01000000, fwmask=0x0F000000)
    rule3 = Rule(Family.INET, 1002, 100, None, None, 77, fwmark=0x01000000, fwmask=0x0F000000)
    assert own.owns_rule(rule1) and own.owns_rule(rule3)
    for other in (
        Rule(Family.INET, 1000, 100, None, None, 77, fwmark=1, fwmask=0x0F000000),
        Rule(Family.INET, 1002, 100, None, 0, 77, fwmark=1, fwmask=0x0F000000),
        Rule(Family.INET, 1001, 100, None, 0, 77, fwmark=1, fwmask=0x0F000000),
        Rule(Family.INET, 1000, 100, None, 0, 77, fwmark=1),
    ):
        assert not own.owns_rule(other)


def test_ipv6_privacy_addresses_interleaved_get_an_ipv6_set() -> None:
    state = host(
        interleaved(100, v6=True),
        [("eth0", "2001:db8:b::fffe", 100), ("eth1", "2001:db8:b::fffe", 200)],
    )
    desired = plan(Config(), state)
    layout = desired.gateway
    assert layout is not None and layout.sources is not None
    assert sorted(s.name for s in layout.sources.sets) == ["src6_1", "src6_2"]
    assert "ip6 saddr @src6_1" in gateway.table_text(layout)
    assert all(r.family is Family.INET6 for r in desired.rules)
    # no IPv4 set: no src_valid_mark either
    assert not any(s.path == gateway.SRC_VALID_MARK for s in desired.sysctls)


def test_an_address_added_changes_one_element_not_the_table() -> None:
    before = plan(Config(), interleaved_host(200)).gateway  # type: ignore[arg-type]
    after = plan(Config(), interleaved_host(201)).gateway  # type: ignore[arg-type]
    assert before is not None and after is not None
    assert gateway.comment(before) == gateway.comment(after)
    live = sourcemarks.elements(before.sources)
    listed = f'table inet multihome {{\n\tcomment "{gateway.comment(before)}"\n}}'
    table = nftables.Table(True, listed, gateway.shape(before), "", live)
    change = nftables.change_for(after, table)
    assert change is not None
    assert change.script() == (
        "add element inet multihome src4_1 { 198.18.0.201 }\n"
        "add element arp multihome src4_1 { 198.18.0.201 }\n"
    )
    assert change.inverse() == (
        "delete element inet multihome src4_1 { 198.18.0.201 }\n"
        "delete element arp multihome src4_1 { 198.18.0.201 }\n"
    )
    assert nftables.change_for(before, table) is None


def test_an_uplink_with_a_configured_gateway_marks_every_packet_from_its_set() -> None:
    """main may route by the uplink's device through another gateway than the one the
    config names: then the first lookup's device says nothing, and every packet is marked."""
    config = parse('[uplinks.eth0]\n[uplinks.eth1]\ngateway = "198.18.255.253"\n')
    state = interleaved_host(200)
    text = gateway.table_text(plan(config, state).gateway)  # type: ignore[arg-type]
    assert 'oifname != "eth0" ip saddr @src4_1 meta mark' in text
    assert "\t\tip saddr @src4_2 meta mark" in text


def test_the_netlink_check_asks_for_multihomes_own_table() -> None:
    from multihome.kernel import nfnetlink

    assert nfnetlink.TABLE == gateway.TABLE


def test_inbound_pinning_and_source_sets_share_one_table() -> None:
    """A Docker host with interleaved addresses: the pinning part and the sets in one table
    (the sets were left out of a table without a LAN side, and the elements that followed
    made nft refuse the whole transaction)."""
    desired = plan(Config(), interleaved_host(2000))  # type: ignore[arg-type]
    layout = desired.gateway
    assert layout is not None and layout.sources is not None
    marks = tuple((u.name, gateway.mark(layout.mask, i + 1)) for i, u in enumerate(desired.uplinks))
    pinned = replace(layout, lan=(), marks=marks, masquerade=False, pin_forwarded=True)
    text = gateway.table_text(pinned)
    assert "chain forward {" in text  # the pinning
    assert "set src4_1 {" in text and "set src4_2 {" in text  # the sets
    shape = gateway.shape(pinned)
    assert "set src4_2" in shape and "chain forward" in shape


def test_an_uplink_in_a_set_keeps_it_down_to_half_the_threshold() -> None:
    """No switch of form on each address that comes and goes at the threshold: an uplink
    an nft set selects now keeps it while it needs more than THRESHOLD // 2 prefixes; one
    with rules moves only above THRESHOLD."""
    threshold = sourcemarks.THRESHOLD
    above = plan(Config(), interleaved_host(4 * threshold))  # type: ignore[arg-type]
    in_sets = [r for r in above.rules if r.fwmark is not None]
    assert {s.uplink for s in above.gateway.sources.sets} == {"eth0", "eth1"}  # type: ignore[union-attr]
    # the addresses go down to 48 alternating, 24 prefixes per uplink: between the limits
    fewer = host(
        interleaved(threshold + 16),
        [("eth0", "198.18.255.254", 100), ("eth1", "198.18.255.254", 200)],
    )
    fresh = plan(Config(), fewer)
    assert fresh.gateway is None and not any(r.fwmark for r in fresh.rules)  # rules form
    kept = plan(Config(), replace(fewer, rules=tuple(in_sets)))
    assert kept.gateway is not None and kept.gateway.sources is not None
    assert {s.uplink for s in kept.gateway.sources.sets} == {"eth0", "eth1"}
    assert "kept while more than 16 (it took more than 32)" in kept.uplinks[0].sources_why
    assert not any(r.src for r in kept.rules)
    # at half the threshold or fewer (32 alternating, 16 per uplink), back to rules
    fewest = host(
        interleaved(threshold),
        [("eth0", "198.18.255.254", 100), ("eth1", "198.18.255.254", 200)],
    )
    back = plan(Config(), replace(fewest, rules=tuple(in_sets)))
    assert back.gateway is None and {r.priority for r in back.rules if r.src} == {1000, 1002}


def test_the_set_is_kept_for_rules_the_stack_brings_back_and_not_for_strangers() -> None:
    """After `multihome install` and a reboot the stack's own copies (proto static) are the
    nft form's rules: they keep the set too; a fwmark rule with another mark does not."""
    from multihome.core.model import layout_key

    threshold = sourcemarks.THRESHOLD
    above = plan(Config(), interleaved_host(4 * threshold))  # type: ignore[arg-type]
    in_sets = [r for r in above.rules if r.fwmark is not None]
    fewer = host(
        interleaved(threshold + 16),
        [("eth0", "198.18.255.254", 100), ("eth1", "198.18.255.254", 200)],
    )
    stack = tuple(replace(r, protocol=4) for r in in_sets)
    config = Config()
    installed = replace(
        config, ownership=replace(config.ownership, installed=frozenset(map(layout_key, stack)))
    )
    kept = plan(installed, replace(fewer, rules=stack))
    assert kept.gateway is not None and kept.gateway.sources is not None
    assert {s.uplink for s in kept.gateway.sources.sets} == {"eth0", "eth1"}
    assert plan(config, replace(fewer, rules=stack)).gateway is None  # not installed: foreign
    strangers = tuple(replace(r, fwmark=r.fwmark ^ 0x04000000) for r in in_sets if r.fwmark)
    assert plan(config, replace(fewer, rules=strangers)).gateway is None
