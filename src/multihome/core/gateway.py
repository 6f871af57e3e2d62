"""PURE: gateway mode -- what a router that forwards a LAN over several uplinks needs.

Per uplink i a mark V_i inside the mark mask M (V_i = i * lowest bit of M, i = the uplink's
table - table_min + 1, so that it stays when other uplinks come and go) and a rule
`fwmark V_i/M lookup T_i` after `lookup main suppress_prefixlength 0`; the weighted multipath
route in the balancing table picks a new forwarded connection's uplink, and multihome's own
nftables table (`table inet multihome`) makes conntrack remember it:

  prerouting (mangle, before DNAT)  restore the connection's mark on every packet (LAN side,
                                    and uplinks' replies, for strict rp_filter with
                                    src_valid_mark); a new connection arriving on an uplink
                                    (port forward, inbound) gets that uplink's mark
  output (mangle)                   restore the mark on local sockets' packets
  postrouting (mangle)              a new connection from the LAN gets the mark of the uplink
                                    it leaves by
  postrouting (srcnat)              masquerade per uplink, LAN connections only

Marks are written only inside the mask (`meta mark set meta mark & ~M | V`): nftables cannot
copy masked bits from ct mark to meta mark, so each uplink has its own restore rule.
Only IPv4 is marked (no NAT66; IPv6 prefix delegation routes by source prefix).

Host mode's inbound pinning (plan_pinning) is the same table without a LAN side, for a host
whose port forwards (DNAT to docker0, virbr0, cni0: core/firewall.py reads them) would
otherwise answer through main's default route: prerouting restores the mark (and tags a new
connection's first packet, for strict rp_filter), and a forward-hook chain pins each new
forwarded connection from an uplink to it, so local sockets keep the source rules.
"""

from __future__ import annotations

from collections.abc import Iterable

