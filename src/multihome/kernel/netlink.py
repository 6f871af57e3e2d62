"""A lean rtnetlink codec for what multihome reads and writes on every run: links and
addresses (read), rules and routes (read and written).

Why not pyroute2 here: a host with 1,000 source addresses means 2,000 rules to compare and
write; pyroute2 sends one request at a time through a general message encoder (about 20x
slower than `ip -batch`), takes ~0.4 s to decode 1,000 addresses and ~0.3 s to import.
Here each message is packed with one `struct` call, a whole plan goes to the kernel in a
few `sendmsg` buffers, and the acks are matched by sequence number, so the kernel's verdict
on every single change is known. pyroute2 builds the lab's networks (lab/topology.py).

This module only encodes, decodes and transports; which changes to send is decided elsewhere,
and only kernel.py sends changes.
"""

from __future__ import annotations

# _socket, not socket: socket.py turns thousands of constants into enums at import, which
# costs every run of every command more than reading 1,000 rules; this module needs only
# the plain socket object and a few constants.
import _socket
import errno
import operator
import os
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

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
from multihome.core.recent import Recent

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import TypeVar

    T = TypeVar("T")

# Message types and flags, from <linux/netlink.h> and <linux/rtnetlink.h>.
NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_GETLINK, RTM_GETADDR = 18, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWRULE, RTM_DELRULE, RTM_GETRULE = 32, 33, 34
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
NLM_F_ACK_TLVS = 0x200
SOL_NETLINK = 270
NETLINK_CAP_ACK, NETLINK_EXT_ACK = 10, 11
NLMSGERR_ATTR_MSG = 1

RTA_DST, RTA_SRC, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC = 1, 2, 4, 5, 6, 7
RTA_MULTIPATH, RTA_TABLE = 9, 15
FRA_DST, FRA_SRC, FRA_PRIORITY = 1, 2, 6
FRA_SUPPRESS_PREFIXLEN, FRA_TABLE, FRA_PROTOCOL = 14, 15, 21
FRA_FWMARK, FRA_FWMASK = 10, 16
# Rule attributes that select on something besides the source address and the fwmark.
FRA_OTHER_SELECTORS = frozenset({3, 4, 11, 12, 13, 17, 19, 20, 22, 23, 24})
FR_ACT_TO_TBL = 1
FIB_RULE_INVERT = 0x2
RT_TABLE_COMPAT = 252  # rtm_table when the real id (> 255) is in RTA_TABLE
RT_TABLE_LOCAL = 255
SUPPRESS_NONE = 0xFFFFFFFF

_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_FLAGS = struct.Struct("=H")  # nlmsghdr's flags, at offset 6
_FLAGS_SEQ = struct.Struct("=HI")  # its flags and sequence number, at offset 6
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg and fib_rule_hdr share this layout
_ATTR = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_NEXTHOP = struct.Struct("=HBBi")  # rtnexthop: len, flags, hops, ifindex
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index

IFLA_IFNAME, IFLA_MASTER, IFLA_LINKINFO, IFLA_INFO_KIND = 3, 10, 18, 1
IFLA_STATS64 = 23
IFLA_MTU = 4
_STATS = struct.Struct("=QQQQ")  # rtnl_link_stats64 starts: rx/tx packets, rx/tx bytes
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS = 1, 2, 8

SEND_BUFFER = 1 << 20
BATCH_BYTES = 96 * 1024  # acks for one batch must fit the receive buffer


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return _ATTR.pack(length, kind) + payload + b"\0" * (-length % 4)


def _u32(kind: int, value: int) -> bytes:
    return _ATTR.pack(8, kind) + _U32.pack(value)


def _message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return _HDR.pack(16 + len(body), kind, flags, seq, 0) + body


def _attrs(data: memoryview, offset: int, end: int) -> Iterator[tuple[int, memoryview]]:
    while offset + 4 <= end:
        length, kind = _ATTR.unpack_from(data, offset)
        if length < 4:
            return
        yield kind & 0x3FFF, data[offset + 4 : offset + length]
        offset += (length + 3) & ~3


# A message's payload -> what it decodes to (recent.py: while the kernel reports it).
_decoded_rules: Recent[bytes, Rule] = Recent()
_decoded_addresses: Recent[bytes, AddressInfo] = Recent()

