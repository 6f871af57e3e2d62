"""PURE: the ordered changes that turn the host's state into the desired one.

Only objects multihome owns (its protocol number inside its table range or priority band)
are ever deleted; everything else is invisible to the diff. The order keeps traffic flowing
while it runs: stale rules that point to a table about to change go first, routes before
the rules that use them, then the new rules, and only then the stale rules of tables that
keep their routes (a host moving from rules per address to rules per prefix always has one
or the other for each address); sysctls last.
"""

from __future__ import annotations

from collections.abc import Mapping

from multihome.core.model import (
    Action,
    Change,
    Desired,
    HostState,
    Route,
    Rule,
    Sysctl,
    layout_key,
)


def diff(
    desired: Desired, state: HostState, originals: Mapping[str, str] | None = None
) -> list[Change]:
    """Changes that make `state` match `desired`.

    `originals` are the values sysctls had before multihome first set them (from the state
    file); a sysctl that is no longer wanted is put back to its original value.
    """
    ownership = desired.ownership
    wanted_rules = set(desired.rules)
    wanted_routes = set(desired.routes)
    present_rules = set(state.rules)
    present_routes = set(state.routes)
    # What `multihome install` persisted is the stack's: it stands for the planned object
    # of the same key, and while nothing is planned (remove) it stays, whole, with its
    # tables; only a copy of it multihome made beside the stack's own goes.
    stack, duplicates = _installed(desired, state)
    keep = set(stack.values()) if not desired.rules and not desired.routes else set()

    # Default routes leave before on-link routes, so nothing depends on a route while it goes.
    stale_routes: list[Route] = sorted(
        (
            r
            for r in state.routes
            if ownership.owns_route(r)
            and (r in duplicates or (r not in wanted_routes and r not in keep))
        ),
        key=lambda r: (not r.is_default, r.table),
    )
    new_routes = [r for r in desired.routes if r not in present_routes and not _in(r, stack)]
    changing = {(r.family, r.table) for r in (*stale_routes, *new_routes)}
    kept_tables = {(r.family, r.table) for r in desired.rules} - changing
    stale_first: list[Change] = []
    stale_last: list[Change] = []
    for rule in state.rules:
        if ownership.owns_rule(rule) and (
            rule in duplicates or (rule not in wanted_rules and rule not in keep)
        ):
            kept = (rule.family, rule.table) in kept_tables
            (stale_last if kept else stale_first).append(Change(Action.DELETE, rule))
    changes: list[Change] = stale_first
    changes += [Change(Action.DELETE, r) for r in stale_routes]
    changes += [Change(Action.ADD, r) for r in new_routes]
    changes += [
        Change(Action.ADD, r)
        for r in desired.rules
        if r not in present_rules and not _in(r, stack)
    ]
    changes += stale_last
    changes += _sysctl_changes(desired.sysctls, state, originals or {})
    return changes


def _installed(
    desired: Desired, state: HostState
) -> tuple[dict[str, Rule | Route], set[Rule | Route]]:
    """The objects present that `multihome install` persisted, by layout key (the stack's
    own where both are there), and the copies multihome made of them beside the stack's
    (the same key under multihome's protocol: an apply before the stack came up)."""
    ownership = desired.ownership
    if not ownership.installed:
        return {}, set()
    stack: dict[str, Rule | Route] = {}
    ours: dict[str, Rule | Route] = {}
    present: list[Rule | Route] = [*state.rules, *state.routes]
    for obj in present:
        if ownership.is_installed(obj):
            key = layout_key(obj)
            mine = obj.protocol == ownership.protocol
            (ours if mine else stack)[key] = obj
    duplicates: set[Rule | Route] = {obj for key, obj in ours.items() if key in stack}
    return {**ours, **stack}, duplicates


def _in(obj: Rule | Route, stack: dict[str, Rule | Route]) -> bool:
    return bool(stack) and layout_key(obj) in stack


def _sysctl_changes(
    wanted: tuple[Sysctl, ...], state: HostState, originals: Mapping[str, str]
) -> list[Change]:
    changes = []
    wanted_paths = {s.path for s in wanted}
    for sysctl in wanted:
        current = state.sysctls.get(sysctl.path)
        if current is not None and current != sysctl.value:
            changes.append(Change(Action.SET, sysctl, current))
    for path, original in sorted(originals.items()):
        current = state.sysctls.get(path)
        if path not in wanted_paths and current is not None and current != original:
            changes.append(Change(Action.SET, Sysctl(path, original), current))
    return changes
