"""PURE: gateway mode for IPv6 -- the LAN's delegated prefixes, each routed by its own uplink.

A dual-stack router with two ISPs holds a prefix delegated by each (DHCPv6-PD), and its LAN
hosts an address from each. Forwarded by destination alone, packets from ISP B's prefix
leave through ISP A, whose anti-spoofing filter drops them. Per delegated prefix P_i of
uplink i, one rule in the host mode layout with the prefix as selector:

  priority P+1   lookup main suppress_prefixlength 0   (host mode's: the LAN's routes win)
  priority P+2   from P_i lookup T_i                   forwarded and local traffic from P_i

Rules, not source-specific routes (`default from P_i via G`): one rule per prefix costs the
data path what a few prefix rules cost (about 0.96 of stock, bench/bench_datapath.py), the
same ownership (protocol, priority band) covers them, and doctor and drift read them as they
read host mode's. T_i needs an IPv6 default route: host mode puts one there when the uplink has a
global IPv6 address; a PD router's WAN often has only a link-local one, and then this module
adds it (via the uplink's IPv6 gateway, usually link-local, from main's default route).

Where the prefixes come from, in order:
  config   `[uplinks.NAME] delegated = ["2001:db8:a::/48"]`
  learnt   the LAN interfaces' global addresses (a PD client puts them there), mapped to an
           uplink by the PD client's record (dhcpcd's DHCPv6 lease of that uplink, read by
           host/pd.py, delegates a prefix that holds the address); else the delegated
           prefix around one is the unreachable/blackhole route a PD client installs for it
           (systemd-networkd, dhcpcd, odhcp6c do), else its own /64, and its uplink is known
           only when one uplink has an IPv6 gateway: the route names no uplink, so with
           several `plan` says which prefix needs `delegated` in the config.
ULA prefixes (fc00::/7) are left alone: they do not leave without NPTv6 (kernel/npt.py).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import struct
from collections.abc import Collection, Iterable

from multihome.core.config import Config
from multihome.core.model import (
    DEFAULT_METRIC,
    TABLE_MAIN,
    Delegation,
    Desired,
    Family,
    HostState,
    IPNetwork,
    NextHop,
    NptMapping,
    Route,
    Rule,
    Uplink,
)

RTN_BLACKHOLE, RTN_UNREACHABLE, RTN_PROHIBIT = 6, 7, 8
PD_ROUTE_TYPES = {
    RTN_BLACKHOLE: "blackhole",
    RTN_UNREACHABLE: "unreachable",
    RTN_PROHIBIT: "prohibit",
}
ULA = ipaddress.IPv6Network("fc00::/7")
FORWARDING6 = "net/ipv6/conf/all/forwarding"


def lan_networks(config: Config, state: HostState) -> list[tuple[str, IPNetwork]]:
    """The LAN interfaces' global IPv6 on-link prefixes, ULA left out, in address order."""
    assert config.gateway is not None
    lan = set(config.gateway.lan)
    found: dict[tuple[str, IPNetwork], None] = {}
    for address in state.addresses:
        network = address.ip.network
        if address.ifname in lan and network.version == 6 and not network.subnet_of(ULA):
            found[address.ifname, network] = None
    return sorted(found, key=lambda pair: (pair[1], pair[0]))


def _pd_routes(state: HostState) -> list[Route]:
    """main's unreachable/blackhole/prohibit IPv6 routes of a /64 or wider: a PD client's
    route for the delegated prefix (the LAN's /64s inside it have more specific routes)."""
    return [
        r
        for r in state.routes
        if r.table == TABLE_MAIN
        and r.family is Family.INET6
        and r.type in PD_ROUTE_TYPES
        and 0 < r.dst.prefixlen <= 64
    ]


MIN_LEASED = 32  # the widest prefix a DHCPv6 lease may delegate to an uplink


def _covering(network: IPNetwork, prefixes: list[IPNetwork]) -> IPNetwork | None:
    """The narrowest prefix of `prefixes` that holds `network`."""
    holding = [p for p in prefixes if network.subnet_of(p)]  # type: ignore[arg-type]
    return max(holding, key=lambda p: p.prefixlen) if holding else None


