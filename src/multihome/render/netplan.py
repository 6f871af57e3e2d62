"""PURE: netplan YAML (DIR/90-multihome.yaml) that merges with the host's own netplan files.

netplan's routing-policy cannot express suppress_prefixlength, so the first two rule bands
(on-link replies, and main's specific routes first) are left to multihome.service (the
systemd format); the tables and the off-link source rules are netplan's. Its `mark` key takes
no mask, so gateway mode's `fwmark V/M` rules are left to multihome.service too; the nftables
table goes in multihome.nft with its own unit, as for the other stacks.
"""

from __future__ import annotations

import json
import re

from multihome.core.model import SCOPE_LINK, Desired, Route, Rule, Uplink
from multihome.errors import MultihomeError
from multihome.render import (
    HEADER,
    Options,
    Rendered,
    balancing_notes,
    dynamic_gateway_notes,
    gateway_files,
    source_set_notes,
    uplink_routes,
    uplink_rules,
)

# netplan refuses IDs with glob characters or outside ASCII, and networkd (which it writes
# them into as `Name=`) would read a backslash as an escape.
UNSAFE = re.compile(r"[*?\[\]\\]|[^\x21-\x7e]")


def key(name: str) -> str:
    """An interface name as a YAML key: double-quoted, so `&a`, `*x`, `#x` or `a: b` are the
    name and not an anchor, alias, comment or mapping (a JSON string is a YAML one)."""
    if UNSAFE.search(name):
        raise MultihomeError(
            f"netplan cannot express the interface name {name!r} (it refuses glob characters"
            " and non-ASCII names, and networkd would read a backslash as an escape)",
            hint="rename the interface, or export/install the networkd or systemd format",
        )
    return json.dumps(name)


# netplan's section for an interface of each rtnetlink kind: a definition must stay in the
# section the host's own netplan file gave it ("changes device type" otherwise)
SECTIONS = {"bond": "bonds", "vlan": "vlans", "bridge": "bridges"}
ORDER = ("ethernets", "bonds", "bridges", "vlans")


def render(desired: Desired, options: Options) -> Rendered:
    lines = [f"# {HEADER}", "network:", "  version: 2"]
    persisted: list[Rule | Route] = []
    by_section: dict[str, list[Uplink]] = {}
    for uplink in desired.uplinks:
        section = SECTIONS.get(options.kinds.get(uplink.name, ""), "ethernets")
        by_section.setdefault(section, []).append(uplink)
    for section in sorted(by_section, key=ORDER.index):
        lines.append(f"  {section}:")
        for uplink in by_section[section]:
            text, objects = _uplink(desired, uplink)
            lines += text
            persisted += objects
    notes = []
    unexpressed = [r for r in desired.rules if r.suppress_prefixlen is not None]
    if unexpressed:
        notes.append(
            _left(
                "netplan cannot express suppress_prefixlength",
                f"the on-link and main rules ({len(unexpressed)} rules)",
            )
        )
    sourced = [r for r in desired.routes if r.source is not None]
    if sourced:
        notes.append(
            _left(
                "netplan cannot express a route's source prefix (its `from` is the preferred"
                " source)",
                f"the IPv6 routes from a prefix in main ({len(sourced)} routes)",
            )
        )
    marked = [r for r in desired.rules if r.fwmark is not None]
    if marked:
        notes.append(
            _left(
                "netplan's routing-policy `mark` takes no mask",
                f"the fwmark rules ({len(marked)} rules)",
            )
        )
    if desired.sysctls:
        notes.append("netplan sets no sysctls: the systemd format's sysctl.d file does")
    notes += dynamic_gateway_notes(desired)
    notes += balancing_notes(desired)
    notes += source_set_notes(desired)
    extra = gateway_files(desired)
    return Rendered(
        {"90-multihome.yaml": "\n".join(lines) + "\n", **extra}, tuple(notes), tuple(persisted)
    )


def _left(cannot: str, what: str) -> str:
    """The note for what netplan cannot express, left to the systemd format's service."""
    return f"{cannot}: {what} are left to multihome.service -- export the systemd format too"


def _uplink(desired: Desired, uplink: Uplink) -> tuple[list[str], list[Rule | Route]]:
    """One uplink's routes (in its table) and its off-link source rules, as netplan YAML and
    as the objects the stack brings back at every boot."""
    lines = [f"    {key(uplink.name)}:"]
    routes = [r for r in uplink_routes(desired, uplink) if r.source is None]
    if routes:  # (none for an IPv6-only uplink whose route is from its prefix, in main)
        lines.append("      routes:")
    for route in routes:
        lines.append(f"        - to: {'default' if route.is_default else route.dst}")
        if route.gateway is not None:
            lines.append(f"          via: {route.gateway}")
        if route.scope == SCOPE_LINK:
            lines.append("          scope: link")
        if route.prefsrc is not None:
            lines.append(f"          from: {route.prefsrc}")
        lines.append(f"          table: {route.table}")
    policy = [
        r
        for r in uplink_rules(desired, uplink)
        if r.suppress_prefixlen is None and r.fwmark is None
    ]
    if policy:
        lines.append("      routing-policy:")
        for rule in policy:
            lines += [
                f"        - from: {rule.src}",
                f"          table: {rule.table}",
                f"          priority: {rule.priority}",
            ]
    return lines, [*routes, *policy]
