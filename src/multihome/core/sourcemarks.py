"""PURE: the nft form of source selection, for uplinks whose addresses are too many prefixes.

Where the addresses of one subnet interleave over several NICs, the fewest prefixes that hold
an uplink's addresses and no other's (sources.py) are the addresses themselves, and two rules
per address slow every route lookup in proportion (0.03-0.18 of stock at 2,000-10,000). Such
an uplink is selected by nftables instead, in multihome's own table (`inet multihome`):

  set src4_N, src6_N      the uplink's addresses (N: its mark id, from its table)
  chain sources_out       route type, output: a packet from the set's addresses gets the
                          uplink's mark V inside the mask M (`meta mark set meta mark & ~M
                          | V`); the mark changed, so the kernel routes it again, by:
  fwmark V/M lookup T suppress_prefixlength 0   at rule 1's priority (before main's:
                          on-link replies on a shared subnet leave by the owning NIC)
  fwmark V/M lookup T     at rule 3's priority (off-link replies by the uplink's gateway;
                          the same rule as gateway mode's for that uplink)
  chain sources_in        prerouting: a packet to the set's addresses gets the mark too, so
                          that strict rp_filter (with src_valid_mark=1) judges its source by
                          the uplink's table, as the source rules made it do
  table arp multihome     the same for ARP requests for the IPv4 sets' addresses: the kernel
                          judges an ARP request by strict rp_filter too (arp_process routes
                          it), and without the mark a neighbour on a shared subnet asking for
                          the second NIC's address is judged by main's route of the first
                          NIC and never answered (the inet family sees no ARP)

The marks are gateway mode's (README, "Gateway mode"):
V = gateway.mark(mask, table - table_min + 1).
An address coming or going changes one element of one set (`add element` / `delete
element`, one nft transaction), never the table or a rule. The set is declared in the table
(gateway._body), its elements are written after it in the same file (element_lines), so that
the table's digest (its comment) does not change with the addresses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from multihome.core import gateway, sources
from multihome.core.model import (
    Desired,
    Family,
    GatewayLayout,
    GatewaySource,
    IPAddress,
    IPNetwork,
    Ownership,
    Rule,
    SourceMarks,
    SourceSet,
    Sysctl,
    Uplink,
)

THRESHOLD = sources.THRESHOLD  # (measured and explained there)

FAMILY, TABLE, ALL = gateway.FAMILY, gateway.TABLE, gateway.ALL
SET_PREFIX = "src"  # src4_N, src6_N: SourceSet.name
OUT_CHAIN, IN_CHAIN = "sources_out", "sources_in"
# after gateway mode's restore of a connection's mark in output (priority mangle): a packet
# from an uplink's own address leaves by that uplink, as its source rule would send it
OUT_PRIORITY = "mangle + 1"


def plan_sources(
    ownership: Ownership,
    mask: int,
    uplinks: Iterable[Uplink],
    family: Family,
    prefixes: Mapping[str, list[IPNetwork]],
    limits: Mapping[str, int] | None = None,
) -> tuple[list[SourceSet], list[str]]:
    """The uplinks of this family whose prefixes are more than their limit (`limits`, by
    uplink; THRESHOLD where not given), each as its set; and notes for those whose table
    gives no mark id inside the mask (they keep rules)."""
    capacity = mask // (mask & -mask)
    sets, notes = [], []
    for uplink in uplinks:
        count = len(prefixes.get(uplink.name, ()))
        if count <= (limits or {}).get(uplink.name, THRESHOLD):
            continue
        uplink_id = uplink.table - ownership.table_min + 1
        if '"' in uplink.name or "\\" in uplink.name:
            notes.append(
                f"{uplink.name!r}: its {count:,} IPv{family.version} source prefixes stay rules:"
                ' nftables cannot quote its name (it holds " or \\)'
            )
            continue
        if not 1 <= uplink_id <= capacity:
            notes.append(
                f"{uplink.name}: its {count:,} IPv{family.version} source prefixes stay rules:"
                f" table {uplink.table} gives mark id {uplink_id}, outside mark_mask"
                f" 0x{mask:08X} ({capacity} ids)"
            )
            continue
        values = tuple(sorted(int(a.ip) for a in uplink.addresses_in(family)))
        sets.append(
            SourceSet(
                f"{SET_PREFIX}{family.version}_{uplink_id}",
                uplink.name,
                family,
                uplink.table,
                gateway.mark(mask, uplink_id),
                values,
                count,
                (uplink.source4 if family is Family.INET else uplink.source6)
                is not GatewaySource.CONFIG,
            )
        )
    return sets, notes


def rules(
    marks: SourceMarks, ownership: Ownership, with_gateway: set[tuple[str, Family]]
) -> list[Rule]:
    """The fwmark rules that mirror rules 1 and 3 for each set's uplink (rule 3 only where the
    uplink has a gateway in that family, as for source rules)."""
    on_link, _, off_link, _ = ownership.priorities
    found = []
    for s in marks.sets:
        found.append(
            Rule(
                s.family,
                on_link,
                s.table,
                None,
                0,
                ownership.protocol,
                fwmark=s.mark,
                fwmask=marks.mask,
            )
        )
    for s in marks.sets:
        if (s.uplink, s.family) in with_gateway:
            found.append(
                Rule(
                    s.family,
                    off_link,
                    s.table,
                    None,
                    None,
                    ownership.protocol,
                    fwmark=s.mark,
                    fwmask=marks.mask,
                )
            )
    return found


def sysctls(marks: SourceMarks) -> list[Sysctl]:
    """src_valid_mark=1: strict rp_filter judges a received packet by a lookup with its mark
    (the input side's), or it would judge it by main and drop the second uplink's replies."""
    if any(s.family is Family.INET for s in marks.sets):
        return [Sysctl(gateway.SRC_VALID_MARK, "1")]
    return []


def why(s: SourceSet, shared: str, above: int = THRESHOLD) -> str:
    """Why the uplink got an nft set in this family (`above`: the threshold), in a few words."""
    more = (
        f"more than {above} rules"
        if s.prefixes > above
        else f"kept while more than {above // 2} (it took more than {above})"
    )
    return (
        f"IPv{s.family.version}: nft set {s.name} of its {len(s.addresses):,} addresses, fwmark"
        f" 0x{s.mark:08x}: {shared}, {s.prefixes:,} prefixes, {more}"
    )


# -- the nftables text -------------------------------------------------------------------------


def _set_mark(mask: int, value: int) -> str:
    return f"meta mark set meta mark & 0x{ALL & ~mask:08x} | 0x{value:08x}"


def _ip(s: SourceSet) -> str:
    return "ip" if s.family is Family.INET else "ip6"


def body(marks: SourceMarks | None) -> list[str]:
    """The sets (without elements: element_lines) and chains inside multihome's table."""
    if marks is None or not marks.sets:
        return []
    lines: list[str] = []
    for s in marks.sets:
        kind = "ipv4_addr" if s.family is Family.INET else "ipv6_addr"
        lines += [f"\tset {s.name} {{", f"\t\ttype {kind}", "\t}"]
    lines += [
        f"\tchain {OUT_CHAIN} {{",
        f"\t\ttype route hook output priority {OUT_PRIORITY}; policy accept;",
    ]
    # where the uplink's gateway is main's (not one the config names), only a packet whose
    # first lookup (without the mark) chose another device is marked and so routed again:
    # one that already leaves by the uplink (it holds main's default route, or main routes
    # the destination's subnet by it) has the route the uplink's table would give (the
    # second lookup per packet was most of the nft form's cost)
    # the device test first: it is cheaper than the set lookup, and a packet that already
    # leaves by the uplink looks up no set of that uplink (bench_datapath.py --variants
    # lookup-first, 2,000 | 10,000 interleaved, one run: UDP sendto/s from the last address
    # 0.71 | 0.72 against 0.69 | 0.69 with the lookup first, from the first address 0.85 |
    # 0.84 against 0.83 | 0.80)
    lines += [
        "\t\t"
        + (f"oifname != {gateway.quote(s.uplink)} " if s.main_gateway else "")
        + f"{_ip(s)} saddr @{s.name} {_set_mark(marks.mask, s.mark)}"
        for s in marks.sets
    ]
    lines += [
        "\t}",
        f"\tchain {IN_CHAIN} {{",
        "\t\ttype filter hook prerouting priority mangle; policy accept;",
    ]
    lines += [f"\t\t{_ip(s)} daddr @{s.name} {_set_mark(marks.mask, s.mark)}" for s in marks.sets]
    lines.append("\t}")
    return lines


def arp_table(marks: SourceMarks | None) -> list[str]:
    """`table arp multihome`: its IPv4 sets again (a set belongs to one table) and an input
    chain that marks ARP requests for their addresses ([] without IPv4 sets)."""
    sets = [s for s in marks.sets if s.family is Family.INET] if marks is not None else []
    if marks is None or not sets:
        return []
    lines = [f"table arp {TABLE} {{"]
    for s in sets:
        lines += [f"\tset {s.name} {{", "\t\ttype ipv4_addr", "\t}"]
    lines += [
        f"\tchain {IN_CHAIN} {{",
        "\t\ttype filter hook input priority filter; policy accept;",
    ]
    lines += [f"\t\tarp daddr ip @{s.name} {_set_mark(marks.mask, s.mark)}" for s in sets]
    return [*lines, "\t}", "}"]


def _text(family: Family, value: int) -> str:
    return str(
        ipaddress.IPv4Address(value) if family is Family.INET else ipaddress.IPv6Address(value)
    )


def elements(marks: SourceMarks | None) -> dict[str, set[str]]:
    """Each set's elements as nft prints them, by "FAMILY NAME" (inet src4_1, arp src4_1)."""
    if marks is None:
        return {}
    found = {f"{FAMILY} {s.name}": {_text(s.family, v) for v in s.addresses} for s in marks.sets}
    for s in marks.sets:
        if s.family is Family.INET:
            found[f"arp {s.name}"] = found[f"{FAMILY} {s.name}"]
    return found


# nft reads a file in one go; an element list of 10,000 addresses on one line is fine, but
# lines of a few hundred keep a rendered file readable and diffable
_PER_LINE = 256


def element_lines(key: str, values: Iterable[str], verb: str = "add") -> list[str]:
    """`add element inet multihome NAME { ... }` (or delete) for the set `key` ("FAMILY
    NAME"), a few hundred elements per line."""
    family, name = key.split(" ")
    ordered = list(values)
    return [
        f"{verb} element {family} {TABLE} {name} {{ {', '.join(ordered[i : i + _PER_LINE])} }}"
        for i in range(0, len(ordered), _PER_LINE)
    ]


def fill(marks: SourceMarks | None) -> list[str]:
    """The lines that fill every set, after the tables are written (same nft file)."""
    lines = []
    for key, values in elements(marks).items():
        lines += element_lines(key, sorted(values, key=ipaddress.ip_address))
    return lines


def script(layout: GatewayLayout | None, reset_arp: bool = False) -> str:
    """gateway.replace_script with the ARP table and the sets' elements: one file, one
    transaction. `reset_arp`: delete an ARP table of multihome's even where the layout
    has none (it may have had one)."""
    text = gateway.replace_script(layout)
    marks = layout.sources if layout is not None else None
    arp = arp_table(marks)
    if arp or reset_arp:
        text += f"table arp {TABLE}\ndelete table arp {TABLE}\n"
    extra = arp + fill(marks)
    return text + "".join(f"{line}\n" for line in extra)


def element_changes(
    marks: SourceMarks | None, live: Mapping[str, set[str]]
) -> tuple[list[str], list[str]]:
    """nft lines that bring the live sets' elements to the planned ones, and the lines that
    undo them: ([], []) when they are equal."""
    forward: list[str] = []
    backward: list[str] = []
    for name, wanted in elements(marks).items():
        have = live.get(name, set())
        extra, missing = sorted(have - wanted), sorted(wanted - have)
        if missing:
            forward += element_lines(name, missing)
            backward += element_lines(name, missing, "delete")
        if extra:
            forward += element_lines(name, extra, "delete")
            backward += element_lines(name, extra)
    return forward, backward


# -- what the doctor and show need ------------------------------------------------------------


def marks_by_address(desired: Desired) -> dict[IPAddress, int]:
    """The mark a packet from each address gets (addresses selected by an nft set): the
    doctor's route lookups carry it, as the kernel's second lookup does."""
    layout = desired.gateway
    if layout is None or layout.sources is None:
        return {}
    found: dict[IPAddress, int] = {}
    for s in layout.sources.sets:
        make = ipaddress.IPv4Address if s.family is Family.INET else ipaddress.IPv6Address
        for value in s.addresses:
            found[make(value)] = s.mark
    return found
