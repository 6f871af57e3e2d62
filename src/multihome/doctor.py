"""PURE: find asymmetric routing on a host, with evidence, the consequence and the fix.

Two steps, so that the kernel is asked only what the checks need:
  probes(state)                          which route lookups to make (dst, src)
  diagnose(state, lookups, desired, ...) the findings
The lookups are the kernel's own (`ip route get DST from SRC`, made by discover.py), so the
verdict is the kernel's, not a re-implementation of its rules. Reverse-path filtering is
decided the way the kernel decides it: a packet to address A from a sender S is accepted on
interface X (rp_filter=1) only if the route from A back to S leaves through X -- which is the
same lookup as a reply's.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from multihome.model import (
    RESERVED_TABLES,
    TABLE_MAIN,
    Address,
    Change,
    Desired,
    Family,
    HostState,
    IPAddress,
    Lookup,
)
from multihome.plan import is_candidate

# Representative destinations for "a client somewhere on the internet" (documentation
# ranges; the first not on a local subnet is used) -- the lookup only consults the routing
# tables, no packet is sent.
OFF_LINK = {
    Family.INET: ("203.0.113.254", "198.51.100.254", "192.0.2.254"),
    Family.INET6: ("2001:db8:ffff::1", "2001:db8:fffe::1"),
}


class Severity(enum.Enum):
    ERROR = "error"  # traffic is dropped or sent the wrong way
    WARNING = "warning"  # works, but unbalanced, fragile or inconsistent
    INFO = "info"


@dataclass(frozen=True)
class Finding:
    severity: Severity
    check: str  # a stable name: asymmetric-reply, rp-filter-drop, arp-flux, ...
    summary: str
    interfaces: tuple[str, ...] = ()
    address: str | None = None
    evidence: tuple[str, ...] = ()
    consequence: str = ""
    fix: str = ""


@dataclass(frozen=True)
class Report:
    findings: tuple[Finding, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def errors(self) -> int:
        return sum(f.severity is Severity.ERROR for f in self.findings)


def _uplink_addresses(state: HostState) -> list[Address]:
    candidates = {i.name for i in state.interfaces if is_candidate(i)}
    return [a for a in state.addresses if a.ifname in candidates]


def _off_link_target(state: HostState, family: Family) -> IPAddress:
    local = [a.ip.network for a in state.addresses if a.family == family]
    for text in OFF_LINK[family]:
        target = ipaddress.ip_address(text)
        if not any(target in network for network in local):
            return target
    return ipaddress.ip_address(OFF_LINK[family][0])


def _on_link_peer(address: Address) -> IPAddress | None:
    network = address.ip.network
    if network.num_addresses < 4:
        return None  # /31, /32 and their IPv6 likes: no peer to speak of
    first = network.network_address + 1
    return first if first != address.ip.ip else first + 1


def probes(state: HostState) -> list[tuple[IPAddress, IPAddress]]:
    """The (dst, src) route lookups the checks need."""
    wanted = []
    for address in _uplink_addresses(state):
        wanted.append((_off_link_target(state, address.family), address.ip.ip))
        peer = _on_link_peer(address)
        if peer is not None:
            wanted.append((peer, address.ip.ip))
    return wanted


def _sysctl(state: HostState, ifname: str, key: str) -> int | None:
    """The effective value: the kernel takes the larger of `all` and the interface's."""
    values = [state.sysctls.get(f"net/ipv4/conf/{n}/{key}") for n in ("all", ifname)]
    numbers = [int(v) for v in values if v is not None and v.isdigit()]
    return max(numbers) if numbers else None


def _multi_homed(state: HostState) -> bool:
    return len({a.ifname for a in _uplink_addresses(state)}) >= 2


