"""PURE: ifupdown stanzas for /etc/network/interfaces.d (DIR/multihome).

A second stanza `iface IFACE inet manual` for an interface the host already defines is
configured after the host's own (ifupdown runs every stanza of an interface in order), so its
post-up lines add multihome's tables and rules once the address is up, and pre-down removes
them. The shared rule goes with the first uplink.
"""

from __future__ import annotations

import re

from multihome.core.model import Desired, Rule
from multihome.errors import MultihomeError
from multihome.render import (
    HEADER,
    Options,
    Rendered,
    balancing_notes,
    dynamic_gateway_notes,
    gateway_files,
    shared_rules,
    source_set_notes,
    stack_layout,
    uplink_routes,
    uplink_rules,
)
from multihome.render.ip import args, route_up, sysctl_command

# ifupdown puts the name into shell commands of its own unquoted (`ip link set dev %iface%
# up` for `inet manual`), and reads `ifup A=B` as interface A, logical name B: only names of
# these characters pass through it unchanged.
SAFE_NAME = re.compile(r"[A-Za-z0-9_.@+%,^~-]+")


def _check(name: str) -> str:
    if not SAFE_NAME.fullmatch(name):
        raise MultihomeError(
            f"ifupdown cannot carry the interface name {name!r}: it writes names into shell"
            " commands of its own unquoted (and reads `=` as a mapping)",
            hint="rename the interface, or export/install the systemd or networkd format",
        )
    return name


def _rule_lines(rule: Rule) -> tuple[list[str], list[str]]:
    v = rule.family.version
    up = [
        f"post-up ip -{v} rule del {args(rule)} 2>/dev/null || true",
        f"post-up ip -{v} rule add {args(rule)}",
    ]
    return up, [f"pre-down ip -{v} rule del {args(rule)} 2>/dev/null || true"]


def render(desired: Desired, options: Options) -> Rendered:
    lines = [f"# {HEADER}", "# merged with the host's own stanzas for these interfaces", ""]
    for index, uplink in enumerate(desired.uplinks):
        up: list[str] = []
        down: list[str] = []
        for route in uplink_routes(desired, uplink):
            up += [f"post-up {line}" for line in route_up(route)]
            down.append(
                f"pre-down ip -{route.family.version} route del {args(route)} 2>/dev/null || true"
            )
        rules = uplink_rules(desired, uplink) + (shared_rules(desired) if index == 0 else [])
        for rule in rules:
            rule_up, rule_down = _rule_lines(rule)
            up += rule_up
            down += rule_down
        _check(uplink.name)
        up += [
            f"post-up {sysctl_command(s, '-qw')}"
            for s in desired.sysctls
            # namespace-wide ones (the balancing hash policy, conf/all) go with the first uplink
            if s.interface == uplink.name or (s.interface in (None, "all") and index == 0)
        ]
        # pre-down undoes post-up in reverse: rules go before the routes they use.
        lines += [f"iface {uplink.name} inet manual"]
        lines += [f"    {line}" for line in up + list(reversed(down))]
        lines.append("")
    extra = gateway_files(desired)
    notes = dynamic_gateway_notes(desired) + balancing_notes(desired)
    notes += source_set_notes(desired)
    layout = tuple(stack_layout(desired))
    return Rendered({"multihome": "\n".join(lines), **extra}, tuple(notes), layout)
