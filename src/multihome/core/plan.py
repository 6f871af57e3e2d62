"""PURE: from the config (or detected uplinks) and the host's state, what the kernel should hold.

The layout (README.md, "What it creates"), per uplink i with table T_i and each prefix P_i
that selects its addresses (sources.py: the fewest that hold no other interface's address):
  priority P     from P_i lookup T_i suppress_prefixlength 0   on-link replies via the owner,
                                                               where its subnet is shared
  priority P+1   lookup main suppress_prefixlength 0           main's specific routes still win
  priority P+2   from P_i lookup T_i                           off-link replies via its gateway
  priority P+3   lookup T_max (balance = true)                 new connections over the uplinks
T_i holds the uplink's on-link prefix routes (src = its address) and its default route; T_max,
the last table of the range, the multipath default route over the healthy uplinks.
"""

from __future__ import annotations

import enum
from bisect import bisect_left, bisect_right
from collections.abc import Iterable

from multihome.core.config import Config, RpFilter, UplinkConfig
from multihome.core.model import (
    DEFAULT_METRIC,
    RTN_UNICAST,
    SCOPE_LINK,
    SCOPE_UNIVERSE,
    TABLE_MAIN,
    Address,
    Delegation,
    Desired,
    Family,
    GatewayLayout,
    GatewaySource,
    HostState,
    IPAddress,
    IPNetwork,
    NextHop,
    NptMapping,
    Ownership,
    Route,
    Rule,
    SourceMarks,
    SourceSet,
    Sysctl,
    Uplink,
    distinct_networks,
    layout_key,
)
from multihome.core.records import replace
from multihome.core.sources import THRESHOLD, covering_prefixes, outermost
from multihome.errors import ConfigError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from multihome.core.firewall import Firewall

ARP_IGNORE = "1"  # answer ARP only for addresses on the asking interface
ARP_ANNOUNCE = "2"  # use the outgoing interface's own address in ARP requests
RP_FILTER_LOOSE = "2"
MULTIPATH_HASH = {  # 1: hash on the layer-4 flow
    Family.INET: "net/ipv4/fib_multipath_hash_policy",
    Family.INET6: "net/ipv6/fib_multipath_hash_policy",
}


class Role(enum.Enum):
    """What an interface is to multihome; `show` prints it with the reason."""

    UPLINK = "uplink"  # leads to a gateway: gets a table and source rules
    LEFT_OUT = "left out"  # would be an uplink, but is down or has no usable address
    LOOPBACK = "loopback"
    PORT = "port"  # of a bridge or bond: the master carries the addresses
    OTHER = "other"  # a container or VM bridge, a VPN or overlay: no gateway behind it


# How `show` names an interface by its rtnetlink kind, in the reasons.
KIND_WORDS = {
    "": "interface",
    "bridge": "bridge",
    "veth": "veth",
    "wireguard": "WireGuard tunnel",
    "tun": "tun/tap device",
    "vxlan": "VXLAN overlay",
    "gre": "GRE tunnel",
    "ipip": "IPIP tunnel",
    "macvlan": "macvlan",
    "ipvlan": "ipvlan",
    "vlan": "VLAN",
    "bond": "bond",
    "dummy": "dummy",
}


def _default_gateways(state: HostState) -> dict[str, list[str]]:
    """For each interface main holds a default route through (any family, any metric), the
    gateways of those routes, in words ("192.0.2.1", or "no gateway" for a device route)."""
    found: dict[str, list[str]] = {}
    for route in state.routes:
        if route.table != TABLE_MAIN or not route.is_default:
            continue
        hops = [(h.dev, h.gateway) for h in route.nexthops] or [(route.dev, route.gateway)]
        for dev, gateway in hops:
            if dev is None:
                continue  # unreachable/blackhole defaults lead nowhere
            words = str(gateway) if gateway is not None else f"{dev} (no gateway)"
            if words not in found.setdefault(dev, []):
                found[dev].append(words)
    return found


