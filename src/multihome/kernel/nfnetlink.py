"""Whether multihome's nftables tables exist, asked over nfnetlink: no nft process, and
nothing imported beyond the socket (`remove` asks on every host, most of which never had
one)."""

from __future__ import annotations

# _socket, not socket, as transport.py: socket.py's enums cost more than the question
import _socket
import errno
import struct

TABLE = "multihome"  # gateway.TABLE (not imported: it brings the config and the firewall)

# nfnetlink (<linux/netfilter/nfnetlink.h>, nf_tables.h): a GETTABLE request for one table
NETLINK_NETFILTER, NFNL_SUBSYS_NFTABLES, NFT_MSG_NEWTABLE, NFT_MSG_GETTABLE = 12, 10, 0, 1
NFTA_TABLE_NAME, NLMSG_ERROR, NLM_F_REQUEST = 1, 2, 1
NFPROTO = {"inet": 1, "arp": 3}


def exists() -> bool | None:
    """Whether multihome's table (inet, or its ARP table) is in the kernel, asked over
    netlink: `remove` on a host that never had one (most hosts) then spawns no nft, whose
    `nft -j list ruleset` alone took a third of its time. None: the kernel would not say
    (no nf_tables, no permission)."""
    name = TABLE.encode() + b"\0"
    attribute = struct.pack("=HH", 4 + len(name), NFTA_TABLE_NAME) + name
    attribute += b"\0" * (-len(attribute) % 4)
    try:
        sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW, NETLINK_NETFILTER)
    except OSError:
        return None
    try:
        sock.settimeout(5)
        for seq, family in enumerate(NFPROTO.values(), start=1):
            body = struct.pack("=BBH", family, 0, 0) + attribute
            kind = NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETTABLE
            sock.send(struct.pack("=IHHII", 16 + len(body), kind, NLM_F_REQUEST, seq, 0) + body)
            reply = sock.recv(65536)
            _, answer = struct.unpack_from("=IH", reply)
            if answer == NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWTABLE:
                return True
            if answer != NLMSG_ERROR or struct.unpack_from("=i", reply, 16)[0] != -errno.ENOENT:
                return None
    except OSError:
        return None
    finally:
        sock.close()
    return False


# nftables' change notifications (NFNLGRP_NFTABLES): the messages that change what the
# firewall reader takes its answers from (a DNAT to a bridge, another mark user): tables,
# chains and rules added or deleted. A set's elements (which ban lists change all day)
# and the generation markers are not.
NFNLGRP_NFTABLES = 7
NFT_MSG_DELTABLE, NFT_MSG_NEWCHAIN, NFT_MSG_DELCHAIN = 2, 3, 5
NFT_MSG_NEWRULE, NFT_MSG_DELRULE = 6, 8
CHANGES = {NFT_MSG_NEWTABLE, NFT_MSG_DELTABLE, NFT_MSG_NEWCHAIN, NFT_MSG_DELCHAIN}
CHANGES |= {NFT_MSG_NEWRULE, NFT_MSG_DELRULE}
NFTA_TABLE = 1  # a table's name, a chain's or a rule's table: the first attribute of each
NLA_TYPE_MASK = 0x3FFF


def subscribe() -> _socket.socket | None:
    """A non-blocking socket that hears every change of the nftables ruleset in this
    namespace (iptables-nft's too); None where the kernel will not say (no nf_tables, no
    CAP_NET_ADMIN): then changes are found by the periodic reconcile alone. Binding to the
    group has the kernel load nf_tables where it is a module, as `nft` itself would."""
    try:
        sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW, NETLINK_NETFILTER)
    except OSError:
        return None
    try:
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, 1 << 20)
        sock.bind((0, 1 << (NFNLGRP_NFTABLES - 1)))
        sock.setblocking(False)
    except OSError:
        sock.close()
        return None
    return sock


def foreign_change(data: bytes) -> bool:
    """Whether a datagram of nftables notifications adds or deletes a table, chain or rule
    of a table not multihome's own (its own writes would otherwise wake the reconcile that
    made them). Bounds-checked: a message that does not parse is not a change."""
    offset = 0
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if length < 16 or offset + length > len(data):
            return False
        if kind >> 8 == NFNL_SUBSYS_NFTABLES and kind & 0xFF in CHANGES:
            name = _table_of(data, offset + 20, offset + length)  # after nfgenmsg
            if name is not None and name != TABLE.encode():
                return True
        offset += (length + 3) & ~3
    return False


def _table_of(data: bytes, start: int, end: int) -> bytes | None:
    """The NFTA_TABLE attribute's string among a message's attributes, or None."""
    while start + 4 <= end:
        length, kind = struct.unpack_from("=HH", data, start)
        if length < 4 or start + length > end:
            return None
        if kind & NLA_TYPE_MASK == NFTA_TABLE:
            return data[start + 4 : start + length].split(b"\0", 1)[0]
        start += (length + 3) & ~3
    return None