def _address(raw: bytes | memoryview) -> IPAddress:
    return address_of(4 if len(raw) == 4 else 6, int.from_bytes(raw, "big"))


# A rule request in one `struct` call: the layout depends only on the source address's
# length (none, IPv4, IPv6) and on whether suppress_prefixlength is set. The attributes, in
# this order: FRA_PRIORITY, FRA_TABLE, [FRA_SRC], [FRA_SUPPRESS_PREFIXLEN], FRA_PROTOCOL.
_rule_layouts: dict[tuple[int, bool], struct.Struct] = {}


def _rule_layout(src_bytes: int, suppress: bool) -> struct.Struct:
    layout = _rule_layouts.get((src_bytes, suppress))
    if layout is None:
        fmt = "=IHHII" + "BBBBBBBBI" + "HHI" + "HHI"
        if src_bytes:
            fmt += f"HH{src_bytes}s"
        if suppress:
            fmt += "HHI"
        fmt += "HHB3x"
        layout = _rule_layouts[src_bytes, suppress] = struct.Struct(fmt)
    return layout


def _encode_marked_rule(kind: int, rule: Rule, seq: int) -> bytes:
    src_len = rule.src.prefixlen if rule.src is not None else 0
    body = _RTMSG.pack(
        rule.family,
        0,
        src_len,
        0,
        rule.table if rule.table < 256 else RT_TABLE_COMPAT,
        0,
        0,
        FR_ACT_TO_TBL,
        0,
    )
    body += _u32(FRA_PRIORITY, rule.priority) + _u32(FRA_TABLE, rule.table)
    if rule.src is not None:
        body += _attr(FRA_SRC, rule.src.network_address.packed)
    if rule.suppress_prefixlen is not None:
        body += _u32(FRA_SUPPRESS_PREFIXLEN, rule.suppress_prefixlen)
    if rule.fwmark is not None:
        body += _u32(FRA_FWMARK, rule.fwmark)
        if rule.fwmask is not None:
            body += _u32(FRA_FWMASK, rule.fwmask)
    body += _attr(FRA_PROTOCOL, bytes((rule.protocol,)))
    flags = NLM_F_REQUEST | NLM_F_ACK
    if kind == RTM_NEWRULE:
        flags |= NLM_F_CREATE | NLM_F_EXCL
    return _message(kind, flags, seq, body)


def encode_rule(kind: int, rule: Rule, seq: int = 0) -> bytes:
    """RTM_NEWRULE or RTM_DELRULE for a rule of multihome's form."""
    if rule.fwmark is not None:  # gateway mode's mark rules, a few: attribute by attribute
        return _encode_marked_rule(kind, rule, seq)
    flags = NLM_F_REQUEST | NLM_F_ACK
    if kind == RTM_NEWRULE:
        flags |= NLM_F_CREATE | NLM_F_EXCL
    src, suppress = rule.src, rule.suppress_prefixlen
    values: list[int | bytes] = [
        FR_ACT_TO_TBL,
        0,
        8,
        FRA_PRIORITY,
        rule.priority,
        8,
        FRA_TABLE,
        rule.table,
    ]
    if src is None:
        src_bytes, src_len = 0, 0
    else:
        src_bytes, src_len = (4, src.prefixlen) if src.version == 4 else (16, src.prefixlen)
        values += [4 + src_bytes, FRA_SRC, src.network_address.packed]
    if suppress is not None:
        values += [8, FRA_SUPPRESS_PREFIXLEN, suppress]
    values += [5, FRA_PROTOCOL, rule.protocol]
    layout = _rule_layout(src_bytes, suppress is not None)
    table = rule.table if rule.table < 256 else RT_TABLE_COMPAT
    return layout.pack(
        layout.size, kind, flags, seq, 0, rule.family, 0, src_len, 0, table, 0, 0, *values
    )


def _multipath(route: Route, ifindex: Mapping[str, int]) -> bytes:
    hops = b""
    for hop in route.nexthops:
        gateway = _attr(RTA_GATEWAY, hop.gateway.packed) if hop.gateway else b""
        hops += (
            _NEXTHOP.pack(_NEXTHOP.size + len(gateway), 0, hop.weight - 1, ifindex[hop.dev or ""])
            + gateway
        )
    return _attr(RTA_MULTIPATH, hops)