from multihome.core import firewall
from multihome.core.config import Config, Sticky
from multihome.core.model import (
    TABLE_MAIN,
    Family,
    GatewayLayout,
    HostState,
    IPAddress,
    Ownership,
    Rule,
    Sysctl,
    Uplink,
    distinct_networks,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

TABLE = "multihome"
FAMILY = "inet"
FORWARDING = "net/ipv4/ip_forward"
SRC_VALID_MARK = "net/ipv4/conf/all/src_valid_mark"
CT_ACCOUNTING = "net/netfilter/nf_conntrack_acct"  # bytes per connection, for status
MULTIPATH_HASH = "net/ipv4/fib_multipath_hash_policy"
# flow: layer-4 hash (each new connection may take another uplink); host-pair: layer-3 hash
# (source and destination address only: one inner host and one remote host share an uplink)
HASH_POLICY = {Sticky.FLOW: "1", Sticky.HOST_PAIR: "0"}
ALL = firewall.ALL
walk = firewall.walk  # (gateway_doctor and the tests walk nft expressions by this name)


def mark(mask: int, uplink_id: int) -> int:
    """The mark of uplink `uplink_id` (1, 2, ...) inside `mask`."""
    return uplink_id * (mask & -mask)


def mask_key(config: Config) -> str:
    """The key that set the mark band, where an error about it points."""
    if "gateway.mark_mask" in config.lines and "multihome.mark_mask" not in config.lines:
        return "gateway.mark_mask"
    return "multihome.mark_mask"


def plan_gateway(
    config: Config, state: HostState, uplinks: list[Uplink], priority: int
) -> tuple[list[Rule], list[Sysctl], GatewayLayout]:
    """The fwmark rules, sysctls and nftables layout of gateway mode (raises ConfigError)."""
    gateway = config.gateway
    assert gateway is not None
    if not gateway.lan:
        raise config.error(
            "names no LAN interface: gateway mode routes the forwarded traffic of the"
            " interfaces listed here",
            "gateway.lan",
            hint='e.g. lan = ["lan0"] (bridges too: br-lan, docker0, virbr0)',
        )
    for name in gateway.lan:
        if state.interface(name) is None:
            raise config.error(
                f"no interface named {name!r} on this host",
                "gateway.lan",
                hint="`ip -br link` lists the interfaces; name them in lan",
            )
    if state.sysctls.get(FORWARDING) == "0":
        raise config.error(
            "forwarding is off on this host (net.ipv4.ip_forward=0): the LAN's traffic is"
            " not routed at all, so gateway mode would do nothing",
            "gateway",
            hint="sysctl -w net.ipv4.ip_forward=1, and persist it in /etc/sysctl.d/;"
            " or remove [gateway]",
        )
    own = config.ownership
    members = [u for u in uplinks if u.addresses_in(Family.INET)]
    for name in [*gateway.lan, *(u.name for u in members)]:
        if '"' in name or "\\" in name:
            import shlex  # (only for this hint: not at every start)

            raise config.error(
                f"interface {name!r} has a name nftables cannot quote (it holds \" or \\)",
                "gateway.lan" if name in gateway.lan else "gateway",
                hint=f"rename it: ip link set dev {shlex.quote(name)} name NEWNAME",
            )
    mask = config.mark_mask
    capacity = _capacity(mask)
    # An uplink's id comes from its table, not its place in the list: when another uplink
    # leaves (its link went down), the others keep their marks and so their connections.
    marks = []
    for u in members:
        uplink_id = u.table - own.table_min + 1
        if not 1 <= uplink_id <= capacity:
            raise config.error(
                f"{u.name}'s table {u.table} gives mark id {uplink_id}, which does not fit in"
                f" mark_mask 0x{mask:08X} ({capacity} ids: tables"
                f" {own.table_min}-{own.table_min + capacity - 1})",
                mask_key(config),
                hint="use a wider mark_mask, or tables at the start of [multihome] table_range",
            )
        marks.append((u.name, mark(mask, uplink_id)))
    rules = _fwmark_rules(config, [u.table for u in members], marks, priority)
    sysctls = [
        Sysctl(SRC_VALID_MARK, "1"),
        Sysctl(MULTIPATH_HASH, HASH_POLICY[gateway.sticky]),
    ]
    if CT_ACCOUNTING in state.sysctls:
        sysctls.append(Sysctl(CT_ACCOUNTING, "1"))
    layout = GatewayLayout(
        lan=gateway.lan,
        marks=tuple(marks),
        mask=mask,
        masquerade=gateway.masquerade,
        flush_on_down=gateway.flush_on_down,
        host_pair=gateway.sticky is Sticky.HOST_PAIR,
    )
    return rules, sysctls, layout


def _capacity(mask: int) -> int:
    return mask // (mask & -mask)


def _fwmark_rules(
    config: Config, tables: list[int], marks: list[tuple[str, int]], priority: int
) -> list[Rule]:
    """`fwmark V_i/M lookup T_i`, one per uplink (tables and marks in the same order)."""
    return [
        Rule(
            Family.INET,
            priority,
            table,
            None,
            None,
            config.ownership.protocol,
            fwmark=value,
            fwmask=config.mark_mask,
        )
        for table, (_, value) in zip(tables, marks, strict=True)
    ]


class LocalTargets:
    """Where DNAT destinations lead on this host (see `of`), for many of them: the host's
    own IPv4 addresses and the candidate networks (main's routes, the interfaces' subnets,
    each distinct one once) gathered once, not per rule (rules x routes x addresses)."""

    def __init__(self, state: HostState) -> None:
        self.own = {a.ip.ip for a in state.addresses if a.family is Family.INET}
        self.candidates = [
            (r.dst, r.devices()[0])
            for r in state.routes
            if r.table == TABLE_MAIN
            and r.family is Family.INET
            and not r.is_default
            and r.devices()
        ]
        self.candidates += [
            (network, a.ifname)
            for a, network in distinct_networks(state.addresses)
            if a.family is Family.INET
        ]

    def of(self, address: IPAddress, uplinks: set[str]) -> str | None:
        """The local interface a DNAT destination is reached by (main's most specific route
        to it, or the subnet of an interface's address), when that is not an uplink and the
        address is not the host's own; else None."""
        if address.version != 4 or address in self.own:
            return None
        best: tuple[int, str] | None = None
        for network, device in self.candidates:
            if address in network and (best is None or network.prefixlen > best[0]):
                best = (network.prefixlen, device)
        if best is None or best[1] in uplinks:
            return None
        return best[1]


def pinning_reasons(
    state: HostState, uplinks: Iterable[str], found: firewall.Firewall
) -> dict[str, list[str]]:
    """Why pinning is wanted, per uplink: the DNAT rules (iptables or nft) that send
    connections arriving on it to a local interface that is not an uplink, as
    "DNAT to docker0 found (iptables-nft, table nat, chain DOCKER)"."""
    names = list(uplinks)
    excluded = set(names)
    targets = LocalTargets(state)
    reasons: dict[str, list[str]] = {}
    for rule in found.dnat():
        address = rule.address
        target = targets.of(address, excluded) if address else None
        if target is None:
            continue
        why = f"DNAT to {target} found ({rule.where})"
        for name in names:
            if rule.matches_in(name) and why not in reasons.setdefault(name, []):
                reasons[name].append(why)
    return {name: whys for name, whys in reasons.items() if whys}


def plan_pinning(
    config: Config,
    state: HostState,
    uplinks: list[Uplink],
    found: firewall.Firewall | None,
    priority: int,
) -> tuple[list[Rule], list[Sysctl], GatewayLayout | None, list[str], list[str]]:
    """Host mode's inbound pinning: on a host that forwards and has destination NAT to a
    local interface that is not an uplink (docker0, virbr0, cni0, a hand-made port forward),
    each new forwarded connection from an uplink is pinned to it (ct mark) and its replies
    are routed by that mark (`fwmark V_i/M lookup T_i` after main's specific routes).
    Returns the rules, sysctls, the table's layout (None: no pinning), notes (why it was
    left out) and reasons (why it is on, one line per set of uplinks and rule). Never
    raises: what stands in its way is a note."""
    if (
        not config.pin_inbound
        or config.gateway is not None  # gateway mode's table pins inbound connections itself
        or found is None
        or state.sysctls.get(FORWARDING) != "1"
    ):
        return [], [], None, [], []
    members = [u for u in uplinks if u.addresses_in(Family.INET)]
    wanted = pinning_reasons(state, (u.name for u in members), found)
    if len(members) < 2:
        return [], [], None, [], []
    if not wanted:
        unread = [
            f"{name} could not be read (run as root to see its port forwards)"
            for name in found.unreadable
        ]
        return [], [], None, [f"inbound pinning: {'; '.join(unread)}"] if unread else [], []
    grouped: dict[str, list[str]] = {}
    for name, whys in wanted.items():
        for why in whys:
            grouped.setdefault(why, []).append(name)
    reasons = [f"{', '.join(names)}: {why}" for why, names in grouped.items()]
    mask = config.mark_mask
    users = rule_mark_users(state.rules, mask, config.ownership)
    users += found.mark_users(mask)
    if users:
        note = (
            f"inbound pinning left out: other software uses bits of mark_mask 0x{mask:08X}"
            f" ({'; '.join(users)}), so replies to port forwards on the other uplinks still"
            " leave by main's default route; fix: set [multihome] mark_mask to bits nobody"
            " else uses (e.g. 0x00F00000), or pin_inbound = false to silence this"
        )
        return [], [], None, [note], []
    notes: list[str] = []
    marks: list[tuple[str, int]] = []
    for u in members:
        if u.name not in wanted:
            continue
        uplink_id = u.table - config.ownership.table_min + 1
        if not 1 <= uplink_id <= _capacity(mask):
            notes.append(
                f"{u.name}: not pinned, its table {u.table} gives mark id {uplink_id}, beyond"
                f" mark_mask 0x{mask:08X} ({_capacity(mask)} ids); use a wider mark_mask"
            )
        elif '"' in u.name or "\\" in u.name:
            notes.append(f"{u.name!r}: not pinned, nftables cannot quote its name")
        else:
            marks.append((u.name, mark(mask, uplink_id)))
    if not marks:
        return [], [], None, notes, []
    by_name = {u.name: u for u in members}
    rules = _fwmark_rules(config, [by_name[name].table for name, _ in marks], marks, priority)
    layout = GatewayLayout(
        lan=(),
        marks=tuple(marks),
        mask=mask,
        masquerade=False,
        flush_on_down=False,
        pin_forwarded=True,
    )
    return rules, [Sysctl(SRC_VALID_MARK, "1")], layout, notes, reasons


# -- the nftables table --------------------------------------------------------------------


def quote(name: str) -> str:
    """An interface name as an nft string: in double quotes (a name may hold characters
    nft would read as syntax, like `$`, `{` or `;`), and a trailing `*` escaped: nft reads
    `"up*"` as a wildcard that also matches upA, and `"up\\*"` as the name up* (only a
    trailing star is a wildcard; one inside stays itself). plan_gateway refuses names with
    `"` or `\\`, which nft strings cannot hold."""
    assert '"' not in name and "\\" not in name
    if name.endswith("*"):
        name = name[:-1] + "\\*"
    return f'"{name}"'


def _names(names: Iterable[str]) -> str:
    quoted = [quote(n) for n in names]
    return quoted[0] if len(quoted) == 1 else "{ " + ", ".join(quoted) + " }"


PAIR_TIMEOUT = "1h"  # how long an idle (inner, remote) pair keeps its uplink


def pair_set(layout: GatewayLayout, uplink: str) -> str | None:
    """The name of the set that remembers an uplink's (inner, remote) pairs (host-pair)."""
    if not layout.host_pair:
        return None
    value = layout.mark_of(uplink)
    return None if value is None else f"pairs{value // (layout.mask & -layout.mask)}"


def counters(layout: GatewayLayout, uplink: str) -> tuple[str, str] | None:
    """The names of the counters of an uplink's new connections and of its connections'
    bytes (forwarded, both directions), read by `watch` for its metrics: the kernel counts,
    so nobody walks the conntrack table for them."""
    value = layout.mark_of(uplink)
    if value is None:
        return None
    index = value // (layout.mask & -layout.mask)
    return f"conns{index}", f"bytes{index}"


def _body(layout: GatewayLayout) -> list[str]:
    if not layout.marks:  # no gateway part: the nft form of source selection alone
        return _sources(layout)
    keep = ALL & ~layout.mask
    m = f"0x{layout.mask:08x}"
    k = f"0x{keep:08x}"
    lan = _names(layout.lan) if layout.lan else ""
    restore = [
        f"\t\tmeta nfproto ipv4 ct mark & {m} == 0x{v:08x}"
        f" meta mark set meta mark & {k} | 0x{v:08x}"
        for _, v in layout.marks
    ]
    named = {name: counters(layout, name) or ("", "") for name, _ in layout.marks}
    lines = []
    for conns, bytes_ in named.values():
        lines += [f"\tcounter {conns} {{", "\t}", f"\tcounter {bytes_} {{", "\t}"]
    for name, _ in layout.marks if layout.host_pair else ():
        # host-pair: the pairs each uplink carries, dropped when idle for PAIR_TIMEOUT and
        # when the uplink dies (multihome watch), so a pair keeps its uplink after another
        # uplink returns -- a hash alone would re-spread the pairs then
        lines += [
            f"\tset {pair_set(layout, name)} {{",
            "\t\ttype ipv4_addr . ipv4_addr",
            "\t\tflags dynamic,timeout",
            f"\t\ttimeout {PAIR_TIMEOUT}",
            "\t\tsize 65536",
            "\t}",
        ]
    lines += [
        "\tchain prerouting {",
        "\t\ttype filter hook prerouting priority mangle; policy accept;",
    ]
    lines += [
        f'{line} counter name "{named[name][1]}"'
        for line, (name, _) in zip(restore, layout.marks, strict=True)
    ]
    lines += [
        f"\t\tmeta nfproto ipv4 ct state new ct mark & {m} == 0x00000000 iifname {lan}"
        f" ip saddr . ip daddr @{pair_set(layout, name)}"
        f" meta mark set meta mark & {k} | 0x{v:08x}"
        for name, v in (layout.marks if layout.host_pair else ())
    ]

    def new_on(name: str) -> str:  # a new connection from uplink `name`, with no mark of ours
        new = f"\t\tmeta nfproto ipv4 ct state new ct mark & {m} == 0x00000000"
        return f"{new} iifname {quote(name)}"

    def pin(value: int) -> str:
        return f"ct mark set ct mark & {k} | 0x{value:08x}"

    def tag(value: int) -> str:
        return f"meta mark set meta mark & {k} | 0x{value:08x}"

    if layout.pin_forwarded:
        # the packet's mark only, for strict rp_filter (src_valid_mark): the connection is
        # pinned in the forward hook, where only forwarded connections pass
        lines += [f"{new_on(name)} {tag(v)}" for name, v in layout.marks]
        lines += [
            "\t}",
            "\tchain forward {",
            "\t\ttype filter hook forward priority mangle; policy accept;",
        ]
        lines += [
            f'{new_on(name)} {pin(v)} counter name "{named[name][0]}"'
            for name, v in layout.marks
        ]
    else:
        lines += [
            f'{new_on(name)} {pin(v)} {tag(v)} counter name "{named[name][0]}"'
            for name, v in layout.marks
        ]
    lines.append("\t}")
    if not layout.lan:  # no LAN side: nothing leaves from local sockets or the LAN marked
        return lines + _sources(layout)
    lines += [
        "\tchain output {",
        "\t\ttype route hook output priority mangle; policy accept;",
    ]
    lines += restore
    lines += [
        "\t}",
        "\tchain postrouting {",
        "\t\ttype filter hook postrouting priority mangle; policy accept;",
    ]
    lines += [
        f"\t\tmeta nfproto ipv4 ct state new iifname {lan} oifname {quote(name)}"
        f" update @{pair_set(layout, name)} {{ ip saddr . ip daddr }}"
        for name, _ in (layout.marks if layout.host_pair else ())
    ]
    lines += [
        f"\t\tmeta nfproto ipv4 ct mark & {m} == 0x00000000 iifname {lan}"
        f" oifname {quote(name)} ct mark set ct mark & {k} | 0x{v:08x}"
        f' counter name "{named[name][0]}"'
        for name, v in layout.marks
    ]
    lines.append("\t}")
    if layout.masquerade:
        lines += [
            "\tchain nat {",
            "\t\ttype nat hook postrouting priority srcnat; policy accept;",
        ]
        lines += [
            f"\t\tmeta nfproto ipv4 iifname {lan} oifname {quote(name)} masquerade"
            for name, _ in layout.marks
        ]
        lines.append("\t}")
    return lines + _sources(layout)


def _sources(layout: GatewayLayout) -> list[str]:
    from multihome.core import sourcemarks  # (only where a layout has them)

    return sourcemarks.body(layout.sources) if layout.sources is not None else []


def shape(layout: GatewayLayout) -> dict[str, int]:
    """The table's chains with their number of rules, and its sets: what a re-apply compares
    with the live table (`nft -j list ruleset`), so that a rule or chain someone deleted or
    added is put right (the digest in the comment cannot see that)."""
    found: dict[str, int] = {}
    current = ""
    for line in _body(layout):
        text = line.strip()
        if text.startswith(("chain ", "set ")):
            current = text.split(" {")[0]
            found[current] = 0
        elif current.startswith("chain ") and text not in ("}",) and not text.startswith("type "):
            found[current] += 1
    return found


def live_shape(ruleset: Any) -> dict[str, int]:
    """The same, of multihome's table in a parsed `nft -j list ruleset`."""
    found: dict[str, int] = {}
    for item in ruleset.get("nftables", []) if isinstance(ruleset, dict) else []:
        if not isinstance(item, dict):
            continue
        for kind in ("chain", "set", "rule"):
            body = item.get(kind)
            if isinstance(body, dict) and body.get("table") == TABLE and body.get(
                "family"
            ) == FAMILY:
                if kind == "rule":
                    key = f"chain {body.get('chain')}"
                    found[key] = found.get(key, 0) + 1
                else:
                    found.setdefault(f"{kind} {body.get('name')}", 0)
    return found


def digest(layout: GatewayLayout) -> str:
    """A short fingerprint of the table's content, kept in the table's comment, so that a
    re-apply finds out without parsing nft's output whether the table is as planned."""
    import hashlib  # (only where a table is written or compared: show and plan need none)

    return hashlib.sha256("\n".join(_body(layout)).encode()).hexdigest()[:16]


def comment(layout: GatewayLayout) -> str:
    return f"managed by multihome {digest(layout)}"


def table_text(layout: GatewayLayout) -> str:
    """The table as nft(8) prints and reads it."""
    return "\n".join(
        [
            f"table {FAMILY} {TABLE} {{",
            f'\tcomment "{comment(layout)}"',
            *_body(layout),
            "}",
        ]
    )


def replace_script(layout: GatewayLayout | None) -> str:
    """`nft -f` input that replaces multihome's table whole in one transaction (or, with no
    layout, deletes it). The first line creates the table if it is missing, so that the
    delete always has something to delete; no other table is named."""
    lines = [f"table {FAMILY} {TABLE}", f"delete table {FAMILY} {TABLE}"]
    if layout is not None:
        lines.append(table_text(layout))
    return "\n".join(lines) + "\n"


# -- other software's marks ------------------------------------------------------------------


def nft_mark_users(ruleset: Any, mask: int) -> list[str]:
    """Tables of other software (in `nft -j list ruleset`) whose mark matches or mangles
    touch bits of `mask`, one line each naming the table and chain."""
    return firewall.read((), ruleset).mark_users(mask)


def rule_mark_users(rules: Iterable[Rule], mask: int, ownership: Ownership) -> list[str]:
    """fwmark rules of other software whose mark bits overlap `mask` (multihome's own are
    not: those it made, and those of the layout `multihome install` persisted, which the
    network stack brings back under its own protocol)."""
    found = []
    for rule in rules:
        if rule.fwmark is None or rule.protocol == ownership.protocol:
            continue
        if ownership.is_installed(rule):
            continue
        fwmask = ALL if rule.fwmask is None else rule.fwmask
        bits = rule.fwmark if fwmask == ALL else fwmask
        if bits & mask:
            found.append(f"rule `ip -{rule.family.version} rule {rule.ip_args()}`")
    return found


def overlaps(config: Config, rules: Iterable[Rule], found: firewall.Firewall) -> list[str]:
    """Who else uses the bits of multihome's mark mask (empty: nobody): fwmark rules, and
    iptables (nft and legacy) and native nft rules."""
    mask = config.mark_mask
    return rule_mark_users(rules, mask, config.ownership) + found.mark_users(mask)
