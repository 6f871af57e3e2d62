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
import shlex
from bisect import bisect_left, bisect_right
from collections.abc import Collection, Iterable, Mapping

from multihome.core.model import (
    RESERVED_TABLES,
    TABLE_MAIN,
    Action,
    Address,
    Change,
    Desired,
    Family,
    HostState,
    IPAddress,
    IPNetwork,
    Lookup,
    Route,
    Rule,
    Sysctl,
)
from multihome.core.plan import shared_subnets
from multihome.core.records import field, record

# Representative destinations for "a client somewhere on the internet": the first that no
# specific route on the host covers, so that main routes it by its default route (the
# lookup only consults the routing tables; no packet is sent). When every one is covered,
# the first gap in the covered ranges of global unicast space is taken.
OFF_LINK = {
    Family.INET: ("203.0.113.254", "198.51.100.254", "192.0.2.254"),
    Family.INET6: ("2001:db8:ffff::1", "2001:db8:fffe::1"),
}
GLOBAL_UNICAST = {
    Family.INET: (ipaddress.ip_network("1.0.0.0/8"), ipaddress.ip_network("223.0.0.0/8")),
    Family.INET6: (ipaddress.ip_network("2000::/16"), ipaddress.ip_network("3fff::/16")),
}
LOOPBACK4 = ipaddress.ip_network("127.0.0.0/8")


class Severity(enum.Enum):
    ERROR = "error"  # traffic is dropped or sent the wrong way
    WARNING = "warning"  # works, but unbalanced, fragile or inconsistent


@record(frozen=True)
class Finding:
    severity: Severity
    check: str  # a stable name: asymmetric-reply, rp-filter-drop, arp-flux, ...
    summary: str
    interfaces: tuple[str, ...] = ()
    address: str | None = None
    evidence: tuple[str, ...] = ()
    consequence: str = ""
    fix: str = ""