def encode_route(
    kind: int,
    route: Route,
    ifindex: int | None,
    seq: int = 0,
    hop_ifindex: Mapping[str, int] | None = None,
) -> bytes:
    """RTM_NEWROUTE or RTM_DELROUTE; a multipath route needs `hop_ifindex` for its hops."""
    body = _RTMSG.pack(
        route.family,
        route.dst.prefixlen,
        0,
        0,
        route.table if route.table < 256 else RT_TABLE_COMPAT,
        route.protocol,
        route.scope,
        route.type,
        0,
    )
    body += _u32(RTA_TABLE, route.table) + _u32(RTA_PRIORITY, route.metric)
    if route.dst.prefixlen:
        body += _attr(RTA_DST, route.dst.network_address.packed)
    if ifindex is not None:
        body += _u32(RTA_OIF, ifindex)
    if route.gateway is not None:
        body += _attr(RTA_GATEWAY, route.gateway.packed)
    if route.prefsrc is not None:
        body += _attr(RTA_PREFSRC, route.prefsrc.packed)
    if route.nexthops:
        body += _multipath(route, hop_ifindex or {})
    flags = NLM_F_REQUEST | NLM_F_ACK
    if kind == RTM_NEWROUTE:
        flags |= NLM_F_CREATE | NLM_F_EXCL
    return _message(kind, flags, seq, body)


def decode_rule(data: memoryview, offset: int, end: int) -> Rule | None:
    """The rule of an RTM_NEWRULE/RTM_DELRULE payload (None: not IPv4 or IPv6).

    A host with 1,000 source addresses dumps 2,000 rules of a few layouts: the same
    attributes in the same order, only their values differ. The first message of each
    layout is decoded attribute by attribute and its layout learnt (_RuleShape); the others
    are read with one `struct` call, and used only if every attribute's type and length and
    the header's selectors match what was learnt, else decoded attribute by attribute."""
    shapes = _rule_shapes.get(end - offset)
    if shapes is not None:
        for shape in shapes:
            rule = shape.decode(data, offset)
            if rule is not None:
                return rule
    rule = _walk_rule(data, offset, end)
    if rule is not None:
        _learn_rule_shape(data, offset, end)
    return rule


class _RuleShape:
    """One layout of rule messages: a struct of the header and every attribute (type,
    length, value), which header fields and attribute headers a message must repeat, and
    where the values of the rule's fields are."""

    __slots__ = ("check", "expected", "family", "host", "layout", "other", "src_len", "values")

    def __init__(
        self,
        layout: struct.Struct,
        check: list[int],
        expected: tuple[object, ...],
        fields: list[int],
        family: Family,
        src_len: int,
        other: bool,
    ) -> None:
        self.layout = layout
        self.check = operator.itemgetter(*check)
        self.expected = expected
        # priority, table, src, suppress, protocol, fwmark, fwmask: an index into the values
        # with _RULE_DEFAULTS appended, where a missing attribute finds its default
        self.values = operator.itemgetter(*fields)
        self.family = family
        self.src_len = src_len
        self.other = other
        # a host source and nothing else: the rules model.source_rule() makes
        self.host = not other and src_len == (32 if family == Family.INET else 128)

    def decode(self, data: memoryview, offset: int) -> Rule | None:
        values = self.layout.unpack_from(data, offset)
        if self.check(values) != self.expected:
            return None
        priority, table, src, suppress, protocol, fwmark, fwmask = self.values(
            values + _RULE_DEFAULTS
        )
        if suppress == SUPPRESS_NONE:
            suppress = None
        if self.host and src is not None and fwmark is None and fwmask is None:  # shared
            value = int.from_bytes(src, "big")
            return source_rule(self.family, priority, table, value, suppress, protocol)
        if src is not None and _host_bits(src, self.src_len):
            return None  # a source with host bits: decoded by walking (_walk_rule)
        return Rule(
            self.family,
            priority,
            table,
            None if src is None else network_from(src, self.src_len),
            suppress,
            protocol,
            self.other,
            *_mark(fwmark, fwmask),
        )


