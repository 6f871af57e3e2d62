"""Kernel messages as multihome's objects (rules, routes, addresses, links), and back.

A rule is multihome's only if every field and attribute the kernel reports is one multihome
writes: anything else (a `not`, a tos, a destination, uidrange, ipproto, ports, iif/oif,
goto, l3mdev, DSCP, or an attribute of a newer kernel) sets `other_selectors`, and
Ownership.owns_rule never takes such a rule for its own, whatever its protocol and priority.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from multihome.core.model import (
    FAMILIES,
    Family,
    IPAddress,
    NextHop,
    Route,
    Rule,
    address_of,
    interface_order,
    network_from,
    source_rule,
)
from multihome.kernel import codec
from multihome.kernel.codec import RouteMessage, RuleMessage

# The rule attributes multihome writes (rule_request); any other makes a rule foreign.
WRITTEN = frozenset(
    {
        codec.FRA_PRIORITY,
        codec.FRA_TABLE,
        codec.FRA_SRC,
        codec.FRA_SUPPRESS_PREFIXLEN,
        codec.FRA_FWMARK,
        codec.FRA_FWMASK,
        codec.FRA_PROTOCOL,
    }
)
_u32 = codec.U32.pack


def _int(value: bytes) -> int:
    """A u32 attribute's value (host byte order, as netlink carries it)."""
    return int.from_bytes(value, sys.byteorder)


def rule_of(message: RuleMessage) -> Rule | None:
    """The rule a message describes (None: not IPv4 or IPv6)."""
    family = FAMILIES.get(message.family)
    if family is None:
        return None
    attrs, get = message.attrs, message.attrs.get
    value = get(codec.FRA_PRIORITY)
    priority = _int(value) if value is not None else 0
    value = get(codec.FRA_TABLE)
    table = _int(value) if value is not None else message.table
    value = get(codec.FRA_SUPPRESS_PREFIXLEN)
    suppress = _int(value) if value is not None else None
    if suppress == codec.SUPPRESS_NONE:
        suppress = None
    value = get(codec.FRA_PROTOCOL)
    protocol = value[0] if value else 0
    value = get(codec.FRA_FWMARK)
    fwmark = _int(value) if value is not None else None
    value = get(codec.FRA_FWMASK)
    fwmask = _int(value) if value is not None else None
    other = bool(
        message.dst_len
        or message.tos
        or message.action != codec.FR_ACT_TO_TBL
        or message.flags  # FIB_RULE_INVERT, and the flags of goto and iif/oif rules
        or not attrs.keys() <= WRITTEN
    )
    raw = attrs.get(codec.FRA_SRC)
    if raw is None:
        src = None
    else:
        number = int.from_bytes(raw, "big")
        if number & ((1 << (len(raw) * 8 - message.src_len)) - 1):
            # `from 10.0.0.1/8`: the kernel keeps the source as given and a delete must name
            # it so; src is its network, so the rule is a foreign one, never multihome's
            other = True
        elif not other and fwmark is None and fwmask is None and message.src_len == len(raw) * 8:
            return source_rule(family, priority, table, number, suppress, protocol)
        src = network_from(raw, message.src_len)
    if fwmark is not None and fwmask is None:
        fwmask = 0xFFFFFFFF  # `fwmark M`: an exact-value match, as `ip rule` shows it
    elif fwmask is not None and fwmark is None:
        fwmark = 0  # `fwmark 0/MASK`: the masked bits are clear
    invert = bool(message.flags & codec.FIB_RULE_INVERT)
    return Rule(family, priority, table, src, suppress, protocol, other, fwmark, fwmask, invert)


def rule_message(rule: Rule) -> RuleMessage:
    """The message that names every field of one of multihome's rules."""
    if rule.other_selectors:
        raise ValueError(f"rule `{rule.ip_args()}` has selectors multihome does not write")
    attrs = {
        codec.FRA_PRIORITY: _u32(rule.priority),
        codec.FRA_TABLE: _u32(rule.table),
        codec.FRA_SUPPRESS_PREFIXLEN: _u32(
            codec.SUPPRESS_NONE if rule.suppress_prefixlen is None else rule.suppress_prefixlen
        ),
        codec.FRA_PROTOCOL: bytes((rule.protocol,)),
    }
    if rule.src is not None:
        attrs[codec.FRA_SRC] = rule.src.network_address.packed
    if rule.fwmark is not None:
        attrs[codec.FRA_FWMARK] = _u32(rule.fwmark)
    if rule.fwmask is not None:
        attrs[codec.FRA_FWMASK] = _u32(rule.fwmask)
    return RuleMessage(
        rule.family,
        attrs,
        src_len=rule.src.prefixlen if rule.src is not None else 0,
        table=rule.table if rule.table < 256 else codec.RT_TABLE_COMPAT,
        flags=codec.FIB_RULE_INVERT if rule.invert else 0,
    )