@record(frozen=True)
class Report:
    findings: tuple[Finding, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def errors(self) -> int:
        return sum(f.severity is Severity.ERROR for f in self.findings)


def _uplink_addresses(state: HostState, uplinks: Collection[str]) -> list[Address]:
    """Only uplinks' addresses are probed: a container bridge or a VPN is not one (plan.roles)."""
    names = set(uplinks)
    return [a for a in state.addresses if a.ifname in names]


def off_link_targets(state: HostState) -> dict[Family, IPAddress]:
    """Per family, a destination that main routes by its default route: no route more
    specific than a default, in any table, covers it, and it is not local. A family whose
    main table has no default route, or whose every destination a specific route covers
    (a VPN's 0.0.0.0/1 and 128.0.0.0/1), gets none: no off-link reply is checked there, as
    multihome's rules would not change it (main's specific routes win over them)."""
    targets: dict[Family, IPAddress] = {}
    for family in Family:
        if not any(
            r.table == TABLE_MAIN and r.is_default and r.family == family and r.devices()
            for r in state.routes
        ):
            continue
        covered = [
            r.dst
            for r in state.routes
            if r.family == family and not r.is_default and r.source is None
        ]
        # local subnets too: their prefix routes are in main, unless noprefixroute
        covered += [a.ip.network for a in state.addresses if a.family == family]
        if family is Family.INET:
            covered.append(LOOPBACK4)
        target = next(
            (
                ip
                for ip in map(ipaddress.ip_address, OFF_LINK[family])
                if not any(ip in network for network in covered)
            ),
            None,
        )
        if target is None:
            target = _first_gap(covered, *GLOBAL_UNICAST[family])
        if target is not None:
            targets[family] = target
    return targets


def _first_gap(covered: list[IPNetwork], first: IPNetwork, last: IPNetwork) -> IPAddress | None:
    """The lowest address from `first` to the end of `last` that no network covers."""
    spans = sorted((int(n.network_address), int(n.broadcast_address)) for n in covered)
    cursor, end = int(first.network_address) + 1, int(last.broadcast_address)
    for low, high in spans:
        if low > cursor:
            break
        cursor = max(cursor, high + 1)
    if cursor > end:
        return None
    return ipaddress.ip_address(cursor) if first.version == 4 else ipaddress.IPv6Address(cursor)


def _on_link_peer(address: Address) -> IPAddress | None:
    network = address.ip.network
    if network.num_addresses < 4:
        return None  # /31, /32 and their IPv6 likes: no peer to speak of
    first = network.network_address + 1
    return first if first != address.ip.ip else first + 1


def probes(state: HostState, uplinks: Collection[str]) -> list[tuple[IPAddress, IPAddress]]:
    """The (dst, src) route lookups the checks need, for the uplinks' addresses only."""
    wanted = []
    targets = off_link_targets(state)
    for address in _uplink_addresses(state, uplinks):
        target = targets.get(address.family)
        if target is not None:
            wanted.append((target, address.ip.ip))
        peer = _on_link_peer(address)
        if peer is not None:
            wanted.append((peer, address.ip.ip))
    return wanted


def _sysctl(state: HostState, ifname: str, key: str) -> int | None:
    """The effective value: the kernel takes the larger of `all` and the interface's."""
    values = [state.sysctls.get(f"net/ipv4/conf/{n}/{key}") for n in ("all", ifname)]
    numbers = [int(v) for v in values if v is not None and v.isdigit()]
    return max(numbers) if numbers else None


def _sysctl_command(ifname: str, **values: str) -> str:
    """`sysctl -w` of an interface's IPv4 keys, as a shell line: the name in sysctl's dotted
    form (its own dots as slashes) and quoted, since a name may hold `;` or `$(...)`."""
    return shlex.join(
        [
            "sysctl",
            "-w",
            *(
                f"{Sysctl(f'net/ipv4/conf/{ifname}/{key}', value).name}={value}"
                for key, value in values.items()
            ),
        ]
    )


def _inside(prefix: IPNetwork, ordered: list[tuple[int, Address]]) -> list[Address]:
    """The addresses (sorted by integer, one IP version) that lie in `prefix`: found by
    bisecting, since a host may hold thousands and a layout select them by a few prefixes."""
    first = bisect_left(ordered, (int(prefix.network_address),))
    last = int(prefix.broadcast_address)
    found = []
    for value, address in ordered[first:]:
        if value > last:
            break
        found.append(address)
    return found


def _by_integer(addresses: Iterable[Address], family: Family) -> list[tuple[int, Address]]:
    return sorted(
        ((int(a.ip), a) for a in addresses if a.family == family), key=lambda pair: pair[0]
    )


def _marked(state: HostState, desired: Desired, family: Family, present: bool) -> set[IPAddress]:
    """The addresses an nft set selects (sourcemarks.py): with `present`, only those whose
    uplink's fwmark rule is in the kernel."""
    layout = desired.gateway
    found: set[IPAddress] = set()
    live = set(state.rules) if present else set()
    uplinks = {u.name: u for u in desired.uplinks}
    for s in layout.sources.sets if layout is not None and layout.sources is not None else ():
        rules = [
            r
            for r in desired.rules
            if r.fwmark == s.mark and r.family == family and r.table == s.table
        ]
        if s.family == family and (not present or any(r in live for r in rules)):
            found |= {a.ip.ip for a in uplinks[s.uplink].addresses_in(family)}
    return found


def _multi_homed(state: HostState, uplinks: Collection[str]) -> bool:
    return len({a.ifname for a in _uplink_addresses(state, uplinks)}) >= 2


class _Remedy:
    """What `multihome apply` would change, so that a finding prescribes it only when it
    changes the finding; otherwise the finding names a fix that does."""

    def __init__(self, state: HostState, desired: Desired, changes: list[Change]) -> None:
        own = desired.ownership
        self.own = own
        self.on_link, _, self.off_link, _ = own.priorities
        # the planned source rules by what they select with, each group sorted by where
        # its prefix starts: an address's rule is found by bisecting, not by a scan of
        # every rule (an interleaved host plans one per address)
        self.planned: dict[tuple[Family, int, int, int | None], list[tuple[int, Rule]]] = {}
        for rule in desired.rules:
            if rule.src is not None and rule.fwmark is None:
                key = (rule.family, rule.priority, rule.table, rule.suppress_prefixlen)
                self.planned.setdefault(key, []).append((int(rule.src.network_address), rule))
        for group in self.planned.values():
            group.sort(key=lambda item: item[0])
        # an uplink selected by an nft set (sourcemarks.py): its fwmark rules, by priority
        self.marked = {
            (rule.family, rule.priority, rule.table): rule
            for rule in desired.rules
            if rule.fwmark is not None and rule.src is None
        }
        layout = desired.gateway
        self.in_sets = {
            (s.family, s.uplink) for s in (layout.sources.sets if layout and layout.sources else ())
        }
        self.present = set(state.rules)
        # IPv6 uplinks a source route in main selects (plan.py), by (family, device)
        self.sourced: dict[tuple[Family, str], list[Route]] = {}
        for route in desired.routes:
            if route.source is not None and route.dev is not None:
                self.sourced.setdefault((route.family, route.dev), []).append(route)
        self.present_routes = {r for r in state.routes if r.source is not None}
        self.uplinks = {u.name: u for u in desired.uplinks}
        self.addresses = {a for u in desired.uplinks for a in u.addresses}  # a set: O(1) each
        self.added = {c.obj for c in changes if c.action is Action.ADD}
        self.sysctls = {s.path: s.value for s in desired.sysctls}
        self.foreign_first = sorted(
            (r for r in state.rules if not own.owns_rule(r) and r.priority < self.on_link),
            key=lambda r: r.priority,
        )

    def _rule(self, address: Address, priority: int, suppress: int | None) -> Rule | None:
        uplink = self.uplinks.get(address.ifname)
        if uplink is None or address not in self.addresses:
            return None
        if (address.family, uplink.name) in self.in_sets:
            return self.marked.get((address.family, priority, uplink.table))
        group = self.planned.get((address.family, priority, uplink.table, suppress), [])
        value = int(address.ip)
        # the last prefix that starts at or before the address; prefixes of one uplink and
        # priority do not overlap (sources.py), so no other can hold it
        at = bisect_right(group, value, key=lambda item: item[0]) - 1
        if at >= 0 and address.ip.ip in (rule := group[at][1]).src:  # type: ignore[operator]
            return rule
        return None

    def reply(self, address: Address, lookup: Lookup, on_link: bool) -> str:
        """The fix for a reply from `address` that leaves by the wrong interface."""
        version, name = address.family.version, address.ifname
        rule = self._rule(
            address, self.on_link if on_link else self.off_link, 0 if on_link else None
        )
        uplink = self.uplinks.get(name)
        route = next(
            (
                r
                for r in self.sourced.get((address.family, name), ())
                if r.source is not None and address.ip.ip in r.source
            ),
            None,
        )
        if rule is None and not on_link and route is not None and address in self.addresses:
            if route not in self.present_routes or route in self.added:
                return "multihome apply"
            return (
                f"find the rule or route that sends them by {lookup.dev} (table"
                f" {lookup.table}): multihome's `{route.ip_args()}` selects them in main"
            )
        if (
            rule is None
            and on_link
            and uplink is not None
            and address in self.addresses
            and (address.family, self.on_link, uplink.table, 0) not in self.planned
        ):
            # alone on its subnet, the uplink has no rule 1 (plan.py): main's own route to
            # the subnet is its, so another owner's route or rule took these replies
            return (
                f"find the route or rule that sends them by {lookup.dev} (table"
                f" {lookup.table}): {name} alone holds {address.ip.network}, so multihome"
                " leaves its on-link replies to main's route there"
            )
        kind = (address.family, *((self.on_link, 0) if on_link else (self.off_link, None)))
        if (
            rule is None
            and uplink is not None
            and address in self.addresses
            and (kind[0], kind[1], uplink.table, kind[2]) in self.planned
        ):  # its uplink has rules of this kind, and none can hold this address
            return (
                f"{address.ip.ip} is on another interface too: no source rule can tell whose"
                f" it is; remove it from {name} or from the other"
            )
        if rule is None:
            if address in self.addresses and not on_link:
                key = "gateway" if version == 4 else "gateway6"
                return (
                    f"name {name}'s IPv{version} gateway in the config ([uplinks.{name}] {key} ="
                    ' "...") and run multihome apply: without one, apply steers only its'
                    " on-link replies"
                )
            return (
                f"enable IPv{version} for {name} in the config (ipv{version} = true in"
                f" [multihome] and [uplinks.{name}]) and run multihome apply"
            )
        if rule not in self.present or any(
            isinstance(c, Route) and c.table == rule.table for c in self.added
        ):
            return "multihome apply"
        first = next(
            (
                r
                for r in self.foreign_first
                if r.family == address.family
                and r.table == lookup.table
                and (r.src is None or address.ip.ip in r.src)
            ),
            None,
        )
        before = (
            f"rule `{first.ip_args()}`" if first else f"a rule that looks up table {lookup.table}"
        )
        return (
            f"{before} comes before multihome's rules (priority {self.on_link}): set [multihome]"
            " priority below it in the config and run multihome apply"
        )

    def arp(self, names: list[str]) -> bool:
        """Would apply set the ARP sysctls of all these interfaces?"""
        return all(
            self.sysctls.get(f"net/ipv4/conf/{n}/arp_ignore") == "1"
            and self.sysctls.get(f"net/ipv4/conf/{n}/arp_announce") == "2"
            for n in names
        )


def _reply_checks(
    state: HostState,
    lookups: Mapping[tuple[IPAddress, IPAddress], Lookup],
    uplinks: Collection[str],
    remedy: _Remedy,
) -> list[Finding]:
    findings = []
    defaults = {
        (r.family, dev): gateway
        for r in state.routes
        if r.table == TABLE_MAIN and r.is_default
        for dev, gateway in r.gateways()
    }
    targets = off_link_targets(state)
    for address in _uplink_addresses(state, uplinks):
        src = address.ip.ip
        target = targets.get(address.family)
        off = lookups.get((target, src)) if target is not None else None
        if off is not None and not off.error and off.dev != address.ifname:
            own_gateway = defaults.get((address.family, address.ifname))
            other_path = own_gateway is not None and own_gateway != off.gateway
            through = off.gateway or off.dev
            fix = remedy.reply(address, off, on_link=False)
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
                        f" through {through} with the source {src} are dropped by"
                        " anti-spoofing filters upstream"
                        if other_path
                        else f"{off.dev} sends every reply for {src}; {address.ifname} idles"
                    ),
                    fix=fix,
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
                        " accepts this traffic; no need to loosen rp_filter)"
                        if fix == "multihome apply"
                        else f"{fix}; or loosen the check:"
                        f" {_sysctl_command(address.ifname, rp_filter='2')}",
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
                    fix=remedy.reply(address, near, on_link=True),
                )
            )
    return findings