# priority, table, src, suppress, protocol, fwmark, fwmask when the message has none
_RULE_DEFAULTS = (0, 0, None, None, 0, None, None)
_RULE_FIELDS = (
    FRA_PRIORITY,
    FRA_TABLE,
    FRA_SRC,
    FRA_SUPPRESS_PREFIXLEN,
    FRA_PROTOCOL,
    FRA_FWMARK,
    FRA_FWMASK,
)
_RULE_U32 = frozenset({FRA_PRIORITY, FRA_TABLE, FRA_SUPPRESS_PREFIXLEN, FRA_FWMARK, FRA_FWMASK})
_rule_shapes: dict[int, list[_RuleShape]] = {}  # by payload length
SHAPES_PER_LENGTH = 8


def _learn_rule_shape(data: memoryview, offset: int, end: int) -> None:
    """Learn the layout of this (decodable) rule message, if it has one `struct` can read."""
    fmt = "=BBBBBBBBI"
    check = [0, 1, 2, 7, 8]  # family, dst_len, src_len, action, flags
    index = 9  # values unpacked so far
    where: dict[int, int] = {}
    position = offset + _RTMSG.size
    while position + 4 <= end:
        length, kind = _ATTR.unpack_from(data, position)
        padded = (length + 3) & ~3
        if length < 4 or position + padded > end or kind in where:
            return  # malformed, or an attribute twice: always decoded by walking
        fmt += "HH"
        check += [index, index + 1]
        index += 2
        size = length - 4
        if kind in _RULE_U32 and size == 4:
            fmt += "I"
        elif kind == FRA_SRC and size in (4, 16):
            fmt += f"{size}s"
        elif kind == FRA_PROTOCOL and size == 1:
            fmt += "B"
        else:  # an attribute whose value the rule does not keep: its type and length only
            fmt += f"{padded - 4}x"
            position += padded
            continue
        fmt += f"{padded - length}x"
        where[kind] = index
        index += 1
        position += padded
    if position != end:
        return
    layout = struct.Struct(fmt)
    values = layout.unpack_from(data, offset)
    defaults = {kind: index + n for n, kind in enumerate(_RULE_FIELDS)}
    fields = [where.get(kind, defaults[kind]) for kind in _RULE_FIELDS]
    if FRA_TABLE not in where:
        fields[1] = 4  # the header's table
    walked = _walk_rule(data, offset, end)
    assert walked is not None
    src = where.get(FRA_SRC)
    if src is not None and _host_bits(values[src], values[2]):
        return  # its other_selectors is this message's, not the layout's
    shape = _RuleShape(
        layout,
        check,
        tuple(values[i] for i in check),
        fields,
        walked.family,
        values[2],
        walked.other_selectors,
    )
    if shape.decode(data, offset) != walked:  # never used unless it reads this one right
        return
    shapes = _rule_shapes.setdefault(end - offset, [])
    if len(shapes) >= SHAPES_PER_LENGTH:
        shapes.pop(0)
    shapes.append(shape)


def _walk_rule(data: memoryview, offset: int, end: int) -> Rule | None:
    """A rule message decoded attribute by attribute."""
    family, dst_len, src_len, _tos, table, _r1, _r2, action, flags = _RTMSG.unpack_from(
        data, offset
    )
    if family not in FAMILIES:
        return None
    priority = 0
    src = None
    suppress: int | None = None
    protocol = 0
    fwmark: int | None = None
    fwmask: int | None = None
    other = bool(dst_len) or action != FR_ACT_TO_TBL or bool(flags & FIB_RULE_INVERT)
    # The attribute walk is inlined: this runs for every rule on every run.
    position = offset + _RTMSG.size
    unpack_attr, unpack_u32 = _ATTR.unpack_from, _U32.unpack_from
    while position + 4 <= end:
        length, kind = unpack_attr(data, position)
        if length < 4:
            break
        value = position + 4
        if kind == FRA_PRIORITY:
            priority = unpack_u32(data, value)[0]
        elif kind == FRA_TABLE:
            table = unpack_u32(data, value)[0]
        elif kind == FRA_SRC:
            raw_src = bytes(data[value : position + length])
            src = network_from(raw_src, src_len)
            if _host_bits(raw_src, src_len):
                # `from 10.0.0.1/8`: the kernel keeps the source as given, and a delete must
                # name it so; src is its network, so the rule is a foreign one, never ours
                other = True
        elif kind == FRA_SUPPRESS_PREFIXLEN:
            raw = unpack_u32(data, value)[0]
            suppress = None if raw == SUPPRESS_NONE else raw
        elif kind == FRA_PROTOCOL:
            protocol = data[value]
        elif kind == FRA_FWMARK:
            fwmark = unpack_u32(data, value)[0]
        elif kind == FRA_FWMASK:
            fwmask = unpack_u32(data, value)[0]
        elif kind & 0x3FFF in FRA_OTHER_SELECTORS:
            other = True
        position += (length + 3) & ~3
    return Rule(
        FAMILIES[family], priority, table, src, suppress, protocol, other, *_mark(fwmark, fwmask)
    )


