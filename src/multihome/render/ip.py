"""PURE: changes as the equivalent `ip` and `sysctl` commands (the article's recipe, exact)."""

from __future__ import annotations

import shlex

from multihome.model import Action, Change, Route, Rule, Sysctl


def command(change: Change) -> str:
    """One shell command that makes this change."""
    obj = change.obj
    if isinstance(obj, Sysctl):
        return f"sysctl -w {shlex.quote(f'{obj.name}={obj.value}')}"
    verb = "add" if change.action is Action.ADD else "del"
    kind = "rule" if isinstance(obj, Rule) else "route"
    assert isinstance(obj, Rule | Route)
    args = " ".join(shlex.quote(word) for word in obj.ip_args().split())
    return f"ip -{obj.family.version} {kind} {verb} {args}"


def commands(changes: list[Change]) -> list[str]:
    return [command(c) for c in changes]