def rule_request(kind: int, rule: Rule) -> bytes:
    """RTM_NEWRULE or RTM_DELRULE for one of multihome's rules."""
    if rule.fwmark is not None or rule.fwmask is not None or rule.other_selectors or rule.invert:
        return codec.encode_rule(kind, rule_message(rule))
    src = rule.src  # a source rule: where addresses interleave, one per address
    return codec.encode_source_rule(
        kind,
        rule.family,
        rule.priority,
        rule.table,
        codec.SUPPRESS_NONE if rule.suppress_prefixlen is None else rule.suppress_prefixlen,
        rule.protocol,
        src.network_address.packed if src is not None else b"",
        src.prefixlen if src is not None else 0,
    )


def route_of(message: RouteMessage, names: Mapping[int, str]) -> Route | None:
    """The route a message describes (None: not IPv4 or IPv6, or in the local table)."""
    family = FAMILIES.get(message.family)
    attrs = message.attrs
    value = attrs.get(codec.RTA_TABLE)
    table = codec.u32(value) if value is not None else message.table
    if family is None or table == codec.RT_TABLE_LOCAL:
        return None
    dst = attrs.get(codec.RTA_DST) or bytes(4 if family == Family.INET else 16)
    oif, gateway = attrs.get(codec.RTA_OIF), attrs.get(codec.RTA_GATEWAY)
    prefsrc, metric = attrs.get(codec.RTA_PREFSRC), attrs.get(codec.RTA_PRIORITY)
    hops = attrs.get(codec.RTA_MULTIPATH)
    source = attrs.get(codec.RTA_SRC)
    return Route(
        family,
        table,
        network_from(dst, message.dst_len),
        names.get(codec.u32(oif)) if oif is not None else None,
        _address(gateway) if gateway is not None else None,
        _address(prefsrc) if prefsrc is not None else None,
        message.scope,
        message.protocol,
        codec.u32(metric) if metric is not None else 0,
        message.type,
        _nexthops(hops, names) if hops is not None else (),
        network_from(source, message.src_len) if source is not None else None,
    )


def _address(raw: bytes) -> IPAddress:
    return address_of(4 if len(raw) == 4 else 6, int.from_bytes(raw, "big"))


def _nexthops(value: bytes, names: Mapping[int, str]) -> tuple[NextHop, ...]:
    return tuple(
        NextHop(
            names.get(ifindex),
            _address(attrs[codec.RTA_GATEWAY]) if codec.RTA_GATEWAY in attrs else None,
            hops + 1,
        )
        for _flags, hops, ifindex, attrs in codec.nexthops(value)
    )


def route_request(kind: int, route: Route, ifindex: Mapping[str, int]) -> bytes:
    """RTM_NEWROUTE or RTM_DELROUTE; `ifindex` has the index of every device it names."""
    attrs = {codec.RTA_TABLE: _u32(route.table), codec.RTA_PRIORITY: _u32(route.metric)}
    if route.dst.prefixlen:
        attrs[codec.RTA_DST] = route.dst.network_address.packed
    if route.dev is not None:
        attrs[codec.RTA_OIF] = _u32(ifindex[route.dev])
    if route.gateway is not None:
        attrs[codec.RTA_GATEWAY] = route.gateway.packed
    if route.prefsrc is not None:
        attrs[codec.RTA_PREFSRC] = route.prefsrc.packed
    if route.source is not None:
        attrs[codec.RTA_SRC] = route.source.network_address.packed
    if route.nexthops:
        attrs[codec.RTA_MULTIPATH] = b"".join(
            codec.encode_nexthop(
                ifindex[hop.dev or ""],
                hop.weight,
                codec.attr(codec.RTA_GATEWAY, hop.gateway.packed) if hop.gateway else b"",
            )
            for hop in route.nexthops
        )
    message = RouteMessage(
        route.family,
        attrs,
        dst_len=route.dst.prefixlen,
        src_len=route.source.prefixlen if route.source is not None else 0,
        table=route.table if route.table < 256 else codec.RT_TABLE_COMPAT,
        protocol=route.protocol,
        scope=route.scope,
        type=route.type,
    )
    return codec.encode_route(kind, message)