def _mark(fwmark: int | None, fwmask: int | None) -> tuple[int | None, int | None]:
    """A rule's fwmark and mask as `ip rule` means them, from the attributes it has."""
    if fwmark is not None and fwmask is None:
        return fwmark, 0xFFFFFFFF  # an exact-value match
    if fwmask is not None and fwmark is None:
        return 0, fwmask  # `fwmark 0/MASK`: the masked bits are clear
    return fwmark, fwmask


def _host_bits(raw: bytes, prefixlen: int) -> int:
    """The bits of a packed address beyond its prefix (0: a network address)."""
    return int.from_bytes(raw, "big") & ((1 << (len(raw) * 8 - prefixlen)) - 1)


def decode_route(data: memoryview, offset: int, end: int, names: dict[int, str]) -> Route | None:
    family, dst_len, _src_len, _tos, table, protocol, scope, rtype, _flags = _RTMSG.unpack_from(
        data, offset
    )
    if family not in FAMILIES or table == RT_TABLE_LOCAL:
        return None
    dst_raw = b""
    dev = None
    gateway = prefsrc = None
    metric = 0
    nexthops: list[NextHop] = []
    for kind, value in _attrs(data, offset + _RTMSG.size, end):
        if kind == RTA_TABLE:
            table = _U32.unpack_from(value)[0]
        elif kind == RTA_DST:
            dst_raw = bytes(value)
        elif kind == RTA_OIF:
            dev = names.get(_U32.unpack_from(value)[0])
        elif kind == RTA_GATEWAY:
            gateway = _address(value)
        elif kind == RTA_PREFSRC:
            prefsrc = _address(value)
        elif kind == RTA_PRIORITY:
            metric = _U32.unpack_from(value)[0]
        elif kind == RTA_MULTIPATH:
            nexthops = _decode_nexthops(value, names)
    if table == RT_TABLE_LOCAL:
        return None
    if not dst_raw:
        dst_raw = bytes(4 if family == Family.INET else 16)
    return Route(
        FAMILIES[family],
        table,
        network_from(dst_raw, dst_len),  # shared: a dump repeats a few prefixes
        dev,
        gateway,
        prefsrc,
        scope,
        protocol,
        metric,
        rtype,
        tuple(nexthops),
    )


def _decode_nexthops(data: memoryview, names: dict[int, str]) -> list[NextHop]:
    hops = []
    offset = 0
    while offset + _NEXTHOP.size <= len(data):
        length, _flags, weight, ifindex = _NEXTHOP.unpack_from(data, offset)
        if length < _NEXTHOP.size:
            break
        gateway = None
        for kind, value in _attrs(data, offset + _NEXTHOP.size, offset + length):
            if kind == RTA_GATEWAY:
                gateway = _address(value)
        hops.append(NextHop(names.get(ifindex), gateway, weight + 1))
        offset += (length + 3) & ~3
    return hops


# LinkInfo and AddressInfo are plain classes with a hand-written __init__: they live only
# between the decoder and discover.py, need no equality or hashing, and are made by the
# thousand.


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
        self.index = index
        self.name = name
        self.flags = flags
        self.master = master
        self.kind = kind
        self.stats = stats
        self.mtu = mtu