def roles(config: Config, state: HostState) -> dict[str, tuple[Role, str]]:
    """Every interface's role and the reason for it (the README's "What it creates (the rule
    layout)", whose last paragraph says what an uplink is).

    An uplink leads to a gateway: the config names it (then nothing else is one); or main
    holds a default route through it, any family, any metric (DHCP installs one per NIC);
    or it shares an IPv4 subnet with such an interface (two NICs on one switch, the second
    without a route of its own). Container and VM bridges, their veth ports, VPN and overlay
    interfaces have none of these, however they look."""
    families = _families(config)
    named = {u.name for u in config.uplinks}
    defaults = _default_gateways(state)
    by_name: dict[str, list[Address]] = {}
    for address in state.addresses:
        if address.family in families:
            by_name.setdefault(address.ifname, []).append(address)
    names = {i.index: i.name for i in state.interfaces}
    # The IPv4 subnets of interfaces with a default route, for the shared-subnet case: made
    # once, when the first interface with IPv4 subnets and no default route asks (a host
    # whose every addressed interface has one indexes nothing).
    # (distinct networks: a host may have thousands of addresses on a few subnets)
    routed: dict[tuple[IPNetwork, str], None] | None = None
    result: dict[str, tuple[Role, str]] = {}
    for interface in state.interfaces:
        name = interface.name
        if interface.loopback:
            result[name] = (Role.LOOPBACK, "loopback")
            continue
        if interface.master is not None:
            master = names.get(interface.master, f"ifindex {interface.master}")
            result[name] = (Role.PORT, f"port of {master}")
            continue
        if config.gateway is not None and name in config.gateway.lan:
            result[name] = (Role.OTHER, "LAN interface ([gateway] lan): not an uplink")
            continue
        why = ""
        if config.uplinks:
            if name in named:
                why = "named in the config"
        elif name in defaults:
            why = "default route via " + ", ".join(defaults[name])
        else:
            mine = {
                a.ip.network
                for a in by_name.get(name, ())
                if a.family is Family.INET and a.ip.network.prefixlen < 32
            }
            if mine and routed is None:
                routed = {
                    (network, a.ifname): None
                    for a, network in distinct_networks(state.addresses)
                    if a.ifname in defaults and network.version == 4 and network.prefixlen < 32
                }
            shared = next(
                (
                    (subnet, other)
                    for subnet in sorted(mine)
                    for network, other in routed or {}
                    if other != name and subnet.overlaps(network)
                ),
                None,
            )
            if shared is not None:
                why = f"shares {shared[0]} with {shared[1]}, which has a default route"
        kind = KIND_WORDS.get(interface.kind, interface.kind)
        if not why:
            result[name] = (
                Role.OTHER,
                "not in the config's [uplinks]: not managed"
                if config.uplinks
                else f"{kind} with no default route: not an uplink",
            )
        elif not interface.up:
            result[name] = (Role.LEFT_OUT, f"{why}, but the link is down: left out until it is up")
        elif not by_name.get(name):
            result[name] = (Role.LEFT_OUT, f"{why}, but it has no global address: left out")
        else:
            result[name] = (Role.UPLINK, why)
    return result


def uplink_names(detected: dict[str, tuple[Role, str]]) -> list[str]:
    """The interfaces `roles` found to be uplinks, in interface order."""
    return [name for name, (role, _) in detected.items() if role is Role.UPLINK]


def _families(config: Config) -> tuple[Family, ...]:
    return tuple(f for f, on in ((Family.INET, config.ipv4), (Family.INET6, config.ipv6)) if on)


RTPROT_RA, RTPROT_DHCP = 9, 16
DYNAMIC = {RTPROT_DHCP: GatewaySource.DHCP, RTPROT_RA: GatewaySource.RA}


_Defaults = dict[tuple[str | None, Family], tuple[int, IPAddress, int]]


def _main_defaults(routes: tuple[Route, ...]) -> _Defaults:
    """main's default routes by (device, family): (metric, gateway, protocol) of the lowest
    metric. Made once per plan: every uplink asks."""
    best: _Defaults = {}
    for route in routes:
        if route.table != TABLE_MAIN or not route.is_default:
            continue
        for dev, gateway in route.gateways():
            key = (dev, route.family)
            if key not in best or route.metric < best[key][0]:
                best[key] = (route.metric, gateway, route.protocol)
    return best


def _main_default_gateway(
    defaults: _Defaults, ifname: str, family: Family
) -> tuple[IPAddress | None, GatewaySource]:
    """The gateway of main's default route through this interface (lowest metric wins), and
    whether DHCP or a router advertisement put it there (it may change then)."""
    best = defaults.get((ifname, family))
    if best is None:
        return None, GatewaySource.NONE
    return best[1], DYNAMIC.get(best[2], GatewaySource.MAIN_DEFAULT)


def _on_subnet(gateway: IPAddress, addresses: Iterable[Address]) -> bool:
    if gateway.version == 6 and gateway.is_link_local:
        return True  # a link-local gateway is on every IPv6 link
    return any(gateway in a.ip.network for a in addresses if a.ip.version == gateway.version)


def _foreign_tables(state: HostState, ownership: Ownership) -> set[int]:
    """Tables that hold routes, or are looked up by rules, that are not multihome's (nor
    what `multihome install` persisted, which the host's stack put back)."""
    tables = {
        r.table
        for r in state.routes
        if not ownership.owns_route(r) and not ownership.is_installed(r)
    }
    tables |= {
        r.table
        for r in state.rules
        if not ownership.owns_rule(r) and not ownership.is_installed(r)
    }
    return tables


# (not `multihome show`: with the config that names the interface, it fails the same way)
NO_SUCH_INTERFACE = "`ip -br link` lists the interfaces; name one of them, or remove the section"


