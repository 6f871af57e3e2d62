"""PURE: multihome's routes and routing rules as items of the NetworkManager connection of
each uplink (`items`: property, value in nmcli's syntax), and nmcli commands
(DIR/multihome-nmcli.sh) that add them and reapply the connection. `multihome install` adds the
same items itself (install.py) and records which ones it added.

Items are removed before they are added, so the script can run again, and only multihome's
items are touched: the connection's other routes and rules stay. Routes carry the metric
`multihome apply` gives them (NetworkManager would give them the connection's). Needs
NetworkManager 1.20 or newer (suppress_prefixlength in routing rules).
"""

from __future__ import annotations

import shlex

from multihome.core.model import DEFAULT_METRIC, SCOPE_LINK, Desired, Route, Rule
from multihome.errors import MultihomeError
from multihome.render import (
    HEADER,
    Options,
    Rendered,
    balancing_notes,
    gateway_files,
    shared_rules,
    source_set_notes,
    stack_layout,
    uplink_routes,
    uplink_rules,
)


def _route(route: Route) -> str:
    text = f"{route.dst}"
    if route.gateway is not None:
        text += f" {route.gateway}"
    text += f" {route.metric or DEFAULT_METRIC[route.family.version]} table={route.table}"
    if route.prefsrc is not None:
        text += f" src={route.prefsrc}"
    if route.source is not None:
        text += f" from={route.source}"
    if route.scope == SCOPE_LINK:
        text += " scope=253"
    return text


def _rule(rule: Rule) -> str:
    text = f"priority {rule.priority}"
    if rule.src is not None:
        text += f" from {rule.src}"
    else:
        text += f" from {rule.family.any}"
    if rule.fwmark is not None:
        mask = f"/{rule.fwmask:#x}" if rule.fwmask not in (None, 0xFFFFFFFF) else ""
        text += f" fwmark {rule.fwmark:#x}{mask}"
    text += f" table {rule.table}"
    if rule.suppress_prefixlen is not None:
        text += f" suppress_prefixlength {rule.suppress_prefixlen}"
    return text


Item = tuple[str, str]  # (connection property, value), e.g. ("ipv4.routes", "...")


def nmcli_takes(name: str) -> bool:
    """Whether nmcli can be given this device name: it takes a device by its bare name and
    reads an argument starting with `-` as one of its options (`-ask` would have it prompt),
    and any prefix of `help` as a request for its usage."""
    return not (name.startswith("-") or "help".startswith(name))


def _check(name: str) -> str:
    """Refuse a name nmcli would misread (nmcli_takes)."""
    if not nmcli_takes(name):
        raise MultihomeError(
            f"NetworkManager's nmcli would read the interface name {name!r} as an option"
            " or a request for help",
            hint="rename the interface, or export/install the systemd or networkd format",
        )
    return name


def items(desired: Desired) -> dict[str, tuple[Item, ...]]:
    """Per uplink, the routes and routing rules its connection gets; the rules every uplink
    shares (lookup main) go to the first uplink's connection."""
    found: dict[str, tuple[Item, ...]] = {}
    for index, uplink in enumerate(desired.uplinks):
        _check(uplink.name)
        routes = uplink_routes(desired, uplink)
        listed = [(f"ipv{r.family.version}.routes", _route(r)) for r in routes]
        rules = uplink_rules(desired, uplink) + (shared_rules(desired) if index == 0 else [])
        listed += [(f"ipv{r.family.version}.routing-rules", _rule(r)) for r in rules]
        found[uplink.name] = tuple(listed)
    return found


def render(desired: Desired, options: Options) -> Rendered:
    lines = [
        "#!/bin/sh",
        f"# {HEADER}",
        "set -e",
        "connection() {",
        '    c=$(nmcli -g GENERAL.CON-UUID device show "$1")',
        '    [ -n "$c" ] || { echo "multihome: NetworkManager does not manage $1" >&2; exit 1; }',
        '    echo "$c"',
        "}",
        "",
    ]
    for index, (name, listed) in enumerate(items(desired).items()):
        var = f"c_{index}"
        lines.append(f"{var}=$(connection {shlex.quote(name)})")
        for prop, value in listed:
            quoted = shlex.quote(value)
            lines.append(
                f'nmcli connection modify uuid "${var}" -{prop} {quoted} 2>/dev/null || true'
            )
            lines.append(f'nmcli connection modify uuid "${var}" +{prop} {quoted}')
        lines.append(f"nmcli device reapply {shlex.quote(name)}")
        lines.append("")
    notes = ["NetworkManager sets no sysctls: install the systemd format's sysctl.d file too"]
    notes = notes if desired.sysctls else []
    extra = gateway_files(desired)
    return Rendered(
        {"multihome-nmcli.sh": "\n".join(lines), **extra},
        tuple(notes + balancing_notes(desired) + source_set_notes(desired)),
        tuple(stack_layout(desired)),
    )