class AddressInfo:
    """An address as RTM_NEWADDR describes it; `value` is the address as an integer. Shared
    by every dump that reports the same message (RtnlSocket.addresses): never changed."""

    __slots__ = ("_order", "family", "flags", "index", "prefixlen", "scope", "value")
    _order: tuple[int, int, int, int]

    def __init__(
        self, index: int, family: int, value: int, prefixlen: int, scope: int, flags: int
    ) -> None:
        self.index = index
        self.family = family
        self.value = value
        self.prefixlen = prefixlen
        self.scope = scope
        self.flags = flags

    @property
    def version(self) -> int:
        return 4 if self.family == Family.INET else 6

    @property
    def address(self) -> IPAddress:
        return address_of(self.version, self.value)

    @property
    def order(self) -> tuple[int, int, int, int]:
        """model.interface_order() of the address, made once."""
        try:
            return self._order
        except AttributeError:
            self._order = interface_order(self.version, self.value, self.prefixlen)
            return self._order


def _string(value: memoryview) -> str:
    return bytes(value).split(b"\0", 1)[0].decode(errors="replace")


def decode_link(data: memoryview, offset: int, end: int) -> LinkInfo:
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(data, offset)
    name, master, kind = "", None, ""
    stats = (0, 0, 0, 0)
    mtu = 0
    for attr, value in _attrs(data, offset + _IFINFOMSG.size, end):
        if attr == IFLA_IFNAME:
            name = _string(value)
        elif attr == IFLA_MTU:
            mtu = _U32.unpack_from(value)[0]
        elif attr == IFLA_MASTER:
            master = _U32.unpack_from(value)[0] or None
        elif attr == IFLA_STATS64 and len(value) >= _STATS.size:
            stats = _STATS.unpack_from(value)
        elif attr == IFLA_LINKINFO:
            for sub, subvalue in _attrs(value, 0, len(value)):
                if sub == IFLA_INFO_KIND:
                    kind = _string(subvalue)
    return LinkInfo(index, name, flags, master, kind, stats, mtu)


def decode_address(data: memoryview, offset: int, end: int) -> AddressInfo | None:
    family, prefixlen, flags, scope, index = _IFADDRMSG.unpack_from(data, offset)
    if family not in FAMILIES:
        return None
    address = local = None
    # The attribute walk is inlined: this runs for every address on every run.
    position = offset + _IFADDRMSG.size
    unpack_attr = _ATTR.unpack_from
    while position + 4 <= end:
        length, attr = unpack_attr(data, position)
        if length < 4:
            break
        attr &= 0x3FFF
        if attr == IFA_ADDRESS:
            address = data[position + 4 : position + length]
        elif attr == IFA_LOCAL:
            local = data[position + 4 : position + length]
        elif attr == IFA_FLAGS:
            flags = _U32.unpack_from(data, position + 4)[0]
        position += (length + 3) & ~3
    chosen = local if local is not None else address  # IFA_LOCAL is ours on point-to-point
    if chosen is None:
        return None
    return AddressInfo(index, family, int.from_bytes(chosen, "big"), prefixlen, scope, flags)


class Refusal:
    """The kernel's answer to one request that failed."""

    __slots__ = ("errno", "message")

    def __init__(self, errno: int, message: str) -> None:
        self.errno = errno
        self.message = message  # the kernel's extended ack text, when it gave one

    def __repr__(self) -> str:
        return f"Refusal(errno={self.errno!r}, message={self.message!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Refusal):
            return NotImplemented
        return (self.errno, self.message) == (other.errno, other.message)

    def __hash__(self) -> int:
        return hash((self.errno, self.message))

    def __str__(self) -> str:
        text = os.strerror(self.errno)
        return f"{text} ({self.message})" if self.message else text


