"""PURE: the plan as `ip`/`sysctl` commands: changes for `plan --format ip`, and a whole
idempotent script for `export --format ip`."""

from __future__ import annotations

import shlex

from multihome.core.model import TABLE_MAIN, Action, Change, Desired, Route, Rule, Sysctl
from multihome.render import (
    HEADER,
    Options,
    Rendered,
    dynamic_gateway_notes,
    source_set_notes,
)


def command(change: Change) -> str:
    """One shell command that makes this change."""
    obj = change.obj
    if isinstance(obj, Sysctl):
        return sysctl_command(obj, "-w")
    verb = "add" if change.action is Action.ADD else "del"
    kind = "rule" if isinstance(obj, Rule) else "route"
    assert isinstance(obj, Rule | Route)
    return f"ip -{obj.family.version} {kind} {verb} {args(obj)}"


def args(obj: Rule | Route) -> str:
    """The object's `ip` arguments, quoted for a shell."""
    return " ".join(shlex.quote(word) for word in obj.ip_args().split())


def sysctl_command(sysctl: Sysctl, flags: str) -> str:
    """A shell command that sets the sysctl: `sysctl -w KEY=VALUE`, which takes the key
    literally (no glob); for an interface whose name holds `=`, which `sysctl` would split
    the key at, the file under /proc/sys is written instead."""
    if "=" in sysctl.path:
        return f"echo {shlex.quote(sysctl.value)} > {shlex.quote('/proc/sys/' + sysctl.path)}"
    return f"sysctl {flags} {shlex.quote(f'{sysctl.name}={sysctl.value}')}"


def route_up(route: Route) -> list[str]:
    """The `ip route` lines that put a route in place: replaced in multihome's tables; in main
    (an IPv6 route from a prefix) deleted as multihome's and added, since the kernel's replace
    would take another owner's route from the same prefix, whatever its protocol."""
    v = route.family.version
    if route.table != TABLE_MAIN:
        return [f"ip -{v} route replace {args(route)}"]
    return [
        f"ip -{v} route del {args(route)} 2>/dev/null || true",
        f"ip -{v} route add {args(route)} || echo"
        f' "multihome: another route from {route.source} is in main: left as it is" >&2',
    ]


def commands(changes: list[Change]) -> list[str]:
    return [command(c) for c in changes]


def script(desired: Desired, options: Options) -> Rendered:
    """A script that brings any state to the plan and can run again: routes are replaced,
    rules deleted before they are added."""
    lines = ["#!/bin/sh", f"# {HEADER}", "set -e", ""]
    for route in desired.routes:
        lines += route_up(route)
    for rule in desired.rules:
        v = rule.family.version
        lines.append(f"ip -{v} rule del {args(rule)} 2>/dev/null || true")
        lines.append(f"ip -{v} rule add {args(rule)}")
    for sysctl in desired.sysctls:
        lines.append(sysctl_command(sysctl, "-qw"))
    if desired.gateway is not None:  # multihome's nftables table, replaced whole (with the
        from multihome.core import sourcemarks  # elements of its source sets, if any)

        lines += ["nft -f - <<'EOF'", sourcemarks.script(desired.gateway) + "EOF"]
    return Rendered(
        {"multihome.sh": "\n".join(lines) + "\n"},
        tuple(dynamic_gateway_notes(desired) + source_set_notes(desired)),
    )