def _arp_flux(state: HostState, uplinks: Collection[str], remedy: _Remedy) -> list[Finding]:
    findings = []
    for subnet, names in shared_subnets(_uplink_addresses(state, uplinks)):
        loose = [
            n
            for n in names
            if (_sysctl(state, n, "arp_ignore") or 0) == 0
            or (_sysctl(state, n, "arp_announce") or 0) == 0
        ]
        if not loose:
            continue
        by_hand = "; ".join(_sysctl_command(n, arp_ignore="1", arp_announce="2") for n in loose)
        findings.append(
            Finding(
                Severity.WARNING,
                "arp-flux",
                f"{', '.join(names)} share {subnet} and answer ARP for each other",
                interfaces=tuple(names),
                evidence=tuple(
                    f"{n}: arp_ignore={_sysctl(state, n, 'arp_ignore')}"
                    f" arp_announce={_sysctl(state, n, 'arp_announce')}"
                    for n in loose
                ),
                consequence="neighbours may resolve every local address to one NIC's MAC,"
                " so that NIC receives all the traffic",
                fix=f"multihome apply (sets arp_ignore=1 and arp_announce=2), or: {by_hand}"
                if remedy.arp(loose)
                else by_hand,
            )
        )
    return findings


def _table_checks(
    state: HostState, uplinks: Collection[str], remedy: _Remedy, changes: list[Change]
) -> list[Finding]:
    findings = []
    own = remedy.own
    filled = {(r.family, r.table) for r in state.routes}
    # Tables that apply would change: a rule of multihome's to an empty table is fixed by
    # apply when apply adds routes to that table or deletes the rule.
    touched = {(c.obj.family, c.obj.table) for c in changes if isinstance(c.obj, Route)}
    deleted = {c.obj for c in changes if c.action is Action.DELETE}
    for rule in state.rules:
        if rule.table in RESERVED_TABLES:  # main, local, default; 0: goto/blackhole rules
            continue
        if (rule.family, rule.table) not in filled:
            by_hand = shlex.join(
                ["ip", f"-{rule.family.version}", "rule", "del", *rule.ip_args().split()]
            )
            fixed = own.owns_rule(rule) and (
                rule in deleted or (rule.family, rule.table) in touched
            )
            findings.append(
                Finding(
                    Severity.ERROR if rule.src is not None else Severity.WARNING,
                    "empty-table",
                    f"rule `{rule.ip_args()}` looks up table {rule.table}, which is empty",
                    address=str(rule.src) if rule.src else None,
                    evidence=(f"ip -{rule.family.version} route show table {rule.table}: empty",),
                    consequence="the lookup falls through to the next rule; the traffic it"
                    " was meant to steer is routed by destination again",
                    fix="multihome apply" if fixed else by_hand,
                )
            )
    # Which (family, table, interface) hold a non-default route, for the on-link check: an
    # index, not a scan of every route per rule (a host may have thousands of each).
    on_link: dict[tuple[Family, int, str], list[IPNetwork]] = {}
    for route in state.routes:
        if not route.is_default and route.source is None:
            for dev in route.devices():
                on_link.setdefault((route.family, route.table, dev), []).append(route.dst)
    local = _uplink_addresses(state, uplinks)
    ordered = {family: _by_integer(local, family) for family in Family}
    reported: set[tuple[int, str]] = set()
    selected = (
        (r, a)
        for r in state.rules
        if r.src is not None and (r.family, r.table) in filled
        for a in _inside(r.src, ordered[r.family])
    )
    for rule, address in selected:
        if (rule.table, address.ifname) in reported or address.ip.network.num_addresses <= 2:
            continue
        routes = on_link.get((rule.family, rule.table, address.ifname), [])
        if any(address.ip.ip in dst for dst in routes):
            continue
        reported.add((rule.table, address.ifname))
        planned = Route(
            address.family,
            rule.table,
            address.ip.network,
            dev=address.ifname,
            prefsrc=address.ip.ip,
        )
        fixed = own.owns_rule(rule) and any(
            isinstance(c, Route) and c.table == rule.table and c.dst == address.ip.network
            for c in remedy.added
        )
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
                fix="multihome apply"
                if fixed
                else shlex.join(
                    ["ip", f"-{address.family.version}", "route", "add", *planned.ip_args().split()]
                ),
            )
        )
    return findings