def detect_uplinks(config: Config, state: HostState) -> tuple[list[UplinkConfig], list[str]]:
    """The uplinks to manage (see `roles`): the config's, else the detected ones."""
    for uplink in config.uplinks:
        if state.interface(uplink.name) is None:
            raise config.error(
                f"no interface named {uplink.name!r} on this host",
                f"uplinks.{uplink.name}",
                hint=NO_SUCH_INTERFACE,
            )
    detected = roles(config, state)
    chosen = set(uplink_names(detected))
    notes = [
        f"{uplink.name}: {detected[uplink.name][1]}"
        for uplink in config.uplinks
        if detected[uplink.name][0] is Role.LEFT_OUT
    ]
    if config.uplinks:
        return [u for u in config.uplinks if u.name in chosen], notes
    return [UplinkConfig(name) for name in detected if name in chosen], notes


def _local_probe_targets(state: HostState, chosen: list[UplinkConfig]) -> list[str]:
    """A probe target that is an address of this host never leaves it and is answered with
    the uplink dead: said in a note, and `watch` does not probe it. Not an error: the
    address may move here later (a VRRP address), and every reconcile must still work."""
    if not any(uplink.probe or uplink.probe6 for uplink in chosen):
        return []  # (most configs: then the host's addresses need no index)
    local = {a.ip.ip: a.ifname for a in state.addresses}
    return [
        f"{uplink.name}: probe target {target} is an address of this host ({local[target]}),"
        " answered even with the uplink dead: not probed; probe a host beyond the gateway"
        for uplink in chosen
        for target in (*uplink.probe, *uplink.probe6)
        if target in local
    ]


def _gateways(
    config: Config, state: HostState, chosen: list[UplinkConfig]
) -> dict[tuple[str, Family], tuple[IPAddress | None, GatewaySource]]:
    """Each uplink's gateway per family, in the order: config, main's default, shared subnet."""
    found: dict[tuple[str, Family], tuple[IPAddress | None, GatewaySource]] = {}
    defaults = _main_defaults(state.routes)
    for uplink in chosen:
        addresses = state.addresses_of(uplink.name)
        for family in _families(config):
            configured = uplink.gateway4 if family is Family.INET else uplink.gateway6
            if configured is not None:
                key = "gateway" if family is Family.INET else "gateway6"
                if not _on_subnet(configured, addresses):
                    subnets = ", ".join(str(a.ip.network) for a in addresses if a.family == family)
                    raise config.error(
                        f"gateway {configured} is not on {uplink.name}'s subnet"
                        f" ({subnets or 'no address'})",
                        f"uplinks.{uplink.name}.{key}",
                    )
                # a route via its own address would deliver the uplink's traffic to this host
                # (IPv6 refuses it); a link-local address is its link's alone: fe80::1 on a
                # bridge for the guests does not make the uplink's fe80::1 router this host
                local = configured.version == 6 and configured.is_link_local
                held = addresses if local else state.addresses
                holder = next((a.ifname for a in held if a.ip.ip == configured), None)
                if holder is not None:
                    raise config.error(
                        f"gateway {configured} is an address of this host ({holder}), not"
                        " a router's",
                        f"uplinks.{uplink.name}.{key}",
                        hint=f"give the address of the router on {uplink.name}'s subnet",
                    )
                found[uplink.name, family] = (configured, GatewaySource.CONFIG)
                continue
            found[uplink.name, family] = _main_default_gateway(defaults, uplink.name, family)
    # Several NICs on one subnet (the article's set-up): the others share the gateway. Only
    # an uplink's own gateway is shared (not one shared in turn), so the candidates are
    # known before the loop: an uplink without a gateway looks only at them (a family
    # without any gateway costs nothing, however many uplinks there are).
    for family in _families(config):
        candidates = [
            (other.name, gateway)
            for other in chosen
            for gateway, source in (found[other.name, family],)
            if gateway is not None
            and source is not GatewaySource.SHARED_SUBNET
            and not (gateway.version == 6 and gateway.is_link_local)
        ]
        if not candidates:
            continue
        for uplink in chosen:
            if found[uplink.name, family][0] is not None:
                continue
            addresses = state.addresses_of(uplink.name)
            for name, gateway in candidates:
                if name != uplink.name and _on_subnet(gateway, addresses):
                    found[uplink.name, family] = (gateway, GatewaySource.SHARED_SUBNET)
                    break
    return found


