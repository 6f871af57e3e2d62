"""PURE: the doctor's checks for a host that forwards (gateway mode's problems), from the
state and the nftables ruleset as `nft -j list ruleset` prints it (iptables-nft rules show
there too).

forwarding-one-uplink   forwarding is on, there are several uplinks, port forwards (DNAT)
                        bring connections in, and nothing routes forwarded traffic over the
                        uplinks: it all leaves by main's default route, also the replies to
                        port forwards on another uplink (masquerade alone is symmetric:
                        unbalanced, not broken, and not reported)
snat-several-addresses  SNAT picks among several addresses (round-robin, a map, a range),
                        and routing does not follow the address it picked
mark-overlap            fwmark rules or nft rules of other software use bits of multihome's
                        mark mask
flowtable               flow offloading: offloaded packets skip the marks and the fwmark rules
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from multihome.core import gateway
from multihome.core.doctor import Finding, Severity
from multihome.core.model import TABLE_MAIN, Desired, HostState


def _items(ruleset: Any, kind: str) -> Iterator[dict[str, Any]]:
    for item in ruleset.get("nftables", []) if isinstance(ruleset, dict) else []:
        if isinstance(item, dict) and isinstance(item.get(kind), dict):
            yield item[kind]


def _devices(flowtable: dict[str, Any]) -> list[str]:
    dev = flowtable.get("dev")
    return [dev] if isinstance(dev, str) else [str(d) for d in dev or []]


def _dnat_tables(ruleset: Any) -> list[str]:
    """Tables of other software with DNAT (port forwards), as `table FAMILY NAME`."""
    found: list[str] = []
    for rule in _items(ruleset, "rule"):
        if rule.get("table") == gateway.TABLE:
            continue
        if any(isinstance(n, dict) and "dnat" in n for n in gateway.walk(rule.get("expr", []))):
            where = f"table {rule.get('family')} {rule.get('table')}"
            if where not in found:
                found.append(where)
    return found


def _several_snat(rule: dict[str, Any]) -> str | None:
    """How a rule's SNAT picks among several addresses, or None."""
    for node in gateway.walk(rule.get("expr", [])):
        if isinstance(node, dict) and isinstance(node.get("snat"), dict):
            addr = node["snat"].get("addr")
            if isinstance(addr, dict):
                if "map" in addr:
                    return "a map (round-robin or hash over addresses)"
                if "range" in addr:
                    return "an address range"
                return "several addresses"
    return None


def findings(
    state: HostState, desired: Desired, ruleset: Any, mask: int, enforced: bool, protocol: int
) -> list[Finding]:
    """`mask` is the mark band ([multihome] mark_mask); `enforced`: gateway mode is
    configured, so an overlap stops apply (an error, not a warning)."""
    if state.sysctls.get(gateway.FORWARDING) != "1":
        return []
    found: list[Finding] = []
    ours = [r for r in state.rules if r.protocol == protocol and r.fwmark is not None]
    uplinks = [u.name for u in desired.uplinks]
    port_forwards = _dnat_tables(ruleset)
    if len(uplinks) >= 2 and not ours and port_forwards:
        defaults = [r for r in state.routes if r.table == TABLE_MAIN and r.is_default]
        best = min(defaults, key=lambda r: r.metric, default=None)
        via = f"dev {best.devices()[0]}" if best and best.devices() else "main's default route"
        found.append(
            Finding(
                Severity.WARNING,
                "forwarding-one-uplink",
                f"this host forwards, but forwarded traffic can only leave by {via}"
                f" ({len(uplinks)} uplinks: {', '.join(uplinks)})",
                interfaces=tuple(uplinks),
                evidence=(
                    "net.ipv4.ip_forward=1",
                    *(f"ip route: {r.ip_args()}" for r in defaults[:4]),
                    *(f"port forwards (DNAT) in {t}" for t in port_forwards),
                    "no fwmark rules of multihome's",
                ),
                consequence="the other uplinks idle for the LAN; a port forward on another"
                " uplink answers through this one, and that ISP drops the reply",
                fix="add [gateway] lan = [\"<LAN interface>\"] to the config, then"
                " multihome apply",
            )
        )
    for rule in _items(ruleset, "rule"):
        how = _several_snat(rule)
        if how is None or rule.get("table") == gateway.TABLE:
            continue
        where = f"table {rule.get('family')} {rule.get('table')} chain {rule.get('chain')}"
        found.append(
            Finding(
                Severity.ERROR,
                "snat-several-addresses",
                f"SNAT in {where} picks the source address from {how}; routing does not"
                " follow the address it picks",
                evidence=(f"nft rule in {where} (handle {rule.get('handle')})",),
                consequence="connections SNATed to one uplink's address leave by another"
                " uplink, whose ISP drops them: some connections fail (SSH, IRC reset)",
                fix="drop that rule and use [gateway] masquerade = true (SNAT per uplink,"
                " to the address of the uplink the connection leaves by)",
            )
        )
    users = gateway.rule_mark_users(state.rules, mask, protocol)
    users += gateway.nft_mark_users(ruleset, mask)
    if users:
        found.append(
            Finding(
                Severity.ERROR if enforced else Severity.WARNING,
                "mark-overlap",
                f"other software uses bits of multihome's mark mask 0x{mask:08X}",
                evidence=tuple(users),
                consequence="gateway mode would change those packets' marks, or they"
                " multihome's; apply refuses",
                fix="set [multihome] mark_mask to bits nobody else uses",
            )
        )
    for flowtable in _items(ruleset, "flowtable"):
        found.append(
            Finding(
                Severity.WARNING,
                "flowtable",
                f"flow offloading (flowtable {flowtable.get('name')} in table"
                f" {flowtable.get('family')} {flowtable.get('table')})",
                evidence=(f"devices: {', '.join(_devices(flowtable))}",),
                consequence="offloaded packets skip the mark restore and the fwmark rules:"
                " a connection's later packets may leave by another uplink",
                fix="leave the uplinks out of the flowtable's devices, or remove it",
            )
        )
    return found
