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
    # networks may nest (an address's /24 and another's /16): keep the outermost
    found.sort(key=lambda n: (n.network_address, n.prefixlen))
    kept: list[IPNetwork] = []
    for prefix in found:
        if not kept or not prefix.subnet_of(kept[-1]):  # type: ignore[arg-type]
            kept.append(prefix)
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