def _tables(config: Config, state: HostState, chosen: list[UplinkConfig]) -> dict[str, int]:
    """A table per uplink: the configured one, the one it already has, else the lowest free."""
    ownership = config.ownership
    foreign = _foreign_tables(state, ownership)
    tables: dict[str, int] = {}
    for uplink in chosen:
        if uplink.table is not None:
            if uplink.table in foreign:
                raise config.error(
                    f"table {uplink.table} already holds routes or rules multihome did not create",
                    f"uplinks.{uplink.name}.table",
                    hint=f"see `ip route show table {uplink.table}`; pick another table",
                )
            tables[uplink.name] = uplink.table
    taken = set(tables.values())
    owned_tables: dict[str, list[int]] = {}  # by device, once (not all routes per uplink)
    for route in state.routes:
        if not ownership.table_min <= route.table <= ownership.table_max:
            continue  # (main holds multihome's IPv6 routes from a prefix: not a table of its)
        if ownership.owns_route(route) or ownership.is_installed(route):
            for dev in route.devices():
                owned_tables.setdefault(dev, []).append(route.table)
    for uplink in chosen:  # keep the table an uplink already has (stable across re-plans)
        if uplink.name in tables:
            continue
        # (the balancing table's multipath route names every uplink: it is nobody's table)
        existing = sorted(
            t
            for t in owned_tables.get(uplink.name, ())
            if t not in taken and t != ownership.balance_table
        )
        if existing:
            tables[uplink.name] = existing[0]
            taken.add(existing[0])
    balancing = config.balance or config.gateway is not None
    reserved = {ownership.balance_table} if balancing else set()
    free = (
        t
        for t in range(ownership.table_min, ownership.table_max + 1)
        if t not in taken and t not in foreign and t not in reserved
    )
    for uplink in chosen:
        if uplink.name not in tables:
            table = next(free, None)
            if table is None:
                raise ConfigError(
                    f"no free table left in {ownership.table_min}-{ownership.table_max}"
                    f" for uplink {uplink.name}",
                    path=config.path,
                    key="multihome.table_range",
                    hint="widen [multihome] table_range",
                )
            tables[uplink.name] = table
    return tables


def _source_routed(
    config: Config,
    state: HostState,
    family: Family,
    members: list[Uplink],
    prefixes: dict[str, list[IPNetwork]],
    sharing: set[str],
    marked: dict[str, SourceSet],
) -> set[str]:
    """The IPv6 uplinks whose layout a source-specific route in main expresses, so that they
    need no table (`default from P via G`: main's specific routes and its route to the
    uplink's own prefix win by their longer destination) and one rule per prefix, `from P
    lookup main` at rule 3's priority, which costs one table lookup where the rules cost
    three (bench/bench_datapath_ipv6.py) and keeps the route ahead of anyone's
    `suppress_prefixlength 0` rule (wg-quick's, Tailscale's), which would hide it: alone on
    their prefixes, with a gateway, in host mode without balancing, not selected by an nft
    set, and no route of another owner's in main from the same prefix; not where the config
    says `ipv6_source_routes = false` (a kernel without IPV6_SUBTREES refuses them)."""
    if family is not Family.INET6 or config.gateway is not None or config.balance:
        return set()
    if not config.ipv6_source_routes:
        return set()
    own = config.ownership
    taken = {
        r.source
        for r in state.routes
        if r.table == TABLE_MAIN
        and r.source is not None
        and not own.owns_route(r)
        and not own.is_installed(r)  # (the stack's copy after a reboot is this layout)
    }
    return {
        u.name
        for u in members
        if u.name not in sharing
        and u.name not in marked
        and u.gateway(family) is not None
        and prefixes[u.name]
        and not any(t.overlaps(p) for t in taken for p in prefixes[u.name])
    }


def _source_routes(
    uplink: Uplink, family: Family, prefixes: list[IPNetwork], protocol: int
) -> list[Route]:
    """`default from P via G dev U` in main, one per prefix that selects the uplink."""
    return [
        Route(
            family,
            TABLE_MAIN,
            family.any,
            dev=uplink.name,
            gateway=uplink.gateway(family),
            protocol=protocol,
            metric=DEFAULT_METRIC[family.version],
            source=prefix,
        )
        for prefix in prefixes
    ]


def _uplink_routes(uplink: Uplink, family: Family, protocol: int) -> list[Route]:
    routes = []
    metric = DEFAULT_METRIC[family.version]
    for address, network in uplink.networks_in(family):
        if network.prefixlen == network.max_prefixlen:
            continue  # a /32 or /128 has no on-link neighbours
        routes.append(
            Route(
                family,
                uplink.table,
                network,
                dev=uplink.name,
                prefsrc=address.ip.ip,
                scope=SCOPE_LINK if family is Family.INET else SCOPE_UNIVERSE,
                protocol=protocol,
                metric=metric,
            )
        )
    gateway = uplink.gateway(family)
    if gateway is not None:
        routes.append(
            Route(
                family,
                uplink.table,
                family.any,
                dev=uplink.name,
                gateway=gateway,
                protocol=protocol,
                metric=metric,
            )
        )
    return routes


