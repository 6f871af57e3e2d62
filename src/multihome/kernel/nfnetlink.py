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