def delegations(
    config: Config, state: HostState, uplinks: list[Uplink]
) -> tuple[list[Delegation], list[str]]:
    """The delegated prefixes by uplink (configured ones first), and notes on the LAN
    prefixes whose uplink cannot be known."""
    chosen = {u.name for u in uplinks}
    owners: dict[IPNetwork, tuple[str, str]] = {}
    notes: list[str] = []
    for uplink in config.uplinks:
        for prefix in uplink.delegated:
            # (an uplink left out, its link down, keeps its delegation: watch deprecates it)
            owners[prefix] = (uplink.name, "config")
    configured_prefixes = list(owners)  # (what is learnt below never overrides these)
    # a lease is the DHCPv6 server's word: no wider than MIN_LEASED (a server cannot claim
    # 2000::/3), and none that overlaps a configured delegation
    recorded = {
        prefix: name
        for name, prefix in state.pd_records
        if name in chosen
        and prefix.prefixlen >= MIN_LEASED
        and not any(prefix.overlaps(c) for c in configured_prefixes)
    }
    routes = _pd_routes(state)
    with_gateway = [u.name for u in uplinks if u.gateway6 is not None]
    lan: dict[IPNetwork, list[tuple[str, IPNetwork]]] = {}
    for ifname, network in lan_networks(config, state):
        configured = _covering(network, configured_prefixes)
        leased = _covering(network, list(recorded))
        if configured is not None:
            prefix = configured
        elif leased is not None:
            prefix = leased
            owners[prefix] = (recorded[prefix], f"learnt: {recorded[prefix]}'s DHCPv6 lease")
        else:
            route = _covering(network, [r.dst for r in routes])
            prefix = route if route is not None else network
            evidence = (
                f"a PD client's {PD_ROUTE_TYPES[next(r.type for r in routes if r.dst == route)]}"
                f" route {route}"
                if route is not None
                else f"address on {ifname}"
            )
            if prefix not in owners:
                if len(with_gateway) == 1:
                    owners[prefix] = (with_gateway[0], f"learnt: {evidence}, one IPv6 uplink")
                else:
                    notes.append(
                        f"{ifname}: {network} ({evidence}) cannot be mapped to an uplink's"
                        f" delegation: its traffic leaves by main's default route; name it in"
                        f' the config: [uplinks.NAME] delegated = ["{prefix}"]'
                    )
                    continue
        lan.setdefault(prefix, []).append((ifname, network))
    found = [
        Delegation(name, prefix, origin, tuple(lan.get(prefix, ())))
        for prefix, (name, origin) in owners.items()
    ]
    return found, notes


def plan_delegations(
    config: Config, state: HostState, uplinks: list[Uplink]
) -> tuple[list[Route], list[Rule], tuple[Delegation, ...], list[str]]:
    """The rules (and default routes in the uplinks' tables) that send each delegated
    prefix's traffic out by its uplink; the delegations; notes for `plan`. The plan drops
    what host mode planned already (its main rule and default routes)."""
    found, notes = delegations(config, state, uplinks)
    if found and state.sysctls.get(FORWARDING6) == "0":
        notes.append(
            "IPv6 forwarding is off (net.ipv6.conf.all.forwarding=0): the LAN's delegated"
            " prefixes are routed for this host's own traffic only"
        )
    by_name = {u.name: u for u in uplinks}
    own = config.ownership
    _, main_rule, off_link, _ = own.priorities
    routes: list[Route] = []
    # main's specific routes first (the LAN's /64s, other prefixes of the LAN): without a
    # global IPv6 address on any uplink host mode plans no IPv6 rule of its own
    rules = [Rule(Family.INET6, main_rule, TABLE_MAIN, None, 0, own.protocol)]
    kept = []
    for item in found:
        uplink = by_name.get(item.uplink)
        if uplink is None:
            kept.append(item)  # announced deprecated by watch, not steered
            notes.append(
                f"{item.uplink}: not an uplink now (link down or no address): its delegated"
                f" {item.prefix} is not steered"
            )
            continue
        gateway = uplink.gateway6
        if gateway is None:
            notes.append(
                f"{uplink.name}: no IPv6 gateway; traffic from its delegated {item.prefix}"
                " is not steered"
            )
            continue
        kept.append(item)
        rules.append(Rule(Family.INET6, off_link, uplink.table, item.prefix, None, own.protocol))
        default = Route(
            Family.INET6,
            uplink.table,
            Family.INET6.any,
            dev=uplink.name,
            gateway=gateway,
            protocol=own.protocol,
            metric=DEFAULT_METRIC[6],
        )
        # host mode routes an uplink with a global IPv6 address already; a WAN with only a
        # link-local address gets its default route here (once for all its prefixes)
        if not uplink.addresses_in(Family.INET6) and default not in routes:
            routes.append(default)
        lans = ", ".join(f"{i} {n}" for i, n in item.lan) or "no LAN address in it yet"
        notes.append(
            f"{uplink.name}: delegated {item.prefix} ({item.origin}; {lans}) leaves by"
            f" {uplink.name}"
        )
    return routes, rules if len(rules) > 1 else [], tuple(kept), notes


