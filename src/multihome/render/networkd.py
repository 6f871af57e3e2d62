"""PURE: systemd-networkd drop-ins, one per uplink: DIR/NAME.network.d/90-multihome.conf.

NAME is the .network file that manages the uplink (networkd tells it: discover.network_files), else
10-IFACE.network. A drop-in adds its [Route] and [RoutingPolicyRule] sections to that file,
whatever other tools generated, and "90-" sorts it after the usual drop-ins. The shared rule
(`lookup main suppress_prefixlength 0`) goes with the first uplink only, once per family.
"""

from __future__ import annotations

from multihome.core.model import (
    SCOPE_LINK,
    TABLE_NAMES,
    Desired,
    Family,
    GatewaySource,
    Route,
    Rule,
    Uplink,
)
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
    uplink_tables,
)

# networkd's own names for a gateway it learns itself (systemd.network(5), [Route] Gateway=)
DYNAMIC_GATEWAY = {
    (Family.INET, GatewaySource.DHCP): "_dhcp4",
    (Family.INET6, GatewaySource.RA): "_ipv6ra",
}


def _route(route: Route, uplink: Uplink) -> list[str]:
    lines = ["[Route]"]
    if route.dst.prefixlen == 0:
        source = uplink.source4 if route.family is Family.INET else uplink.source6
        lines.append(f"Gateway={DYNAMIC_GATEWAY.get((route.family, source), route.gateway)}")
        if route.source is not None:
            lines.append(f"Source={route.source}")
    else:
        lines.append(f"Destination={route.dst}")
    lines.append(f"Table={route.table}")
    if route.scope == SCOPE_LINK:
        lines.append("Scope=link")
    if route.prefsrc is not None:
        lines.append(f"PreferredSource={route.prefsrc}")
    lines.append(f"Protocol={route.protocol}")
    return lines


def _rule(rule: Rule) -> list[str]:
    lines = ["[RoutingPolicyRule]"]
    if rule.src is not None:
        lines.append(f"From={rule.src}")
    else:
        lines.append(f"Family=ipv{rule.family.version}")
    lines.append(f"Table={TABLE_NAMES.get(rule.table, str(rule.table))}")
    lines.append(f"Priority={rule.priority}")
    if rule.fwmark is not None:
        mask = f"/{rule.fwmask:#x}" if rule.fwmask not in (None, 0xFFFFFFFF) else ""
        lines.append(f"FirewallMark={rule.fwmark:#x}{mask}")
    if rule.suppress_prefixlen is not None:
        lines.append(f"SuppressPrefixLength={rule.suppress_prefixlen}")
    return lines


def render(desired: Desired, options: Options) -> Rendered:
    files = {}
    for index, uplink in enumerate(desired.uplinks):
        sections = [
            *(_route(r, uplink) for r in uplink_routes(desired, uplink)),
            *(_rule(r) for r in uplink_rules(desired, uplink)),
        ]
        if index == 0:
            sections += [_rule(r) for r in shared_rules(desired)]
        network = options.network_files.get(uplink.name, f"10-{uplink.name}.network")
        tables = uplink_tables(desired, uplink)
        heading = f"uplink {uplink.name}, table{'s' * (len(tables) > 1)} {' and '.join(tables)}"
        text = f"# {HEADER}\n# {heading}\n\n"
        text += "\n\n".join("\n".join(section) for section in sections) + "\n"
        files[f"{network}.d/90-multihome.conf"] = text
    notes = []
    if desired.sysctls:
        notes.append("networkd sets no sysctls: install the systemd format's sysctl.d file too")
    notes.append("networkd gives rules its own protocol (static); routes keep multihome's (77)")
    extra = gateway_files(desired)
    notes += balancing_notes(desired) + source_set_notes(desired)
    return Rendered({**files, **extra}, tuple(notes), tuple(stack_layout(desired)))