def _reply_checks(
    state: HostState, lookups: Mapping[tuple[IPAddress, IPAddress], Lookup]
) -> list[Finding]:
    findings = []
    defaults = {
        (r.family, dev): gateway
        for r in state.routes
        if r.table == TABLE_MAIN and r.is_default
        for dev, gateway in r.gateways()
    }
    for address in _uplink_addresses(state):
        src = address.ip.ip
        off = lookups.get((_off_link_target(state, address.family), src))
        if off is not None and not off.error and off.dev != address.ifname:
            own_gateway = defaults.get((address.family, address.ifname))
            other_path = own_gateway is not None and own_gateway != off.gateway
            findings.append(
                Finding(
                    Severity.ERROR,
                    "asymmetric-reply",
                    f"replies from {src} to off-link clients leave by {off.dev}, not"
                    f" {address.ifname}",
                    interfaces=(address.ifname, off.dev or "?"),
                    address=str(src),
                    evidence=(off.describe(),),
                    consequence=(
                        f"{address.ifname} has its own gateway ({own_gateway}); replies sent"
                        f" through {off.gateway} with the source {src} are dropped by"
                        " anti-spoofing filters upstream"
                        if other_path
                        else f"{off.dev} sends every reply for {src}; {address.ifname} idles"
                    ),
                    fix="multihome apply",
                )
            )
            if address.family is Family.INET and _sysctl(state, address.ifname, "rp_filter") == 1:
                findings.append(
                    Finding(
                        Severity.ERROR,
                        "rp-filter-drop",
                        f"strict reverse-path filtering on {address.ifname} drops off-link"
                        f" traffic to {src}",
                        interfaces=(address.ifname,),
                        address=str(src),
                        evidence=(
                            f"rp_filter={_sysctl(state, address.ifname, 'rp_filter')} on"
                            f" {address.ifname} (max of all and {address.ifname})",
                            off.describe() + f" (not {address.ifname})",
                        ),
                        consequence=(
                            f"a packet to {src} arriving on {address.ifname} fails the"
                            " kernel's reverse-path check and is dropped: pings and"
                            " connections to this address get no answer"
                        ),
                        fix="multihome apply (with the source rules, strict filtering"
                        " accepts this traffic; no need to loosen rp_filter)",
                    )
                )
        peer = _on_link_peer(address)
        near = lookups.get((peer, src)) if peer is not None else None
        if near is not None and not near.error and near.dev != address.ifname:
            findings.append(
                Finding(
                    Severity.ERROR,
                    "asymmetric-on-link",
                    f"replies from {src} to hosts on {address.ip.network} leave by"
                    f" {near.dev}, not {address.ifname}",
                    interfaces=(address.ifname, near.dev or "?"),
                    address=str(src),
                    evidence=(near.describe(),),
                    consequence=f"{near.dev} carries the local subnet's replies for {src}",
                    fix="multihome apply",
                )
            )
    return findings


def _arp_flux(state: HostState) -> list[Finding]:
    v4 = [a for a in _uplink_addresses(state) if a.family is Family.INET]
    shared: dict[str, set[str]] = {}
    for a in v4:
        for b in v4:
            if a.ifname != b.ifname and a.ip.network.overlaps(b.ip.network):
                shared.setdefault(str(a.ip.network), set()).update({a.ifname, b.ifname})
    findings = []
    for subnet, names in sorted(shared.items()):
        loose = sorted(
            n
            for n in names
            if (_sysctl(state, n, "arp_ignore") or 0) == 0
            or (_sysctl(state, n, "arp_announce") or 0) == 0
        )
        if not loose:
            continue
        findings.append(
            Finding(
                Severity.WARNING,
                "arp-flux",
                f"{', '.join(sorted(names))} share {subnet} and answer ARP for each other",
                interfaces=tuple(sorted(names)),
                evidence=tuple(
                    f"{n}: arp_ignore={_sysctl(state, n, 'arp_ignore')}"
                    f" arp_announce={_sysctl(state, n, 'arp_announce')}"
                    for n in loose
                ),
                consequence="neighbours may resolve every local address to one NIC's MAC,"
                " so that NIC receives all the traffic",
                fix="multihome apply (sets arp_ignore=1 and arp_announce=2), or: "
                + "; ".join(
                    f"sysctl -w net.ipv4.conf.{n}.arp_ignore=1 net.ipv4.conf.{n}.arp_announce=2"
                    for n in loose
                ),
            )
        )
    return findings


