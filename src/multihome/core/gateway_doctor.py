"""PURE: the doctor's checks for a host that forwards (gateway mode's problems), from the
state, the firewall as read (core/firewall.py: iptables-nft, iptables-legacy and native nft
rules) and the nftables ruleset as `nft -j list ruleset` prints it.

forwarding-one-uplink   a port forward (DNAT, iptables or nft) to a local interface that is
                        not an uplink (docker0, virbr0) takes connections on an uplink whose
                        replies the kernel routes out by another uplink: the route lookup a
                        forwarded reply gets (iif and the mark the kernel would restore)
                        says so (masquerade alone is symmetric: not reported)
snat-several-addresses  SNAT picks among several addresses (round-robin, a map, a range),
                        and routing does not follow the address it picked
mark-overlap            fwmark rules, iptables or nft rules of other software use bits of
                        multihome's mark mask
flowtable               flow offloading: offloaded packets skip the marks and the fwmark rules
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multihome.core import delegation, gateway
from multihome.core.doctor import Finding, Severity, off_link_targets
from multihome.core.firewall import Firewall, NatRule, items, printable
from multihome.core.firewall import read as read_firewall
from multihome.core.model import (
    Desired,
    Family,
    GatewayLayout,
    HostState,
    IPAddress,
    Lookup,
    Ownership,
)
from multihome.core.records import record


def _devices(flowtable: dict[str, Any]) -> list[str]:
    dev = flowtable.get("dev")
    return [dev] if isinstance(dev, str) else [str(d) for d in dev or []]


EVIDENCE_CASES = 3  # port forwards shown per finding (a Docker host may publish dozens)


@record(frozen=True)
class ReplyProbe:
    """A reply to a port-forwarded connection that came in on `uplink`, as the kernel
    routes it: from the DNAT's destination `src`, forwarded from `device`, to a remote `dst`,
    with the mark multihome's table would restore on it (0: none)."""

    uplink: str
    rule: NatRule
    device: str
    dst: IPAddress
    src: IPAddress
    mark: int = 0

    @property
    def key(self) -> tuple[IPAddress, IPAddress, str, int]:
        return (self.dst, self.src, self.device, self.mark)


def reply_probes(
    state: HostState, uplinks: list[str], found: Firewall, live: GatewayLayout | None
) -> list[ReplyProbe]:
    """The lookups forwarding-one-uplink needs: per uplink and port forward that applies
    there, the reply's route (`live`: multihome's table as the kernel has it, whose marks
    the replies carry)."""
    target = off_link_targets(state).get(Family.INET)
    if target is None or state.sysctls.get(gateway.FORWARDING) != "1" or len(uplinks) < 2:
        return []
    probes: list[ReplyProbe] = []
    local = gateway.LocalTargets(state)
    names = set(uplinks)
    for rule in found.dnat():
        address = rule.address
        device = local.of(address, names) if address else None
        if device is None or address is None:
            continue
        for name in uplinks:
            if rule.matches_in(name):
                mark = (live.mark_of(name) if live is not None else None) or 0
                probes.append(ReplyProbe(name, rule, device, target, address, mark))
    return probes


def _wrong_uplink(
    probes: list[ReplyProbe], lookups: Mapping[tuple[Any, ...], Lookup], pin_inbound: bool
) -> list[Finding]:
    """forwarding-one-uplink: one finding per uplink whose port forwards answer elsewhere."""
    uplinks = {p.uplink for p in probes}
    wrong: dict[str, list[tuple[ReplyProbe, Lookup]]] = {}
    for probe in probes:
        lookup = lookups.get(probe.key)
        if lookup is None or lookup.dev is None or lookup.dev == probe.uplink:
            continue
        if lookup.dev in uplinks or lookup.gateway is not None:
            wrong.setdefault(probe.uplink, []).append((probe, lookup))
    fix = (
        "multihome apply: it pins each inbound forwarded connection to the uplink it came in"
        " on (if its note says pinning was left out, set [multihome] mark_mask to bits"
        " nobody else uses)"
        if pin_inbound
        else "set [multihome] pin_inbound = true (or remove the line), then multihome apply"
    )
    found = []
    for uplink, cases in wrong.items():
        leaves = sorted({lookup.dev or "" for _, lookup in cases})
        evidence: list[str] = ["net.ipv4.ip_forward=1"]
        for probe, lookup in cases[:EVIDENCE_CASES]:
            evidence += [
                f"port forward ({probe.rule.where}): {printable(probe.rule.text)}",
                f"{lookup.describe()} (a reply from {probe.device}, mark as the kernel would"
                f" restore it)",
                f"a reply to a connection that came in on {uplink} leaves by {lookup.dev}"
                f" with {uplink}'s address: the ISP behind {lookup.dev} drops it",
            ]
        if len(cases) > EVIDENCE_CASES:
            evidence.append(f"... and {len(cases) - EVIDENCE_CASES} more port forwards alike")
        found.append(
            Finding(
                Severity.WARNING,
                "forwarding-one-uplink",
                f"replies to port forwards on {uplink} leave by {', '.join(leaves)}",
                interfaces=(uplink, *leaves),
                evidence=tuple(evidence),
                consequence=f"a connection forwarded from {uplink} to"
                f" {', '.join(sorted({p.device for p, _ in cases}))} answers through"
                f" {', '.join(leaves)} with {uplink}'s address: that ISP drops the replies, and"
                f" the port forward works through one uplink only",
                fix=fix,
            )
        )
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
    state: HostState,
    ruleset: Any,
    mask: int,
    enforced: bool,
    ownership: Ownership,
    firewall: Firewall | None = None,
    replies: tuple[list[ReplyProbe], Mapping[tuple[Any, ...], Lookup]] = ([], {}),
    pin_inbound: bool = True,
) -> list[Finding]:
    """`mask` is the mark band ([multihome] mark_mask); `enforced`: gateway mode is
    configured, so an overlap stops apply (an error, not a warning). `firewall`: as read
    (None: the nft ruleset's native rules only); `replies`: reply_probes and the kernel's
    lookups for them."""
    if state.sysctls.get(gateway.FORWARDING) != "1":
        return []
    if firewall is None:
        firewall = read_firewall((), ruleset)
    found = _wrong_uplink(*replies, pin_inbound)
    for rule in items(ruleset, "rule"):
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
    users = gateway.rule_mark_users(state.rules, mask, ownership)
    users += firewall.mark_users(mask)
    if users:
        found.append(
            Finding(
                Severity.ERROR if enforced else Severity.WARNING,
                "mark-overlap",
                f"other software uses bits of multihome's mark mask 0x{mask:08X}",
                evidence=tuple(users),
                consequence="gateway mode would change those packets' marks, or they"
                " multihome's; apply refuses"
                if enforced
                else "multihome cannot mark connections without changing theirs: apply leaves"
                " inbound pinning out (port forwards answer through main's default route),"
                " and gateway mode would refuse",
                fix="set [multihome] mark_mask to bits nobody else uses",
            )
        )
    for flowtable in items(ruleset, "flowtable"):
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
