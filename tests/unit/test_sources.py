"""The source prefixes that select an uplink's traffic (sources.py), and the rule layout the
planner builds from them: a rule count that follows the uplinks and subnets, not the
addresses."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from multihome.core.config import Config
from multihome.core.diff import diff
from multihome.core.model import (
    TABLE_MAIN,
    Action,
    HostState,
    Rule,
)
from multihome.core.plan import plan
from multihome.core.sources import covering_prefixes

from .hosts import host

net = ipaddress.ip_network


def v4(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def test_a_subnet_of_one_uplinks_addresses_is_selected_whole() -> None:
    own = [v4(f"198.18.0.{n}") for n in range(10, 210)]
    assert covering_prefixes([net("198.18.0.0/24")], own, [v4("198.18.1.5")]) == [
        net("198.18.0.0/24")
    ]


def test_interleaved_addresses_are_selected_one_by_one_and_runs_together() -> None:
    # eth0 holds .10, .11 and .12-.15; eth1 holds .9 and .16
    own = [v4("192.0.2.10"), v4("192.0.2.11"), *(v4(f"192.0.2.{n}") for n in range(12, 16))]
    others = [v4("192.0.2.9"), v4("192.0.2.16")]
    assert covering_prefixes([net("192.0.2.0/24")], own, others) == [
        net("192.0.2.10/31"),
        net("192.0.2.12/30"),
    ]
    alternating_own = [v4(f"192.0.2.{n}") for n in range(10, 20, 2)]
    alternating_theirs = [v4(f"192.0.2.{n}") for n in range(11, 21, 2)]
    found = covering_prefixes([net("192.0.2.0/24")], alternating_own, alternating_theirs)
    assert found == [net(f"192.0.2.{n}/32") for n in range(10, 20, 2)]  # each /31 is shared


def test_an_address_held_twice_is_left_out_and_networks_may_nest() -> None:
    assert covering_prefixes([net("192.0.2.0/24")], [v4("192.0.2.10")], [v4("192.0.2.10")]) == []
    nested = covering_prefixes(
        [net("192.0.2.0/24"), net("192.0.0.0/16")], [v4("192.0.2.10"), v4("192.0.5.1")], []
    )
    assert nested == [net("192.0.0.0/16")]


addresses = st.lists(st.integers(0, 255), unique=True, min_size=1, max_size=40)


@settings(max_examples=300)
@given(addresses, st.integers(0, 255), st.sampled_from([24, 25, 26, 28]))
def test_the_prefixes_hold_every_own_address_no_other_and_are_the_fewest(
    hosts: list[int], split: int, length: int
) -> None:
    base = v4("198.18.0.0")
    own = [base + h for h in hosts if h < split]
    others = [base + h for h in hosts if h >= split]
    networks = [net(f"198.18.0.{k}/{length}") for k in range(0, 256, 1 << (32 - length))]
    found = covering_prefixes(networks, own, others)
    inside = [p for p in found if any(p.subnet_of(n) for n in networks)]  # type: ignore[arg-type]
    assert inside == found
    for address in own:
        assert sum(ipaddress.IPv4Address(address) in p for p in found) == 1
    for address in others:
        assert not any(ipaddress.IPv4Address(address) in p for p in found)
    # the fewest: each prefix's parent would hold another's address or leave its network
    for prefix in found:
        parent = prefix.supernet()
        assert any(ipaddress.IPv4Address(a) in parent for a in others) or not any(
            parent.subnet_of(n)  # type: ignore[arg-type]
            for n in networks
        )


def _host(addresses: dict[str, list[str]], gateways: dict[str, str]) -> HostState:
    """The addresses with the kernel's routes to their subnets, and a default route per
    uplink in main (metric 100, 200, ...)."""
    return host(
        addresses,
        [(name, gateway, 100 * (i + 1)) for i, (name, gateway) in enumerate(sorted(gateways.items()))],
    )


def test_400_addresses_on_two_nics_with_their_own_subnets_need_3_rules() -> None:
    state = _host(
        {
            "eth0": [f"198.18.0.{n}/24" for n in range(1, 201)],
            "eth1": [f"198.18.1.{n}/24" for n in range(1, 201)],
        },
        {"eth0": "198.18.0.254", "eth1": "198.18.1.254"},
    )
    desired = plan(Config(), state)
    assert len(desired.rules) == 3  # (alone on their subnets: no on-link rule)
    assert {(r.priority, str(r.src), r.table) for r in desired.rules} == {
        (1001, "None", TABLE_MAIN),
        (1002, "198.18.0.0/24", 100),
        (1002, "198.18.1.0/24", 101),
    }
    eth0 = desired.uplinks[0]
    assert eth0.sources == (net("198.18.0.0/24"),)
    assert eth0.sources_why == "its subnet"


def test_a_host_with_rules_per_address_moves_to_prefixes_without_a_gap() -> None:
    """The new rules go in before the old ones go, when their tables keep their routes."""
    state = _host(
        {"eth0": ["198.18.0.1/24", "198.18.0.2/24"], "eth1": ["198.18.1.1/24"]},
        {"eth0": "198.18.0.254", "eth1": "198.18.1.254"},
    )
    desired = plan(Config(), state)
    old_rules = tuple(
        Rule(a.family, priority, 100 if a.ifname == "eth0" else 101, net(f"{a.ip.ip}/32"), suppress, 77)
        for a in state.addresses
        for priority, suppress in ((1000, 0), (1002, None))
    )
    applied = HostState(
        interfaces=state.interfaces,
        addresses=state.addresses,
        routes=state.routes + desired.routes,
        rules=(*old_rules, *(r for r in desired.rules if r.src is None)),
    )
    changes = diff(desired, applied)
    actions = [(c.action, c.obj) for c in changes]
    adds = [i for i, (action, _) in enumerate(actions) if action is Action.ADD]
    deletes = [i for i, (action, _) in enumerate(actions) if action is Action.DELETE]
    assert {o for a, o in actions if a is Action.DELETE} == set(old_rules)
    assert len(adds) == 2 and max(adds) < min(deletes)


def test_an_address_nested_in_an_uplinks_own_subnet_keeps_the_reason() -> None:
    state = _host(
        {"eth0": ["198.18.0.1/24", "198.18.0.9/32"], "eth1": ["198.18.1.1/24"]},
        {"eth0": "198.18.0.254", "eth1": "198.18.1.254"},
    )
    eth0 = plan(Config(), state).uplinks[0]
    assert (eth0.sources, eth0.sources_why) == ((net("198.18.0.0/24"),), "its subnet")
