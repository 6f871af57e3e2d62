from __future__ import annotations

import ipaddress

from multihome.core.config import Config
from multihome.core.diff import diff
from multihome.core.model import Action, Desired, Family, HostState, Ownership, Route, Rule, Sysctl
from multihome.core.plan import plan
from multihome.core.records import replace

from .test_plan import ARTICLE


def _applied(state: HostState = ARTICLE) -> tuple[Desired, HostState]:
    """The host as it is after a successful apply."""
    desired = plan(Config(), state)
    return desired, replace(
        state,
        rules=state.rules + desired.rules,
        routes=state.routes + desired.routes,
        sysctls={**state.sysctls, **{s.path: s.value for s in desired.sysctls}},
    )


def test_fresh_host_gets_routes_before_rules_and_sysctls_last() -> None:
    changes = diff(plan(Config(), ARTICLE), ARTICLE)
    kinds = [type(c.obj).__name__ for c in changes]
    assert kinds == ["Route"] * 4 + ["Rule"] * 5 + ["Sysctl"] * 4
    assert all(c.action is Action.ADD for c in changes[:9])
    sysctl = changes[9].obj
    assert isinstance(sysctl, Sysctl) and changes[9].previous == "0" and sysctl.value == "1"


def test_applied_host_needs_no_change() -> None:
    desired, state = _applied()
    assert diff(desired, state, {s.path: "0" for s in desired.sysctls}) == []


def test_foreign_objects_are_never_deleted() -> None:
    desired, state = _applied()
    foreign = (
        Rule(Family.INET, 1000, 100, None, 0, 4),  # in the band, other protocol
        Rule(Family.INET, 1001, 150, None, None, 77, other_selectors=True),  # fwmark rule
        Rule(Family.INET, 5, 100, None, None, 77),  # our protocol, outside the band
    )
    state = replace(state, rules=state.rules + foreign)
    removal = diff(Desired(Ownership()), state)
    # exactly what the apply created goes, and nothing else (checked against the plan, not
    # against the diff's own output)
    assert {c.obj for c in removal} == set(desired.rules) | set(desired.routes)
    assert len(removal) == 9 and all(c.action is Action.DELETE for c in removal)
    assert [type(c.obj).__name__ for c in removal] == ["Rule"] * 5 + ["Route"] * 4
    routes = [c.obj for c in removal[5:7]]
    assert all(isinstance(r, Route) and r.is_default for r in routes)  # defaults go first


def test_remove_restores_original_sysctls_and_inverse_undoes() -> None:
    desired, state = _applied()
    originals = {s.path: "0" for s in desired.sysctls}
    restore = [c for c in diff(Desired(Ownership()), state, originals) if c.action is Action.SET]
    sysctls = [(c.obj, c.previous) for c in restore if isinstance(c.obj, Sysctl)]
    assert {(s.path, s.value, previous) for s, previous in sysctls} == {
        (s.path, "0", s.value) for s in desired.sysctls
    }
    undo = restore[0].inverse()
    assert undo.obj == Sysctl(sysctls[0][0].path, sysctls[0][1] or "")
    add = diff(desired, ARTICLE)[0]
    assert add.inverse().action is Action.DELETE and add.inverse().inverse() == add


def test_changed_gateway_replaces_only_the_default_route() -> None:
    desired, state = _applied()
    moved = replace(
        state,
        routes=tuple(
            replace(r, gateway=ipaddress.ip_address("192.0.2.254"))
            if r.protocol == 77 and r.is_default and r.dev == "eth1"
            else r
            for r in state.routes
        ),
    )
    changes = diff(desired, moved, {s.path: "0" for s in desired.sysctls})
    assert [c.describe() for c in changes] == [
        "- route -4 default via 192.0.2.254 dev eth1 table 101 proto 77",
        "+ route -4 default via 192.0.2.1 dev eth1 table 101 proto 77",
    ]


def test_what_is_owned_after_the_changes_is_what_a_second_read_would_find() -> None:
    """The state file's listing without reading the kernel again: from a fresh host (only
    additions), for a remove (only deletions), and a stale rule of ours among the rest."""
    from multihome.host.operations import owned_after

    config = Config()
    desired, applied = _applied()
    adding = tuple(diff(desired, ARTICLE))
    rules, routes = owned_after(config, ARTICLE, adding)
    owned_rules, owned_routes = config.ownership.owned(applied)
    assert (set(rules), set(routes)) == (set(owned_rules), set(owned_routes))
    assert len(rules) == len(set(rules)) and len(routes) == len(set(routes))
    assert owned_after(config, applied, tuple(diff(Desired(Ownership()), applied))) == ([], [])
    stale = Rule(Family.INET, 1000, 100, ipaddress.ip_network("192.0.2.99/32"), 0, 77)
    drifted = replace(applied, rules=(*applied.rules, stale))
    cleanup = tuple(diff(desired, drifted))
    assert [c.action for c in cleanup] == [Action.DELETE] and cleanup[0].obj == stale
    assert owned_after(config, drifted, cleanup) == (owned_rules, owned_routes)
