"""Property-based tests: hostile configs never crash the loader; the planner's output always
satisfies the rule layout's invariants."""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multihome.core.config import parse
from multihome.core.diff import diff
from multihome.core.model import TABLE_MAIN, Desired, Route, Rule
from multihome.core.plan import plan
from multihome.errors import ConfigError

from .hosts import host

NAMES = ["eth0", "eth1", "eth2", "ens5", "wlan0"]
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


values = st.one_of(
    st.booleans(),
    st.integers(min_value=-5, max_value=2**33),
    st.sampled_from(
        [
            "192.0.2.1",
            "198.51.100.1",
            "2001:db8::1",
            "fe80::1",
            "keep",
            "loose",
            "300.1.1.1",
            "",
            "eth0",
        ]
    ),
    st.text(max_size=12),
    st.lists(st.integers(min_value=0, max_value=300), max_size=3),
)
keys = st.sampled_from(
    [
        "gateway",
        "gateway6",
        "table",
        "weight",
        "ipv4",
        "ipv6",
        "gatway",
        "table_range",
        "priority",
        "arp",
        "rp_filter",
    ]
)
sections = st.sampled_from(
    [
        "multihome",
        "sysctls",
        "uplinks.eth0",
        "uplinks.eth1",
        'uplinks."eth0.100"',
        "uplink.eth0",
        "other",
    ]
)


@st.composite
def config_texts(draw: st.DrawFn) -> str:
    lines = []
    for section in draw(st.lists(sections, max_size=4, unique=True)):
        lines.append(f"[{section}]")
        for key in draw(st.lists(keys, max_size=4, unique=True)):
            lines.append(f"{key} = {toml_value(draw(values))}")
    return "\n".join(lines) + "\n"


@SETTINGS
@given(config_texts())
def test_generated_configs_load_or_fail_with_a_location(text: str) -> None:
    try:
        parse(text, "gen.toml")
    except ConfigError as error:
        assert str(error).startswith("gen.toml")
        if error.key:  # a located error names a key that is in the file, on its line
            assert error.line is not None, str(error)
            assert 1 <= error.line <= text.count("\n")


@SETTINGS
@given(st.text(max_size=200))
def test_arbitrary_text_never_crashes_the_loader(text: str) -> None:
    try:
        parse(text, "junk.toml")
    except ConfigError as error:  # the only way out: a located, explained error
        assert str(error).startswith("junk.toml")


@st.composite
def hosts_and_configs(draw: st.DrawFn) -> tuple[Any, str]:
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    subnets = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"]
    links: dict[str, list[str]] = {}
    defaults = []
    for name in names:
        net = ipaddress.ip_network(draw(st.sampled_from(subnets)))
        count = draw(st.integers(min_value=1, max_value=3))
        hosts = draw(
            st.lists(
                st.integers(min_value=2, max_value=250), min_size=count, max_size=count, unique=True
            )
        )
        links[name] = [f"{net.network_address + h}/24" for h in hosts]
        if draw(st.booleans()):
            links[name].append(f"2001:db8:{names.index(name)}::{draw(st.integers(2, 999))}/64")
        if draw(st.booleans()):
            defaults.append((name, str(net.network_address + 1), draw(st.integers(0, 500))))
    state = host(links, defaults)
    lines = []
    if draw(st.booleans()):
        low = draw(st.integers(min_value=1, max_value=200))
        lines += [
            "[multihome]",
            f"table_range = [{low}, {low + draw(st.integers(8, 40))}]",
            f"priority = {draw(st.integers(1, 30000))}",
        ]
    if draw(st.booleans()):
        for name in draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names))):
            lines.append(f"[uplinks.{name}]")
    return state, "\n".join(lines) + "\n"


def _check_layout(desired: Desired) -> None:
    own = desired.ownership
    tables = {u.table for u in desired.uplinks}
    assert len(tables) == len(desired.uplinks)  # one table per uplink
    assert all(own.table_min <= t <= own.table_max for t in tables)
    assert len(set(desired.rules)) == len(desired.rules)
    assert len(set(desired.routes)) == len(desired.routes)
    for rule in desired.rules:
        assert own.owns_rule(rule)
        assert rule.table in tables or (rule.table == TABLE_MAIN and rule.src is None)
        # every rule's table holds routes of the rule's family
        if rule.table != TABLE_MAIN:
            assert any(r.table == rule.table and r.family == rule.family for r in desired.routes)
    for route in desired.routes:
        assert own.owns_route(route) and route.table in tables
    for rule in desired.rules:  # band 3 only where the table has a default route
        if rule.priority == own.priorities[2]:
            assert any(
                r.table == rule.table and r.is_default and r.family == rule.family
                for r in desired.routes
            )


@SETTINGS
@given(hosts_and_configs())
def test_plans_satisfy_the_layout_and_converge(case: tuple[Any, str]) -> None:
    state, text = case
    try:
        config = parse(text, "gen.toml")
        desired = plan(config, state)
    except ConfigError:
        return
    _check_layout(desired)
    # applying the diff gives a state whose diff is empty (idempotence, on paper)
    from multihome.core.records import replace

    changes = diff(desired, state)
    after = replace(
        state,
        rules=state.rules + tuple(c.obj for c in changes if isinstance(c.obj, Rule)),
        routes=state.routes + tuple(c.obj for c in changes if isinstance(c.obj, Route)),
        sysctls={**state.sysctls, **{s.path: s.value for s in desired.sysctls}},
    )
    assert diff(desired, after) == []