class RtnlSocket:
    """A NETLINK_ROUTE socket for dumps and batched requests with per-request acks."""

    def __init__(self) -> None:
        self.sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW, _socket.NETLINK_ROUTE)
        self.sock.bind((0, 0))
        for option, value in ((_socket.SO_SNDBUF, SEND_BUFFER), (_socket.SO_RCVBUF, 4 << 20)):
            self.sock.setsockopt(_socket.SOL_SOCKET, option, value)
        for option in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
            self.sock.setsockopt(SOL_NETLINK, option, 1)
        self.seq = 1

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RtnlSocket:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _incoming(self) -> Iterator[tuple[memoryview, int, int, int, int, int]]:
        """Every message the kernel sends: (buffer, offset, length, type, flags, seq)."""
        while True:
            data = memoryview(self.sock.recv(1 << 20))
            offset = 0
            while offset + 16 <= len(data):
                length, mtype, flags, seq, _pid = _HDR.unpack_from(data, offset)
                if length < 16:
                    raise OSError(errno.EPROTO, "malformed netlink message")
                yield data, offset, length, mtype, flags, seq
                offset += (length + 3) & ~3

    def dump(self, kind: int) -> Iterator[tuple[memoryview, int, int]]:
        """Yield (buffer, payload offset, payload end) of every message of a dump."""
        seq = self.next_seq()
        header = {RTM_GETLINK: _IFINFOMSG.size, RTM_GETADDR: _IFADDRMSG.size}.get(kind, _RTMSG.size)
        self.sock.send(_message(kind, NLM_F_REQUEST | NLM_F_DUMP, seq, bytes(header)))
        unpack = _HDR.unpack_from
        while True:  # _incoming(), inlined: a dump of 2,000 rules yields 2,000 times
            data = memoryview(self.sock.recv(1 << 20))
            offset, size = 0, len(data)
            while offset + 16 <= size:
                length, mtype, _flags, mseq, _pid = unpack(data, offset)
                if length < 16:
                    raise OSError(errno.EPROTO, "malformed netlink message")
                if mseq == seq:
                    if mtype == NLMSG_DONE:
                        return
                    if mtype == NLMSG_ERROR:
                        code = _error_code(data, offset)
                        raise OSError(code, os.strerror(code))
                    yield data, offset + 16, offset + length
                offset += (length + 3) & ~3

    def links(self) -> list[LinkInfo]:
        return [decode_link(d, o, e) for d, o, e in self.dump(RTM_GETLINK)]

    def addresses(self) -> list[AddressInfo]:
        # A permanent address's message is the same bytes in every dump (its lifetimes are
        # infinite; a DHCP address's count down, and are decoded anew).
        return self._shared(RTM_GETADDR, _decoded_addresses, decode_address)

    def rules(self) -> list[Rule]:
        # A rule's message is the same bytes in every dump while the rule exists.
        return self._shared(RTM_GETRULE, _decoded_rules, decode_rule)

    def _shared(
        self,
        kind: int,
        cache: Recent[bytes, T],
        decode: Callable[[memoryview, int, int], T | None],
    ) -> list[T]:
        """A dump's messages decoded, each message's object shared with the reads before
        (recent.py): the watch, which reads thousands of rules and addresses on every
        reconcile, decodes each of them once."""
        found = []
        for data, offset, end in self.dump(kind):
            key = data[offset:end].tobytes()
            item = cache.get(key)
            if item is None:
                item = decode(data, offset, end)
                if item is None:  # not IPv4 or IPv6
                    continue
                cache.put(key, item)
            found.append(item)
        return found

    def routes(self, names: dict[int, str]) -> list[Route]:
        # rtm_table, the header's fifth byte, picks out the local table's routes (one or two
        # per address: a host with 1,000 addresses has more of them than of all others)
        return [
            r
            for d, o, e in self.dump(RTM_GETROUTE)
            if d[o + 4] != RT_TABLE_LOCAL and (r := decode_route(d, o, e, names))
        ]

    def route_get(
        self, dst: IPAddress, src: IPAddress | None, names: dict[int, str]
    ) -> Route | Refusal:
        """The kernel's route lookup, as `ip route get DST from SRC` makes it."""
        family = Family.of(dst)
        full = dst.max_prefixlen
        body = _RTMSG.pack(family, full, full if src else 0, 0, 0, 0, 0, 0, 0)
        body += _attr(RTA_DST, dst.packed)
        if src is not None:
            body += _attr(RTA_SRC, src.packed)
        seq = self.next_seq()
        self.sock.send(_message(RTM_GETROUTE, NLM_F_REQUEST, seq, body))
        for data, offset, length, mtype, flags, mseq in self._incoming():
            if mseq != seq:
                continue
            if mtype == NLMSG_ERROR:
                return Refusal(_error_code(data, offset), _ext_ack(data, offset, length, flags))
            route = decode_route(data, offset + 16, offset + length, names)
            if route is None:  # a local destination
                return Refusal(errno.EADDRNOTAVAIL, "local address")
            return route
        raise AssertionError("unreachable: _incoming never ends")

    def transact(self, messages: Sequence[bytes]) -> list[Refusal | None]:
        """Send requests in batches; the kernel's verdict on each, in order (None: done).

        The kernel handles the requests of one buffer in order and answers each of them,
        also after one has failed, so every verdict is known and the caller can undo exactly
        what was done.
        """
        verdicts: list[Refusal | None] = [None] * len(messages)
        start = 0
        while start < len(messages):
            end, size = start, 0
            while end < len(messages) and (size == 0 or size + len(messages[end]) <= BATCH_BYTES):
                size += len(messages[end])
                end += 1
            self._send_batch(messages[start:end], verdicts, start)
            start = end
        return verdicts

    def _send_batch(
        self, batch: Sequence[bytes], verdicts: list[Refusal | None], base: int
    ) -> None:
        first_seq = self.seq + 1
        buffer = bytearray(b"".join(batch))
        offset = 0
        last = len(batch) - 1
        for index, message in enumerate(batch):
            # Number the requests so that answers map back to them. Only the last asks for
            # an ack: the kernel answers every failed request anyway, in order, so once the
            # last one is answered every failure before it has been reported; 2,000 acks
            # would cost 2,000 receive calls (and the kernel as many messages).
            flags = _FLAGS.unpack_from(buffer, offset + 6)[0]
            flags = flags | NLM_F_ACK if index == last else flags & ~NLM_F_ACK
            _FLAGS_SEQ.pack_into(buffer, offset + 6, flags, self.next_seq())
            offset += len(message)
        self.sock.send(buffer)
        for data, offset, length, mtype, flags, mseq in self._incoming():
            index = mseq - first_seq
            if mtype == NLMSG_ERROR and 0 <= index <= last:
                code = _error_code(data, offset)
                if code:
                    verdicts[base + index] = Refusal(code, _ext_ack(data, offset, length, flags))
                if index == last:
                    return