def lookup_request(
    dst: IPAddress, src: IPAddress | None, iif: int | None = None, mark: int = 0
) -> bytes:
    """`ip route get DST from SRC [iif DEV] [mark MARK]`, asking the kernel which table
    answered; with `iif` the lookup is the one a packet forwarded from DEV gets."""
    attrs = {codec.RTA_DST: dst.packed}
    if src is not None:
        attrs[codec.RTA_SRC] = src.packed
    if iif is not None:
        attrs[codec.RTA_IIF] = codec.U32.pack(iif)
    if mark:
        attrs[codec.RTA_MARK] = codec.U32.pack(mark)
    full = dst.max_prefixlen
    message = RouteMessage(
        Family.of(dst), attrs, full, full if src else 0, flags=codec.RTM_F_LOOKUP_TABLE
    )
    return codec.encode_route(codec.RTM_GETROUTE, message, flags=codec.NLM_F_REQUEST)


# LinkInfo and AddressInfo are plain classes: they live only between the decoder and
# discover.py, and need no equality or hashing.


class LinkInfo:
    """A link as RTM_NEWLINK describes it (the fields multihome reads)."""

    __slots__ = ("flags", "index", "kind", "master", "mtu", "name", "stats")

    def __init__(
        self,
        index: int,
        name: str,
        flags: int,
        master: int | None,
        kind: str,
        stats: tuple[int, int, int, int] = (0, 0, 0, 0),  # rx/tx packets, rx/tx bytes
        mtu: int = 0,
    ) -> None:
        self.index, self.name, self.flags, self.master = index, name, flags, master
        self.kind, self.stats, self.mtu = kind, stats, mtu


class AddressInfo:
    """An address as RTM_NEWADDR describes it; `value` is the address as an integer."""

    __slots__ = ("family", "flags", "index", "order", "prefixlen", "scope", "value")

    def __init__(
        self, index: int, family: int, value: int, prefixlen: int, scope: int, flags: int
    ) -> None:
        self.index, self.family, self.value, self.prefixlen = index, family, value, prefixlen
        self.scope, self.flags = scope, flags
        # a sort key that orders addresses as comparing their interface objects would
        self.order = interface_order(self.version, value, prefixlen)

    @property
    def version(self) -> int:
        return 4 if self.family == Family.INET else 6

    @property
    def address(self) -> IPAddress:
        return address_of(self.version, self.value)


def link_of(data: bytes, offset: int, end: int) -> LinkInfo:
    """The link of an RTM_NEWLINK payload."""
    _family, _type, index, flags, _change = codec.IFINFOMSG.unpack_from(data, offset)
    attrs = codec.attributes(data, offset + codec.IFINFOMSG.size, end)
    kind = ""
    linkinfo = attrs.get(codec.IFLA_LINKINFO)
    if linkinfo is not None:
        kind = codec.string(codec.attributes(linkinfo, 0, len(linkinfo)).get(1, b""))
    stats = attrs.get(codec.IFLA_STATS64, b"")
    value = attrs.get(codec.IFLA_MASTER)
    return LinkInfo(
        index,
        codec.string(attrs.get(codec.IFLA_IFNAME, b"")),
        flags,
        (codec.u32(value) or None) if value is not None else None,
        kind,
        codec.STATS64.unpack_from(stats) if len(stats) >= codec.STATS64.size else (0, 0, 0, 0),
        codec.u32(attrs[codec.IFLA_MTU]) if codec.IFLA_MTU in attrs else 0,
    )


def address_info(data: bytes, offset: int, end: int) -> AddressInfo | None:
    """The address of an RTM_NEWADDR payload (None: not IPv4 or IPv6)."""
    family, prefixlen, flags, scope, index = codec.IFADDRMSG.unpack_from(data, offset)
    if family not in FAMILIES:
        return None
    attrs = codec.attributes(data, offset + codec.IFADDRMSG.size, end)
    value = attrs.get(codec.IFA_FLAGS)
    if value is not None:
        flags = codec.u32(value)  # the 32-bit flags; the header has only their low 8 bits
    # IFA_LOCAL is the address on this end of a point-to-point link, IFA_ADDRESS the peer's
    raw = attrs.get(codec.IFA_LOCAL, attrs.get(codec.IFA_ADDRESS))
    if raw is None:
        return None
    return AddressInfo(index, family, int.from_bytes(raw, "big"), prefixlen, scope, flags)
