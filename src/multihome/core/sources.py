"""PURE: the source prefixes that select an uplink's traffic, as few as the addresses allow.

The kernel walks the rule list for every route lookup (each unconnected UDP packet, each new
connection, each strict rp_filter check), so the data path slows in proportion to the rules:
two rules per address cost 0.08-0.10 of stock routing's lookups at 2,000 addresses. An
uplink's rules therefore select by prefixes, not addresses: the fewest aligned prefixes inside
its on-link networks that hold all of its addresses and no address of any other interface.
When an uplink's subnet holds only its own addresses, that is the subnet itself (one pair of
rules, however many addresses); when addresses of several NICs interleave in one subnet (two
NICs on one switch), the prefixes shrink around each run of the uplink's own addresses, down
to single addresses where they alternate.

A prefix may also cover addresses nobody holds yet: a packet from such a source can only be
sent once the address is local, and adding it to the uplink then changes no rule.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

from multihome.core.addresses import IPNetwork, network_of

# Prefixes per uplink and family above which its sources move to an nft set (sourcemarks.py;
# plan.py reads it here, so that a host below it imports no nft code): the crossover measured
# with bench/bench_datapath.py --rules (two uplinks, one /16, addresses alternating;
# ratios to stock of the rules form vs the nft form, one run, 3 rounds of 0.5 s):
#   addresses (prefixes per uplink)   UDP sendto/s first | last    TCP connects/s   UDP rx
#      8 (4)                          0.92 vs 0.71 | 0.86 vs 0.67   0.94 vs 0.87    0.86 vs 0.75
#     20 (10)                         0.82 vs 0.63 | 0.84 vs 0.73   0.95 vs 0.85    0.84 vs 0.82
#     40 (20)                         0.85 vs 0.71 | 0.75 vs 0.73   0.91 vs 0.84    0.88 vs 0.82
#     80 (40)                         0.88 vs 0.76 | 0.67 vs 0.73   0.78 vs 0.83    0.76 vs 0.70
#    160 (80)                         0.64 vs 0.72 | 0.53 vs 0.73   0.73 vs 0.82    0.68 vs 0.84
#    400 (200)                        0.48 vs 0.72 | 0.32 vs 0.73   0.55 vs 0.86    0.46 vs 0.85
# Again once only packets whose first lookup chose another device are marked (a later run,
# same bench; UDP first | last, TCP, rx; rules form vs nft form):
#     20 (10)   0.73 vs 0.79 | 0.82 vs 0.71   0.97 vs 0.86   0.93 vs 0.79
#     40 (20)   0.80 vs 0.82 | 0.74 vs 0.73   1.00 vs 0.86   0.75 vs 0.81
#     80 (40)   0.80 vs 0.87 | 0.63 vs 0.76   1.03 vs 0.88   0.82 vs 0.87
# The nft form costs the same at any size (a set lookup, and for a packet main would send by
# another device a second route lookup after the mark: 0.71-0.76 of stock for unconnected
# UDP from such an address); the rules cost grows with the rules walked, and passes it
# between 20 and 40 prefixes per uplink.
# Where the nft form spends, for unconnected UDP from the second NIC's address
# (bench_datapath.py --variants, 2,000 | 10,000 interleaved, every variant a host of its own
# against the same stock host in one run, 7 rounds; ratios to stock): the rules without the
# chain 0.90 | 0.91 (a host with rules of its own loses the kernel's merged local+main
# lookup: own subnets' few prefix rules measured 0.89-0.91 too, 0.92-0.95 once an uplink
# alone on its subnets lost rule 1, plan.py); the chain without its mark
# 0.86 | 0.83 (each set lookup about 0.03); marked and routed again 0.71 | 0.72 (the second
# lookup: ip_route_me_harder walks the rules again, three table lookups and the xfrm
# decode). Other forms in the same run: the set lookup before the device test 0.69 | 0.69;
# one verdict map of all addresses 0.72 | 0.70; rule 1001 for marked packets only 0.73 |
# 0.71; the layout cut to one fwmark rule, the least a second lookup costs (wrong for
# on-link and for main's specific routes) 0.75 | 0.75. So no form that routes the packet
# again reaches 0.75 here; only one without the second lookup does: `fwd ip to GATEWAY
# device eth1` in a netdev egress chain of eth0, 0.81 | 0.81 -- not used: it lowers the
# TTL, the firewall and `ip route get` see eth0, and it would choose the next hop itself.
THRESHOLD = 32


def covering_prefixes(
    networks: Iterable[IPNetwork], own: Iterable[int], others: Iterable[int]
) -> list[IPNetwork]:
    """The fewest aligned prefixes, each inside one of `networks` (of one IP version), that
    together hold every address of `own` that lies in them and none of `others` (addresses
    as integers). Sorted by address."""
    found: list[IPNetwork] = []
    own_sorted = sorted(set(own))
    others_sorted = sorted(set(others))
    for network in sorted(set(networks), key=lambda n: (n.network_address, n.prefixlen)):
        first = int(network.network_address)
        after = int(network.broadcast_address) + 1
        mine = own_sorted[bisect_left(own_sorted, first) : bisect_left(own_sorted, after)]
        theirs = others_sorted[
            bisect_left(others_sorted, first) : bisect_left(others_sorted, after)
        ]
        if mine and not theirs:  # the usual uplink: its whole subnet (not made anew)
            found.append(network)
            continue
        bits = network.max_prefixlen
        _cover(network.version, first, network.prefixlen, bits, mine, theirs, found)
    return outermost(found)  # (networks may nest: an address's /24 and another's /16)


def outermost(networks: Iterable[IPNetwork]) -> list[IPNetwork]:
    """The networks (of one IP version) that no other of them holds, sorted by address."""
    kept: list[IPNetwork] = []
    for network in sorted(networks, key=lambda n: (n.network_address, n.prefixlen)):
        if not kept or not network.subnet_of(kept[-1]):  # type: ignore[arg-type]
            kept.append(network)
    return kept


def _cover(
    version: int,
    start: int,
    length: int,
    bits: int,
    mine: list[int],
    theirs: list[int],
    found: list[IPNetwork],
) -> None:
    """Split the prefix start/length until a part holds own addresses and no other's: that
    part is one of the fewest prefixes (a larger one holds another's address, and any valid
    prefix lies inside one such part). `mine` and `theirs` are the sorted addresses inside."""
    if not mine:
        return
    if not theirs:
        found.append(network_of(version, start, length))
        return
    if length == bits:  # one address, held by this uplink and another: nothing selects it
        return
    half = 1 << (bits - length - 1)
    middle = start + half
    split_mine = bisect_left(mine, middle)
    split_theirs = bisect_left(theirs, middle)
    _cover(version, start, length + 1, bits, mine[:split_mine], theirs[:split_theirs], found)
    _cover(version, middle, length + 1, bits, mine[split_mine:], theirs[split_theirs:], found)