def _sourced(
    routes: Iterable[Route], family: Family, ordered: list[tuple[int, Address]]
) -> set[IPAddress]:
    """The addresses that IPv6 routes from a prefix in main select (plan.py)."""
    return {
        a.ip.ip
        for r in routes
        if r.source is not None and r.family == family and r.table == TABLE_MAIN
        for a in _inside(r.source, ordered)
    }


def _several_defaults(state: HostState, desired: Desired) -> list[Finding]:
    findings = []
    own = desired.ownership
    for family in Family:
        defaults = [
            r for r in state.routes if r.table == TABLE_MAIN and r.is_default and r.family == family
        ]
        devs = sorted({dev for r in defaults for dev in r.devices()})
        if len(devs) < 2:
            continue
        ordered = _by_integer((a for a in state.addresses if a.ifname in devs), family)
        covered = {
            a.ip.ip
            for r in state.rules
            if r.src and r.family == family
            for a in _inside(r.src, ordered)
        }
        covered |= _marked(state, desired, family, present=True)
        covered |= _sourced(state.routes, family, ordered)
        mine: dict[str, list[IPAddress]] = {}
        for address in state.addresses:
            if address.family == family and address.ifname in devs:
                mine.setdefault(address.ifname, []).append(address.ip.ip)
        if any(all(ip in covered for ip in mine.get(d, [])) for d in devs):
            continue
        after = (
            covered
            | {
                a.ip.ip
                for r in desired.rules
                if r.src and r.family == family and r.priority == own.priorities[2]
                for a in _inside(r.src, ordered)
            }
            | _marked(state, desired, family, present=False)
            | _sourced(desired.routes, family, ordered)
        )
        fixed = any(all(ip in after for ip in mine.get(d, [])) for d in devs)
        findings.append(
            Finding(
                Severity.WARNING,
                "several-defaults",
                f"{len(devs)} IPv{family.version} default routes in main"
                f" ({', '.join(devs)}) and no source rules",
                interfaces=tuple(devs),
                evidence=tuple(f"ip -{family.version} route: {r.ip_args()}" for r in defaults),
                consequence="only the lowest metric is used; the others are spare",
                fix="multihome apply"
                if fixed
                else f"enable IPv{family.version} in the config (ipv{family.version} = true)"
                " and run multihome apply, or delete the spare default routes",
            )
        )
    return findings