def shared_subnets(addresses: Iterable[Address]) -> list[tuple[IPNetwork, list[str]]]:
    """IPv4 subnets that addresses of two or more interfaces fall into (ARP flux), each as
    its widest network and the interfaces, sorted. Prefixes nest or are disjoint, so one
    sweep over the networks sorted by start (widest first) finds them: linear, not pairwise.
    """
    pairs = distinct_networks(addresses)
    networks = sorted(
        {(network, a.ifname) for a, network in pairs if network.version == 4},
        key=lambda item: (int(item[0].network_address), item[0].prefixlen, item[1]),
    )
    groups: list[tuple[IPNetwork, set[str]]] = []
    end = -1
    for network, ifname in networks:
        if int(network.network_address) > end:
            groups.append((network, set()))
            end = int(network.broadcast_address)
        groups[-1][1].add(ifname)
    return [(network, sorted(names)) for network, names in groups if len(names) >= 2]


def _source_prefixes(
    state: HostState, members: list[Uplink], family: Family
) -> tuple[dict[str, list[IPNetwork]], set[str]]:
    """Each uplink's source selectors in this family: the fewest prefixes inside its on-link
    networks that hold its addresses and no address of another interface (sources.py); and
    the uplinks whose on-link networks hold another interface's address (only they need
    rule 1: elsewhere main's own route to the subnet leaves by the uplink already). The
    addresses are sorted once; each network takes its slice of them by bisecting (a host
    with 100 uplinks would otherwise scan every address for each)."""
    everyone = sorted((int(a.ip), a.ifname) for a in state.addresses if a.family == family)
    values = [value for value, _ in everyone]
    found = {}
    sharing = set()
    for uplink in members:
        networks = [n for _, n in uplink.networks_in(family)]
        inside = {
            pair
            for n in networks
            for pair in everyone[
                bisect_left(values, int(n.network_address)) : bisect_right(
                    values, int(n.broadcast_address)
                )
            ]
        }
        others = [value for value, name in inside if name != uplink.name]
        if others:
            sharing.add(uplink.name)
        found[uplink.name] = covering_prefixes(
            networks, (int(a.ip) for a in uplink.addresses_in(family)), others
        )
    return found, sharing | _main_not_by_owner(state, members, family, sharing)


def _main_not_by_owner(
    state: HostState, members: list[Uplink], family: Family, sharing: set[str]
) -> set[str]:
    """The uplinks (of those not sharing a subnet) whose on-link replies main would not send
    by themselves: an outermost network of theirs without main's own route to it by the
    uplink (an address with noprefixroute), or with a route of main inside it, as long or
    longer, that leaves another way (wg-quick's /32 of a peer, a VPN's route to the LAN):
    they keep rule 1. One pass over main's routes."""
    spans: list[tuple[int, int, IPNetwork, str]] = []
    for uplink in members:
        if uplink.name in sharing:
            continue
        spans += [
            (int(n.network_address), int(n.broadcast_address), n, uplink.name)
            for n in outermost(n for _, n in uplink.networks_in(family))
        ]
    if not spans:
        return set()
    routed: set[tuple[IPNetwork, str]] = set()
    found = set()
    for route in state.routes:
        if route.table != TABLE_MAIN or route.family is not family or route.is_default:
            continue
        first, last = int(route.dst.network_address), int(route.dst.broadcast_address)
        for start, end, network, name in spans:
            if not start <= first <= last <= end:
                continue  # (a shorter route outside it loses to the network's own)
            if route.dev != name or route.gateway or route.nexthops or route.type != RTN_UNICAST:
                found.add(name)
            elif route.dst == network:  # (DHCP's /32 to the gateway by it is fine too)
                routed.add((network, name))
    return found | {name for _, _, network, name in spans if (network, name) not in routed}


def _selection_why(
    state: HostState, uplink: Uplink, family: Family, prefixes: list[IPNetwork]
) -> str:
    """Why an uplink's rules select these prefixes in this family, in a few words."""
    networks = [n for _, n in uplink.networks_in(family)]
    if prefixes == sorted(networks, key=lambda n: (n.network_address, n.prefixlen)):
        return "its subnet" if len(networks) == 1 else "its subnets"  # (no one else's in them)
    sharing = sorted(
        {
            a.ifname
            for a in state.addresses
            if a.ifname != uplink.name and any(a.ip.ip in n for n in networks)
        }
    )
    if sharing:
        return f"subnet shared with {', '.join(sharing)}"
    # its own (a /32 inside its /24 is one subnet)
    return "its subnet" if len(prefixes) == 1 else "its subnets"


def _in_sets(state: HostState, config: Config, members: list[Uplink], family: Family) -> set[int]:
    """The tables of the uplinks an nft set selects now in this family: the nft form's
    mirror of rule 1 (`fwmark V_i/M lookup T_i suppress_prefixlength 0`, its alone) is
    there, multihome's or the one `multihome install` persisted, with the uplink's mark."""
    from multihome.core.gateway import mark

    own, mask = config.ownership, config.mark_mask
    wanted = {(u.table, mark(mask, u.table - own.table_min + 1)) for u in members}
    return {
        r.table
        for r in state.rules
        if r.priority == own.priority
        and r.family is family
        and r.suppress_prefixlen == 0
        and r.fwmask == mask
        and (r.table, r.fwmark) in wanted
        and (own.owns_rule(r) or own.is_installed(r))
    }