# -- a PD client's record: the DHCPv6 reply dhcpcd keeps -----------------------------------

DHCPV6_IA_PD, DHCPV6_IAPREFIX = 25, 26


def _options(data: bytes) -> list[tuple[int, bytes]]:
    """DHCPv6 options (code, length, value), as many as fit whole."""
    found = []
    at = 0
    while at + 4 <= len(data):
        code, length = struct.unpack_from("!HH", data, at)
        at += 4
        if at + length > len(data):
            break
        found.append((code, data[at : at + length]))
        at += length
    return found


def dhcpv6_prefixes(message: bytes) -> list[IPNetwork]:
    """The prefixes a DHCPv6 reply delegates (IA_PD's IAPREFIX options still valid, /64 or
    wider), as dhcpcd keeps the reply in its lease file; anything malformed is left out."""
    found: list[IPNetwork] = []
    for code, body in _options(message[4:]):  # after msg-type and transaction-id
        if code != DHCPV6_IA_PD or len(body) < 12:
            continue
        for inner, value in _options(body[12:]):  # after IAID, T1, T2
            if inner != DHCPV6_IAPREFIX or len(value) < 25:
                continue
            valid, length = int.from_bytes(value[4:8], "big"), value[8]
            if valid == 0 or not 1 <= length <= 64:
                continue
            network = ipaddress.IPv6Network((int.from_bytes(value[9:25], "big"), length), False)
            if network not in found:
                found.append(network)
    return found


# -- RFC 8475: a dead uplink's prefixes deprecated on the LAN ------------------------------

DROP_IN = "multihome-deprecated.conf"
DROP_IN_HEAD = (
    "# Written by multihome watch (RFC 8475): these uplinks are down, so the LAN's prefixes"
    " from their\n# delegations are announced with preferred lifetime 0. Removed when they"
    " are back.\n"
)


def dead_uplinks(desired: Desired, down: Collection[str]) -> set[str]:
    """The uplinks whose delegations are dead: found dead (`down`), or left out of the plan
    (their link is down, or they lost their address)."""
    planned = {u.name for u in desired.uplinks}
    return set(down) | {d.uplink for d in desired.delegations if d.uplink not in planned}


def deprecated(delegations: Iterable[Delegation], dead: Collection[str]) -> list[IPNetwork]:
    """The LAN prefixes to announce deprecated: those of the dead uplinks' delegations."""
    return sorted({network for d in delegations if d.uplink in dead for _, network in d.lan})


def dnsmasq_drop_in(networks: Iterable[IPNetwork]) -> str:
    """dnsmasq's drop-in that announces `networks` deprecated: a later dhcp-range of the same
    prefix with `deprecated` wins over the user's own (measured with dnsmasq 2.89 and 2.90)."""
    lines = [DROP_IN_HEAD.rstrip("\n")]
    lines += [f"dhcp-range={n.network_address},ra-only,{n.prefixlen},deprecated" for n in networks]
    return "\n".join(lines) + "\n"


def is_drop_in(text: str) -> bool:
    """Whether a file holds what dnsmasq_drop_in writes (a drop-in a watch that was killed
    left behind is multihome's to replace or remove; anything else is not)."""
    if not text.startswith(DROP_IN_HEAD):
        return False
    for line in text[len(DROP_IN_HEAD) :].splitlines():
        head, _, rest = line.partition("=")
        prefix, *tail = rest.split(",")
        if (
            head != "dhcp-range"
            or len(tail) != 3
            or tail[0] != "ra-only"
            or tail[2] != "deprecated"
        ):
            return False
        try:
            ipaddress.IPv6Network(f"{prefix}/{tail[1]}")
        except ValueError:
            return False
    return True


# -- NPTv6 (RFC 6296): a ULA LAN through every uplink ---------------------------------------


def outside_prefix(inside: IPNetwork, delegated: IPNetwork) -> IPNetwork | None:
    """The prefix `inside` leaves as on an uplink with this delegation: the delegation's
    subnet of the same length with the inside prefix's subnet id (None: it has no room)."""
    if inside.prefixlen < delegated.prefixlen:
        return None
    subnet_bits = int(inside.network_address) & int(delegated.hostmask)
    value = int(delegated.network_address) | subnet_bits
    return ipaddress.IPv6Network((value, inside.prefixlen))


