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

from collections.abc import Iterator, Mapping
from typing import Any

from multihome.core import delegation, gateway
from multihome.core.config import DEFAULT_MARK_MASK
from multihome.core.doctor import Finding, Severity
from multihome.core.model import TABLE_MAIN, Desired, HostState, IPAddress, Lookup


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
    state: HostState, desired: Desired, ruleset: Any, mask: int | None, protocol: int
) -> list[Finding]:
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
    effective = mask if mask is not None else DEFAULT_MARK_MASK
    users = gateway.rule_mark_users(state.rules, effective, protocol)
    users += gateway.nft_mark_users(ruleset, effective)
    if users:
        found.append(
            Finding(
                Severity.ERROR if mask is not None else Severity.WARNING,
                "mark-overlap",
                f"other software uses bits of multihome's mark mask 0x{effective:08X}",
                evidence=tuple(users),
                consequence="gateway mode would change those packets' marks, or they"
                " multihome's; apply refuses",
                fix="set [gateway] mark_mask to bits nobody else uses",
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


# -- an IPv6 router: the LAN's delegated prefixes -------------------------------------------
#
# ipv6-prefix-wrong-uplink  a delegated prefix's traffic leaves by another uplink than the
#                           one whose ISP delegated it (that ISP drops it)
# ra-not-deprecating        an uplink is dead (left out of the plan: link down, no address),
#                           and the RA daemon still announces its LAN prefix as preferred


def delegation_probes(
    state: HostState, desired: Desired, target: IPAddress | None
) -> list[tuple[IPAddress, IPAddress]]:
    """The (dst, src) route lookups the IPv6 router checks need: from the router's own
    address in each LAN prefix of a steered delegation, toward an off-link target (the
    same rules route it as the LAN hosts' forwarded traffic from that prefix)."""
    if target is None:
        return []
    planned = {u.name for u in desired.uplinks}
    found = []
    for item in desired.delegations:
        if item.uplink not in planned:
            continue
        for ifname, network in item.lan:
            own = next((a.ip.ip for a in state.addresses_of(ifname) if a.ip.ip in network), None)
            if own is not None:
                found.append((target, own))
    return found


def ipv6_router_findings(
    state: HostState,
    desired: Desired,
    lookups: Mapping[tuple[IPAddress, IPAddress], Lookup],
    target: IPAddress | None,
    drop_in: str | None,
    ra_daemon: str,
) -> list[Finding]:
    """The IPv6 router's findings; `drop_in`: the text of the RA daemon's configuration
    multihome changes (dnsmasq's drop-in, radvd.conf; None: there is none), `ra_daemon`:
    [gateway] ra_daemon."""
    found: list[Finding] = []
    owners = {(d.uplink, network) for d in desired.delegations for _, network in d.lan}
    for dst, src in delegation_probes(state, desired, target):
        look = lookups.get((dst, src))
        uplink = next((u for u, n in owners if src in n), None)
        if look is None or look.dev is None or uplink is None or look.dev == uplink:
            continue
        found.append(
            Finding(
                Severity.ERROR,
                "ipv6-prefix-wrong-uplink",
                f"traffic from {src}'s prefix, delegated by {uplink}'s ISP, leaves by {look.dev}",
                interfaces=(uplink, look.dev),
                address=str(src),
                evidence=(look.describe(),),
                consequence=f"the ISP behind {look.dev} drops sources outside its own prefix:"
                " the LAN hosts' connections from this prefix fail",
                fix="multihome apply",
            )
        )
    dead = delegation.dead_uplinks(desired, ())
    announced = delegation.announced_deprecated(ra_daemon, drop_in)
    for network in delegation.deprecated(desired.delegations, dead):
        if network in announced:
            continue
        uplink = next(d.uplink for d in desired.delegations if (d.uplink, network) in owners)
        found.append(
            Finding(
                Severity.WARNING,
                "ra-not-deprecating",
                f"{uplink} is down, and the LAN's router advertisements still offer"
                f" {network} (its delegation) as preferred",
                interfaces=(uplink,),
                evidence=(
                    f"{uplink}: not an uplink now (link down or no address)",
                    f"{network} is not deprecated in the {ra_daemon or 'RA daemon'}'s"
                    " configuration by multihome",
                ),
                consequence="LAN hosts keep starting connections from that prefix, and they"
                " fail (RFC 8475)",
                fix="run multihome watch (it deprecates a dead uplink's prefixes)"
                if ra_daemon
                else 'set [gateway] ra_daemon = "dnsmasq" and run multihome watch',
            )
        )
    return found
