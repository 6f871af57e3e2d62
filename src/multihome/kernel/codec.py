"""The rtnetlink wire format: bytes to messages and back (pure: no socket, no state).

A message is its fixed header's fields and its attributes, walked one by one and all kept,
also those this module has no name for: whoever maps messages to objects decides what an
attribute it does not know means (for a rule: not one multihome wrote). The layouts are
those of <linux/netlink.h>, <linux/rtnetlink.h>, <linux/fib_rules.h> and <linux/if_addr.h>.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

# Message types and flags.
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWRULE, RTM_DELRULE, RTM_GETRULE = 32, 33, 34
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
NLM_F_ACK_TLVS = 0x200  # on an NLMSG_ERROR: extended-ack attributes follow
NLMSGERR_ATTR_MSG = 1
NLA_TYPE_MASK = 0x3FFF  # an attribute's type without NLA_F_NESTED / NLA_F_NET_BYTEORDER

# Route attributes (rtattr_type_t) and the request flag that asks a lookup for its table.
RTA_DST, RTA_SRC, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC = 1, 2, 4, 5, 6, 7
RTA_MULTIPATH, RTA_TABLE = 9, 15
RTA_IIF, RTA_MARK = 3, 16  # a lookup as a forwarded packet sees it: input interface, mark
RTM_F_LOOKUP_TABLE = 0x1000
RT_TABLE_COMPAT = 252  # a header's table when the real id (> 255) is in RTA_TABLE / FRA_TABLE
RT_TABLE_LOCAL = 255

# Rule attributes (<linux/fib_rules.h>), every one the kernel had up to 6.18.
FRA_DST, FRA_SRC, FRA_IIFNAME, FRA_GOTO, FRA_PRIORITY = 1, 2, 3, 4, 6
FRA_FWMARK, FRA_FLOW, FRA_TUN_ID, FRA_SUPPRESS_IFGROUP = 10, 11, 12, 13
FRA_SUPPRESS_PREFIXLEN, FRA_TABLE, FRA_FWMASK, FRA_OIFNAME = 14, 15, 16, 17
FRA_L3MDEV, FRA_UID_RANGE, FRA_PROTOCOL, FRA_IP_PROTO = 19, 20, 21, 22
FRA_SPORT_RANGE, FRA_DPORT_RANGE, FRA_DSCP = 23, 24, 25
FR_ACT_TO_TBL = 1
FIB_RULE_INVERT = 0x2
SUPPRESS_NONE = 0xFFFFFFFF  # FRA_SUPPRESS_PREFIXLEN when the rule has none (the kernel's -1)

# Link and address attributes.
IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO, IFLA_STATS64 = 3, 4, 10, 18, 23
IFLA_INFO_KIND = 1
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS = 1, 2, 8

HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence number, port id
RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg, and fib_rule_hdr, which has the same layout
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
NEXTHOP = struct.Struct("=HBBi")  # rtnexthop: length, flags, hops (weight - 1), ifindex
STATS64 = struct.Struct("=QQQQ")  # rtnl_link_stats64 starts: rx/tx packets, rx/tx bytes
U32 = struct.Struct("=I")
_ATTR = struct.Struct("=HH")
_ERROR = struct.Struct("=i")

Attributes = dict[int, bytes]  # attribute type -> value, in the order of the message


# -- the walk ------------------------------------------------------------------------------


def messages(data: bytes) -> Iterator[tuple[int, int, int, int, int]]:
    """Every message of a datagram: (offset, length, type, flags, sequence number)."""
    offset = 0
    while offset + HEADER.size <= len(data):
        length, kind, flags, seq, _port = HEADER.unpack_from(data, offset)
        if length < HEADER.size or offset + length > len(data):
            raise ValueError(f"malformed netlink message at byte {offset}")
        yield offset, length, kind, flags, seq
        offset += (length + 3) & ~3


def walk(data: bytes, offset: int, end: int) -> Iterator[tuple[int, bytes]]:
    """The attributes between offset and end, in order: (type, value)."""
    while offset + 4 <= end:
        length, kind = _ATTR.unpack_from(data, offset)
        if length < 4 or offset + length > end:
            raise ValueError(f"malformed netlink attribute at byte {offset}")
        yield kind & NLA_TYPE_MASK, data[offset + 4 : offset + length]
        offset += (length + 3) & ~3


def attributes(data: bytes, offset: int, end: int) -> Attributes:
    """The attributes between offset and end, every one kept (a type seen twice: the last)."""
    found = {}
    unpack = _ATTR.unpack_from
    while offset + 4 <= end:  # walk(), inlined: this runs for every message of every dump
        length, kind = unpack(data, offset)
        if length < 4 or offset + length > end:
            raise ValueError(f"malformed netlink attribute at byte {offset}")
        found[kind & NLA_TYPE_MASK] = data[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return found


def u32(value: bytes) -> int:
    number: int = U32.unpack(value)[0]
    return number


def string(value: bytes) -> str:
    return value.split(b"\0", 1)[0].decode(errors="replace")


# -- messages ------------------------------------------------------------------------------


class RuleMessage:
    """RTM_NEWRULE / RTM_DELRULE: fib_rule_hdr and the attributes."""

    __slots__ = ("action", "attrs", "dst_len", "family", "flags", "src_len", "table", "tos")

    def __init__(
        self,
        family: int,
        attrs: Attributes,
        dst_len: int = 0,
        src_len: int = 0,
        tos: int = 0,
        table: int = 0,
        action: int = FR_ACT_TO_TBL,
        flags: int = 0,
    ) -> None:
        self.family, self.attrs = family, attrs
        self.dst_len, self.src_len, self.tos, self.table = dst_len, src_len, tos, table
        self.action, self.flags = action, flags


class RouteMessage:
    """RTM_NEWROUTE / RTM_DELROUTE / RTM_GETROUTE: rtmsg and the attributes."""

    __slots__ = (
        "attrs", "dst_len", "family", "flags", "protocol", "scope", "src_len", "table", "tos",
        "type",
    )  # fmt: skip

    def __init__(
        self,
        family: int,
        attrs: Attributes,
        dst_len: int = 0,
        src_len: int = 0,
        table: int = 0,
        protocol: int = 0,
        scope: int = 0,
        type: int = 0,
        flags: int = 0,
        tos: int = 0,
    ) -> None:
        self.family, self.attrs, self.dst_len, self.src_len = family, attrs, dst_len, src_len
        self.table, self.protocol, self.scope, self.type = table, protocol, scope, type
        self.flags, self.tos = flags, tos


def decode_rule(data: bytes, offset: int, end: int) -> RuleMessage:
    """The rule message whose payload is data[offset:end]."""
    family, dst_len, src_len, tos, table, _r1, _r2, action, flags = RTMSG.unpack_from(data, offset)
    attrs = attributes(data, offset + RTMSG.size, end)
    return RuleMessage(family, attrs, dst_len, src_len, tos, table, action, flags)


def decode_route(data: bytes, offset: int, end: int) -> RouteMessage:
    """The route message whose payload is data[offset:end]."""
    family, dst_len, src_len, tos, table, protocol, scope, kind, flags = RTMSG.unpack_from(
        data, offset
    )
    attrs = attributes(data, offset + RTMSG.size, end)
    return RouteMessage(family, attrs, dst_len, src_len, table, protocol, scope, kind, flags, tos)


def nexthops(value: bytes) -> Iterator[tuple[int, int, int, Attributes]]:
    """The paths of an RTA_MULTIPATH attribute: (flags, hops, ifindex, attributes)."""
    offset = 0
    while offset + NEXTHOP.size <= len(value):
        length, flags, hops, ifindex = NEXTHOP.unpack_from(value, offset)
        if length < NEXTHOP.size or offset + length > len(value):
            raise ValueError(f"malformed rtnexthop at byte {offset}")
        yield flags, hops, ifindex, attributes(value, offset + NEXTHOP.size, offset + length)
        offset += (length + 3) & ~3


def error_of(data: bytes, offset: int, length: int, flags: int) -> tuple[int, str]:
    """An NLMSG_ERROR message's errno (0: an ack) and the kernel's extended-ack text."""
    code = -_ERROR.unpack_from(data, offset + HEADER.size)[0]
    text = ""
    if code and flags & NLM_F_ACK_TLVS:
        # nlmsgerr: the errno, then the request's header (its payload left out: NETLINK_CAP_ACK)
        start = offset + HEADER.size + 4 + HEADER.size
        for kind, value in walk(data, start, offset + length):
            if kind == NLMSGERR_ATTR_MSG:
                text = value.rstrip(b"\0").decode(errors="replace")
    return code, text


# -- encoding ------------------------------------------------------------------------------


def attr(kind: int, value: bytes) -> bytes:
    length = 4 + len(value)
    return _ATTR.pack(length, kind) + value + b"\0" * (-length % 4)


def message(kind: int, flags: int, body: bytes, seq: int = 0) -> bytes:
    return HEADER.pack(HEADER.size + len(body), kind, flags, seq, 0) + body


def request_flags(kind: int) -> int:
    """A change's flags: acked; an add fails where an equal object exists (no replacing)."""
    if kind in (RTM_NEWRULE, RTM_NEWROUTE):
        return NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    return NLM_F_REQUEST | NLM_F_ACK