def plan_npt(
    config: Config,
    uplinks: list[Uplink],
    found: tuple[Delegation, ...],
    dead: Collection[str],
) -> tuple[list[Route], list[Rule], tuple[NptMapping, ...], list[str]]:
    """NPTv6 per uplink for the config's inside prefixes, and their routing: a rule per
    inside prefix to the balancing table, whose IPv6 multipath default route spreads new
    connections over the healthy uplinks by a layer-4 hash (NPT keeps no state: a flow must
    keep its uplink, and the hash keeps it there)."""
    assert config.gateway is not None
    own = config.ownership
    by_name = {u.name: u for u in uplinks}
    mappings: list[NptMapping] = []
    notes: list[str] = []
    for inside in config.gateway.npt:
        for item in (d for d in found if d.uplink in by_name):
            outside = outside_prefix(inside, item.prefix)
            if outside is None:
                notes.append(
                    f"{item.uplink}: NPTv6 needs a prefix as long as {inside} in its"
                    f" delegation {item.prefix}"
                )
                continue
            mappings.append(NptMapping(item.uplink, inside, outside))
    hops = tuple(
        dict.fromkeys(
            NextHop(m.uplink, by_name[m.uplink].gateway6, by_name[m.uplink].weight)
            for m in mappings
            if m.uplink not in dead
        )
    )
    if not mappings:
        return [], [], (), notes
    if not hops:
        return [], [], tuple(mappings), [*notes, "NPTv6: no healthy uplink is left"]
    metric = DEFAULT_METRIC[6]
    table = own.balance_table
    route = (
        Route(Family.INET6, table, Family.INET6.any, dev=hops[0].dev, gateway=hops[0].gateway,
              protocol=own.protocol, metric=metric)
        if len(hops) == 1
        else Route(Family.INET6, table, Family.INET6.any, protocol=own.protocol, metric=metric,
                   nexthops=hops)
    )  # fmt: skip
    rules = [
        Rule(Family.INET6, own.priorities[2], table, inside, None, own.protocol)
        for inside in config.gateway.npt
    ]
    return [route], rules, tuple(mappings), notes


# radvd reloads its configuration on SIGHUP, and has no drop-ins: a dead prefix gets one line,
# `AdvPreferredLifetime 0;` last in its `prefix` block of radvd.conf (the last of a repeated
# option wins), marked so that exactly those lines are removed again.
RADVD_MARK = "# multihome watch: uplink down (RFC 8475)"
_RADVD_PREFIX = re.compile(r"prefix\s+([0-9A-Fa-f:.]+/\d+)\s*\{")


def radvd_restored(text: str) -> str:
    """radvd.conf without multihome's lines."""
    return "".join(line for line in text.splitlines(True) if not line.rstrip().endswith(RADVD_MARK))


def radvd_deprecating(text: str, networks: Collection[IPNetwork]) -> str:
    """radvd.conf (without multihome's lines) with each of `networks` deprecated in its
    `prefix` block; a prefix without a block of its own, or whose block closes on a line
    with more in it (`prefix P { ... };` on one line), is left as it is."""
    text = radvd_restored(text)
    inserts: list[int] = []
    for match in _RADVD_PREFIX.finditer(text):
        try:
            network = ipaddress.ip_network(match.group(1), strict=False)
        except ValueError:
            continue
        end = text.find("}", match.end())
        start = text.rfind("\n", 0, end) + 1  # of the closing line
        if network in networks and end >= 0 and not text[start:end].strip():
            inserts.append(start)
    for at in sorted(inserts, reverse=True):
        line_end = text.find("\n", at)
        closing = text[at : line_end if line_end >= 0 else len(text)]
        indent = closing[: len(closing) - len(closing.lstrip())]
        text = text[:at] + f"{indent}    AdvPreferredLifetime 0; {RADVD_MARK}\n" + text[at:]
    return text


def announced_deprecated(daemon: str, text: str | None) -> set[IPNetwork]:
    """The LAN prefixes multihome's change to the RA daemon's configuration deprecates."""
    found: set[IPNetwork] = set()
    if text is None:
        return found
    if daemon == "radvd":
        for match in _RADVD_PREFIX.finditer(text):
            end = text.find("}", match.end())
            if RADVD_MARK in text[match.end() : end if end >= 0 else len(text)]:
                with contextlib.suppress(ValueError):
                    found.add(ipaddress.ip_network(match.group(1), strict=False))
        return found
    for line in text.splitlines():
        head, _, rest = line.partition("=")
        prefix, *tail = rest.split(",")
        if head == "dhcp-range" and tail[-1:] == ["deprecated"] and len(tail) == 3:
            with contextlib.suppress(ValueError):
                found.add(ipaddress.IPv6Network(f"{prefix}/{tail[1]}"))
    return found