def _table_checks(state: HostState) -> list[Finding]:
    findings = []
    filled = {(r.family, r.table) for r in state.routes}
    for rule in state.rules:
        if rule.table in RESERVED_TABLES:  # main, local, default; 0: goto/blackhole rules
            continue
        if (rule.family, rule.table) not in filled:
            findings.append(
                Finding(
                    Severity.ERROR if rule.src is not None else Severity.WARNING,
                    "empty-table",
                    f"rule `{rule.ip_args()}` looks up table {rule.table}, which is empty",
                    address=str(rule.src) if rule.src else None,
                    evidence=(f"ip -{rule.family.version} route show table {rule.table}: empty",),
                    consequence="the lookup falls through to the next rule; the traffic it"
                    " was meant to steer is routed by destination again",
                    fix="multihome apply (if the rule is multihome's), or:"
                    f" ip -{rule.family.version} rule del {rule.ip_args()}",
                )
            )
    local = {a.ip.ip: a for a in state.addresses}
    reported: set[tuple[int, str]] = set()
    for rule in state.rules:
        if rule.src is None or rule.src.prefixlen != rule.src.max_prefixlen:
            continue
        address = local.get(rule.src.network_address)
        if address is None or (rule.family, rule.table) not in filled:
            continue
        if (rule.table, address.ifname) in reported:
            continue
        covered = any(
            r.table == rule.table
            and r.family == rule.family
            and not r.is_default
            and address.ifname in r.devices()
            and address.ip.ip in r.dst
            for r in state.routes
        )
        if not covered and address.ip.network.num_addresses > 2:
            reported.add((rule.table, address.ifname))
            findings.append(
                Finding(
                    Severity.WARNING,
                    "missing-on-link-route",
                    f"table {rule.table} (used for {address.ip.ip}) has no route for"
                    f" {address.ip.network} on {address.ifname}",
                    interfaces=(address.ifname,),
                    address=str(address.ip.ip),
                    evidence=(f"ip -{rule.family.version} route show table {rule.table}",),
                    consequence="replies to hosts on the local subnet go through the gateway",
                    fix="multihome apply",
                )
            )
    return findings


def _several_defaults(state: HostState) -> list[Finding]:
    findings = []
    for family in Family:
        devs = sorted(
            {
                dev
                for r in state.routes
                if r.table == TABLE_MAIN and r.is_default and r.family == family
                for dev in r.devices()
            }
        )
        covered = {r.src.network_address for r in state.rules if r.src and r.family == family}
        uncovered = [
            d for d in devs if any(a.ip.ip not in covered for a in state.addresses_of(d, family))
        ]
        if len(devs) >= 2 and len(uncovered) == len(devs):
            findings.append(
                Finding(
                    Severity.WARNING,
                    "several-defaults",
                    f"{len(devs)} IPv{family.version} default routes in main"
                    f" ({', '.join(devs)}) and no source rules",
                    interfaces=tuple(devs),
                    evidence=tuple(
                        f"ip -{family.version} route: {r.ip_args()}"
                        for r in state.routes
                        if r.table == TABLE_MAIN and r.is_default and r.family == family
                    ),
                    consequence="only the lowest metric is used; the others are spare",
                    fix="multihome apply",
                )
            )
    return findings


def _drift(desired: Desired, state: HostState, changes: list[Change]) -> list[Finding]:
    rules, routes = desired.ownership.owned(state)
    if not (rules or routes) or not changes:
        return []
    return [
        Finding(
            Severity.WARNING,
            "drift",
            f"multihome's rules and routes differ from its plan ({len(changes)} changes)",
            evidence=tuple(c.describe() for c in changes[:20]),
            consequence="something changed the routing since the last apply (DHCP, a"
            " link flap, another tool), or the config changed",
            fix="multihome apply",
        )
    ]


def diagnose(
    state: HostState,
    lookups: Mapping[tuple[IPAddress, IPAddress], Lookup],
    desired: Desired,
    changes: list[Change],
) -> Report:
    if not _multi_homed(state):
        return Report(notes=("single-homed: one uplink, routing is symmetric",))
    findings = (
        _reply_checks(state, lookups)
        + _arp_flux(state)
        + _table_checks(state)
        + _several_defaults(state)
        + _drift(desired, state, changes)
    )
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    return Report(findings=tuple(sorted(findings, key=lambda f: order[f.severity])))