def _source_sets(
    config: Config,
    state: HostState,
    members: list[Uplink],
    family: Family,
    prefixes: dict[str, list[IPNetwork]],
    notes: list[str],
    above: int | None,
) -> dict[str, SourceSet]:
    """The uplinks of this family whose addresses are more prefixes than `above` (None:
    sources.THRESHOLD), each with the nft set that selects it instead; an uplink a set
    selects already keeps it down to half as many (no switch of form on each address that
    comes and goes at the threshold)."""
    above = THRESHOLD if above is None else above
    if all(len(found) <= above // 2 for found in prefixes.values()):
        return {}  # (the usual host: sourcemarks is not even imported)
    now = _in_sets(state, config, members, family)
    limits = {u.name: above // 2 if u.table in now else above for u in members}
    if all(len(found) <= limits[name] for name, found in prefixes.items()):
        return {}
    from multihome.core import sourcemarks

    sets, extra = sourcemarks.plan_sources(
        config.ownership, config.mark_mask, members, family, prefixes, limits
    )
    notes += extra
    return {s.uplink: s for s in sets}


def _with_source_sets(
    config: Config,
    uplinks: list[Uplink],
    layout: GatewayLayout | None,
    source_sets: list[SourceSet],
    rules: list[Rule],
    sysctls: list[Sysctl],
) -> GatewayLayout:
    """Add the nft form's fwmark rules (the same objects as gateway mode's where they
    coincide: once each) and sysctl to `rules` and `sysctls`; the layout that carries the
    sets (gateway mode's, or a table of the sets alone)."""
    from multihome.core import sourcemarks

    marks = SourceMarks(config.mark_mask, tuple(source_sets))
    with_gateway = {
        (u.name, family) for u in uplinks for family in Family if u.gateway(family) is not None
    }
    present = set(rules)
    for rule in sourcemarks.rules(marks, config.ownership, with_gateway):
        if rule not in present:
            present.add(rule)
            rules.append(rule)
    paths = {s.path for s in sysctls}
    sysctls += [s for s in sourcemarks.sysctls(marks) if s.path not in paths]
    if layout is None:
        return GatewayLayout(
            lan=(), marks=(), mask=config.mark_mask, masquerade=False, sources=marks
        )
    return replace(layout, sources=marks)


def _stale_install(ownership: Ownership, rules: list[Rule]) -> list[str]:
    """A note where `multihome install` persisted rules this plan no longer has (an older
    multihome's layout, or the host changed since): the stack brings them back at each boot,
    and apply leaves them, as everything the stack owns."""
    if not ownership.installed:
        return []
    planned = {layout_key(r) for r in rules}
    stale = [k for k in ownership.installed if k.startswith("rule ") and k not in planned]
    if not stale:
        return []
    return [
        f"{len(stale)} rules that `multihome install` persisted are not in this plan (an older"
        " layout, or the host changed since): the network stack brings them back at every"
        " boot; run `multihome install` again to rewrite its files"
    ]


def _sysctls(config: Config, uplinks: list[Uplink]) -> list[Sysctl]:
    sysctls: list[Sysctl] = []
    if config.manage_arp:
        sharing = {
            name
            for _, names in shared_subnets(a for u in uplinks for a in u.addresses)
            for name in names
        }
        for uplink in uplinks:
            if uplink.name in sharing:
                conf = f"net/ipv4/conf/{uplink.name}"
                sysctls += [
                    Sysctl(f"{conf}/arp_ignore", ARP_IGNORE),
                    Sysctl(f"{conf}/arp_announce", ARP_ANNOUNCE),
                ]
    if config.rp_filter is RpFilter.LOOSE:
        sysctls += [
            Sysctl(f"net/ipv4/conf/{u.name}/rp_filter", RP_FILTER_LOOSE)
            for u in uplinks
            if u.addresses_in(Family.INET)
        ]
    return sysctls


def _balancing(
    config: Config, state: HostState, uplinks: list[Uplink], down: frozenset[str], family: Family
) -> tuple[list[Route], list[Rule], list[Sysctl], list[str]]:
    """Outbound balancing: new connections that no source rule claims spread over the
    healthy uplinks by weight (a multipath default route in multihome's last table, looked
    up after the source rules and main's specific routes), per IP version. Layer-4 hashing
    keeps each connection on one path, and the source rules keep its replies there."""
    own = config.ownership
    if own.balance_table in _foreign_tables(state, own):
        raise config.error(
            f"table {own.balance_table} (the balancing table) holds routes or rules multihome"
            " did not create",
            "multihome.balance",
            hint="change [multihome] table_range",
        )
    v = family.version
    hops = [
        NextHop(u.name, gateway, u.weight)
        for u in uplinks
        if (gateway := u.gateway(family)) is not None
        and u.addresses_in(family)
        and u.name not in down
    ]
    notes = [f"{name}: down over IPv{v}, left out of its balancing route" for name in sorted(down)]
    if not hops:
        return [], [], [], [*notes, f"balancing: no healthy uplink with an IPv{v} gateway"]
    metric = DEFAULT_METRIC[v]  # what the kernel reads back (IPv6: 1024)
    if len(hops) == 1:
        route = Route(
            family,
            own.balance_table,
            family.any,
            dev=hops[0].dev,
            gateway=hops[0].gateway,
            protocol=own.protocol,
            metric=metric,
        )
    else:
        route = Route(
            family,
            own.balance_table,
            family.any,
            protocol=own.protocol,
            metric=metric,
            nexthops=tuple(hops),
        )
    rule = Rule(family, own.priorities[3], own.balance_table, None, None, own.protocol)
    return [route], [rule], [Sysctl(MULTIPATH_HASH[family], "1")], notes


def plan(
    config: Config,
    state: HostState,
    down: frozenset[str] = frozenset(),
    down6: frozenset[str] = frozenset(),
    firewall: Firewall | None = None,
    sets_above: int | None = None,
) -> Desired:
    """What multihome should own in this namespace. Raises ConfigError for a bad config.

    `down`, `down6`: uplinks the IPv4 / IPv6 health checks found dead (multihome watch); they
    keep their tables and source rules, and leave that family's balancing route.
    `firewall`: the host's NAT and mark rules as read (None: not read), for inbound pinning.
    `sets_above`: the prefixes per uplink above which an nft set selects its sources
    (sourcemarks.THRESHOLD; a test of many rules sets it higher)."""
    ownership = config.ownership
    chosen, notes = detect_uplinks(config, state)
    # gateway mode plans its table for one uplink too: the LAN needs masquerade on the WAN
    # that is left (or the only one), and its marks must stay when another WAN goes down
    if not config.uplinks and len(chosen) < (1 if config.gateway is not None else 2):
        names = ", ".join(u.name for u in chosen) or "none"
        notes.append(
            f"single-homed (uplinks: {names}): destination routing is already symmetric,"
            " nothing to do"
        )
        return Desired(ownership, notes=tuple(notes))
    gateways = _gateways(config, state, chosen)
    notes += _local_probe_targets(state, chosen)
    tables = _tables(config, state, chosen)
    families = _families(config)
    uplinks = []
    for chosen_uplink in sorted(chosen, key=lambda u: tables[u.name]):
        name = chosen_uplink.name
        wanted = {
            f for f in families if (chosen_uplink.ipv4 if f is Family.INET else chosen_uplink.ipv6)
        }
        gw4, src4 = gateways.get((name, Family.INET), (None, GatewaySource.NONE))
        gw6, src6 = gateways.get((name, Family.INET6), (None, GatewaySource.NONE))
        uplinks.append(
            Uplink(
                name=name,
                table=tables[name],
                addresses=tuple(a for a in state.addresses_of(name) if a.family in wanted),
                gateway4=gw4 if Family.INET in wanted else None,
                gateway6=gw6 if Family.INET6 in wanted else None,
                source4=src4 if Family.INET in wanted else GatewaySource.NONE,
                source6=src6 if Family.INET6 in wanted else GatewaySource.NONE,
                weight=chosen_uplink.weight,
            )
        )
    on_link, main_rule, off_link, _ = ownership.priorities
    routes: list[Route] = []
    rules: list[Rule] = []
    selected: dict[str, list[IPNetwork]] = {u.name: [] for u in uplinks}
    reasons: dict[str, list[str]] = {u.name: [] for u in uplinks}
    source_sets: list[SourceSet] = []
    for family in families:
        members = [u for u in uplinks if u.addresses_in(family)]
        if not members:
            continue
        prefixes, sharing = _source_prefixes(state, members, family)
        marked = _source_sets(config, state, members, family, prefixes, notes, sets_above)
        source_sets += marked.values()
        routed = _source_routed(config, state, family, members, prefixes, sharing, marked)
        protocol = ownership.protocol
        for uplink in members:
            if uplink.name in routed:
                routes += _source_routes(uplink, family, prefixes[uplink.name], protocol)
            else:
                routes += _uplink_routes(uplink, family, protocol)
        for uplink in members:
            why = _selection_why(state, uplink, family, prefixes[uplink.name])
            if uplink.name in marked:  # too many prefixes: an nft set selects them
                from multihome.core import sourcemarks

                why = sourcemarks.why(marked[uplink.name], why, sets_above or THRESHOLD)
                prefixes[uplink.name] = []
            selected[uplink.name] += prefixes[uplink.name]
            if why not in reasons[uplink.name]:
                reasons[uplink.name].append(why)
            if uplink.name in routed:
                reasons[uplink.name].append(f"IPv{family.version}: a route in main, no table")
        rules += [
            Rule(family, off_link, TABLE_MAIN, p, None, protocol)
            for uplink in members
            if uplink.name in routed
            for p in prefixes[uplink.name]
        ]
        if len(routed) == len(members):
            continue  # (not main's suppress rule: no table of this family to fall through to)
        for uplink in members:
            if uplink.name not in sharing:  # alone on its subnets: main's route is its own
                continue
            rules += [
                Rule(family, on_link, uplink.table, p, 0, protocol) for p in prefixes[uplink.name]
            ]
        rules.append(Rule(family, main_rule, TABLE_MAIN, None, 0, protocol))
        for uplink in members:
            if uplink.gateway(family) is None:
                notes.append(
                    f"{uplink.name}: no IPv{family.version} gateway; only on-link replies"
                    " are steered"
                    if uplink.name in sharing
                    else f"{uplink.name}: no IPv{family.version} gateway, so no rule: its"
                    " on-link replies leave by it already (main's route to its subnet)"
                )
                continue
            if uplink.name not in routed:
                rules += [
                    Rule(family, off_link, uplink.table, p, None, protocol)
                    for p in prefixes[uplink.name]
                ]
    set_names: dict[str, list[str]] = {}  # by uplink (not every set asked per uplink)
    for source_set in source_sets:
        set_names.setdefault(source_set.uplink, []).append(source_set.name)
    uplinks = [
        replace(
            u,
            sources=tuple(selected[u.name]),
            sources_why="; ".join(reasons[u.name]),
            source_sets=tuple(set_names.get(u.name, ())),
        )
        for u in uplinks
    ]
    sysctls = _sysctls(config, uplinks)
    layout = None
    for family in families:
        # gateway mode balances forwarded IPv4 (it NATs); IPv6 only with balance = true
        if not (config.balance or (config.gateway and family is Family.INET)):
            continue
        if family is Family.INET6 and not any(u.addresses_in(family) for u in uplinks):
            continue  # an IPv4-only host: nothing to say about IPv6 balancing
        extra_routes, extra_rules, extra_sysctls, extra_notes = _balancing(
            config, state, uplinks, down if family is Family.INET else down6, family
        )
        routes += extra_routes
        rules += extra_rules
        sysctls += extra_sysctls
        notes += extra_notes
    if config.gateway is not None and Family.INET in families:
        from multihome.core import gateway  # gateway mode: fwmark rules and the nftables layout

        extra_rules, extra_sysctls, layout = gateway.plan_gateway(config, state, uplinks, off_link)
        rules += extra_rules
        replaced = {s.path for s in extra_sysctls}
        sysctls = [s for s in sysctls if s.path not in replaced] + extra_sysctls
    delegations: tuple[Delegation, ...] = ()
    npt: tuple[NptMapping, ...] = ()
    if config.gateway is not None and Family.INET6 in families:
        from multihome.core import delegation  # the LAN's delegated IPv6 prefixes

        extra_routes, extra_rules, delegations, extra_notes = delegation.plan_delegations(
            config, state, uplinks
        )
        known_routes, known_rules = set(routes), set(rules)  # (not a list scan per object)
        routes += [r for r in extra_routes if r not in known_routes]
        rules += [r for r in extra_rules if r not in known_rules]
        notes += extra_notes
        npt_routes, npt_rules, npt, npt_notes = delegation.plan_npt(
            config, uplinks, delegations, down | down6
        )
        # (with balance = true the balancing table has its IPv6 route already)
        if not any(r.table == ownership.balance_table and r.family is Family.INET6 for r in routes):
            routes += npt_routes
        rules += npt_rules
        notes += npt_notes
        if npt and Sysctl(MULTIPATH_HASH[Family.INET6], "1") not in sysctls:
            sysctls.append(Sysctl(MULTIPATH_HASH[Family.INET6], "1"))
    pinning: list[str] = []
    # (no firewall read: no pinning, and gateway.py is not imported for show and plan)
    if config.gateway is None and Family.INET in families and firewall is not None:
        from multihome.core import gateway  # inbound pinning: the same table, no LAN side

        extra_rules, extra_sysctls, layout, extra_notes, pinning = gateway.plan_pinning(
            config, state, uplinks, firewall, off_link
        )
        rules += extra_rules
        sysctls += extra_sysctls
        notes += extra_notes
    if source_sets:
        layout = _with_source_sets(config, uplinks, layout, source_sets, rules, sysctls)
    notes += _stale_install(ownership, rules)
    return Desired(
        ownership,
        uplinks=tuple(uplinks),
        rules=tuple(rules),
        routes=tuple(routes),
        sysctls=tuple(sysctls),
        notes=tuple(notes),
        gateway=layout,
        delegations=delegations,
        npt=npt,
        pinning=tuple(pinning),
    )