def _encode_attrs(attrs: Attributes) -> bytes:
    return b"".join([attr(kind, value) for kind, value in attrs.items()])


def encode_rule(kind: int, rule: RuleMessage, seq: int = 0) -> bytes:
    """An RTM_NEWRULE / RTM_DELRULE request naming every field and attribute of `rule`."""
    header = RTMSG.pack(
        rule.family, rule.dst_len, rule.src_len, rule.tos, rule.table, 0, 0, rule.action,
        rule.flags,
    )  # fmt: skip
    return message(kind, request_flags(kind), header + _encode_attrs(rule.attrs), seq)


# A request for a rule of the form multihome writes most (a source or none, no mark), in one
# `struct` call: its header, FRA_PRIORITY, FRA_TABLE, FRA_SUPPRESS_PREFIXLEN, FRA_PROTOCOL,
# then FRA_SRC of 0, 4 or 16 bytes. The same bytes as encode_rule makes of its RuleMessage.
_SOURCE_RULES = {
    size: struct.Struct("=IHHII BBBBBBBBI HHI HHI HHI HHB3x" + (f" HH{size}s" if size else ""))
    for size in (0, 4, 16)
}


def encode_source_rule(
    kind: int,
    family: int,
    priority: int,
    table: int,
    suppress: int,
    protocol: int,
    src: bytes,
    src_len: int,
) -> bytes:
    """The request encode_rule makes of a rule with these fields (src: b"" for none)."""
    layout = _SOURCE_RULES[len(src)]
    header_table = table if table < 256 else RT_TABLE_COMPAT
    values: list[int | bytes] = [
        *(layout.size, kind, request_flags(kind), 0, 0),
        *(family, 0, src_len, 0, header_table, 0, 0, FR_ACT_TO_TBL, 0),
        *(8, FRA_PRIORITY, priority, 8, FRA_TABLE, table, 8, FRA_SUPPRESS_PREFIXLEN, suppress),
        *(5, FRA_PROTOCOL, protocol),
    ]
    if src:
        values += [4 + len(src), FRA_SRC, src]
    return layout.pack(*values)


def encode_route(kind: int, route: RouteMessage, seq: int = 0, flags: int = 0) -> bytes:
    """An RTM_*ROUTE request (flags: a change's request_flags when 0)."""
    header = RTMSG.pack(
        route.family, route.dst_len, route.src_len, route.tos, route.table, route.protocol,
        route.scope, route.type, route.flags,
    )  # fmt: skip
    return message(kind, flags or request_flags(kind), header + _encode_attrs(route.attrs), seq)


def encode_nexthop(ifindex: int, weight: int, attrs: bytes) -> bytes:
    """One path of an RTA_MULTIPATH value."""
    return NEXTHOP.pack(NEXTHOP.size + len(attrs), 0, weight - 1, ifindex) + attrs


def dump_request(kind: int, seq: int) -> bytes:
    """A request to dump every object of a kind (links, addresses, routes or rules)."""
    header = {RTM_GETLINK: IFINFOMSG.size, RTM_GETADDR: IFADDRMSG.size}.get(kind, RTMSG.size)
    return message(kind, NLM_F_REQUEST | NLM_F_DUMP, bytes(header), seq)