def _drift(
    desired: Desired, state: HostState, changes: list[Change], table: str | None
) -> list[Finding]:
    rules, routes = desired.ownership.owned(state)
    if not (rules or routes) or not (changes or table):
        return []
    count = len(changes) + (table is not None)
    what = "rules and routes" + (" and nftables table" if table is not None else "")
    return [
        Finding(
            Severity.WARNING,
            "drift",
            f"multihome's {what} differ from its plan ({count} changes)",
            evidence=tuple(c.describe() for c in changes[:20]) + ((table,) if table else ()),
            consequence="something changed the routing since the last apply (DHCP, a"
            " link flap, another tool), or the config changed",
            fix="multihome apply",
        )
    ]


# Rules per family above which lookups are measurably slower (bench/bench_datapath.py: 41
# rules cost unconnected UDP 12-17 % of stock routing's rate, 4,001 rules 90 %).
MANY_RULES = 64


def _many_rules(state: HostState, desired: Desired) -> list[Finding]:
    """A rule list long enough to slow every route lookup: the kernel walks it in order for
    each unconnected UDP packet, new connection and strict reverse-path check."""
    findings = []
    for family in Family:
        present = [r for r in state.rules if r.family == family]
        if len(present) <= MANY_RULES:
            continue
        own = desired.ownership
        ours = sum(own.owns_rule(r) for r in present)
        foreign = len(present) - ours
        needed = sum(r.family == family for r in desired.rules)
        fixed = len(present) - ours + needed <= MANY_RULES
        findings.append(
            Finding(
                Severity.WARNING,
                "many-rules",
                f"{len(present):,} IPv{family.version} rules: each route lookup walks them;"
                f" multihome's layout needs {needed}",
                evidence=(
                    f"ip -{family.version} rule: {ours:,} of multihome's, {foreign:,} others",
                ),
                consequence="every unconnected UDP packet, new connection and strict"
                " reverse-path check pays for the walk (at 4,000 rules, about a tenth of"
                " stock routing's rate)",
                fix="multihome apply (its layout selects by prefixes, not addresses)"
                if fixed and ours > needed
                else "select by prefixes in the other rules' owner (one rule per subnet,"
                " not per address)",
            )
        )
    return findings


def diagnose(
    state: HostState,
    lookups: Mapping[tuple[IPAddress, IPAddress], Lookup],
    desired: Desired,
    changes: list[Change],
    uplinks: Collection[str],
    table: str | None = None,
) -> Report:
    """The findings about the uplinks (plan.roles; the same names `probes` was given).
    `table`: gateway mode, how multihome's nftables table differs from the plan, if it does."""
    if not _multi_homed(state, uplinks):
        return Report(notes=("single-homed: one uplink, routing is symmetric",))
    remedy = _Remedy(state, desired, changes)
    findings = (
        _reply_checks(state, lookups, uplinks, remedy)
        + _arp_flux(state, uplinks, remedy)
        + _table_checks(state, uplinks, remedy, changes)
        + _several_defaults(state, desired)
        + _many_rules(state, desired)
        + _drift(desired, state, changes, table)
    )
    order = {Severity.ERROR: 0, Severity.WARNING: 1}
    return Report(findings=tuple(sorted(findings, key=lambda f: order[f.severity])))