def _error_code(data: memoryview, offset: int) -> int:
    """The errno of an NLMSG_ERROR message (0: an ack)."""
    code: int = -struct.unpack_from("=i", data, offset + 16)[0]
    return code


def _ext_ack(data: memoryview, offset: int, length: int, flags: int) -> str:
    if not flags & NLM_F_ACK_TLVS:
        return ""
    # nlmsgerr is the error code and the request's header (payload capped by NETLINK_CAP_ACK)
    for kind, value in _attrs(data, offset + 16 + 4 + 16, offset + length):
        if kind == NLMSGERR_ATTR_MSG:
            return bytes(value).rstrip(b"\0").decode(errors="replace")
    return ""


# -- the echoes of our own changes, in the events a watcher receives ------------------------

Echoes = dict[tuple[int, Rule | Route], int]  # (message type, object) -> events to come


def echoes_of(changes: Iterable[tuple[bool, Rule | Route]]) -> Echoes:
    """The events the kernel will multicast for these changes, (added?, rule or route) each."""
    echoes: Echoes = {}
    for added, obj in changes:
        if isinstance(obj, Rule):
            kind = RTM_NEWRULE if added else RTM_DELRULE
        else:
            kind = RTM_NEWROUTE if added else RTM_DELROUTE
        echoes[kind, obj] = echoes.get((kind, obj), 0) + 1
    return echoes


def only_echoes(data: bytes, echoes: Echoes, names: dict[int, str]) -> bool:
    """Whether every message of this datagram of events is one of `echoes` (each of those it
    holds is taken off): the watch need not plan again for what it did itself."""
    view = memoryview(data)
    offset = 0
    mine = True
    while offset + 16 <= len(view):
        length, kind = _HDR.unpack_from(view, offset)[:2]
        if length < 16:
            return False
        obj: Rule | Route | None = None
        if kind in (RTM_NEWRULE, RTM_DELRULE):
            obj = decode_rule(view, offset + 16, offset + length)
        elif kind in (RTM_NEWROUTE, RTM_DELROUTE):
            obj = decode_route(view, offset + 16, offset + length, names)
        count = echoes.get((kind, obj), 0) if obj is not None else 0
        if obj is not None and count:
            if count == 1:
                del echoes[kind, obj]
            else:
                echoes[kind, obj] = count - 1
        else:
            mine = False
        offset += (length + 3) & ~3
    return mine
