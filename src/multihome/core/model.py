"""The vocabulary of multihome: what the host has and what it should have.

Every other module speaks in these frozen records (records.py). A `Rule` or `Route` is the same
object whether it was read from the kernel, planned, diffed, written or printed, so the
comparison that decides what to change is also the one that reports drift.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Mapping
from functools import cached_property

from multihome import PROTOCOL
from multihome.core import addresses
from multihome.core.records import CachedHash, field, record, replace

# The address types, and making them from the kernel's integers: addresses.py's
IPAddress = addresses.IPAddress
IPNetwork = addresses.IPNetwork
IPInterface = addresses.IPInterface
address_of, interface_of = addresses.address_of, addresses.interface_of

# Route scopes and types, as in <linux/rtnetlink.h>.
SCOPE_UNIVERSE = 0
SCOPE_LINK = 253
RTN_UNICAST = 1

TABLE_MAIN = 254
RESERVED_TABLES = frozenset({0, 253, 254, 255})  # unspec, default, main, local
TABLE_NAMES = {253: "default", 254: "main", 255: "local"}  # as `ip` names them

# IPv6 gives a route without an explicit metric IP6_RT_PRIO_USER; IPv4 gives it 0. Planned
# routes carry the metric the kernel will report, so that planned and read routes compare equal.
DEFAULT_METRIC = {4: 0, 6: 1024}


def host_network_of(version: int, value: int) -> IPNetwork:
    """The host network of an address given as an integer (as netlink's codec reads it)."""
    return addresses.network_of(version, value, 32 if version == 4 else 128)


def network_from(raw: bytes, prefixlen: int) -> IPNetwork:
    """The network of packed address bytes (as netlink carries them) and a prefix length.
    Host bits are cleared: the kernel keeps a rule's source as given (`from 10.0.0.1/8`)
    and matches it as its network."""
    version = 4 if len(raw) == 4 else 6
    return addresses.network_of(version, int.from_bytes(raw, "big"), prefixlen)


def interface_order(version: int, value: int, prefixlen: int) -> tuple[int, int, int, int]:
    """A sort key that orders interface addresses as comparing the IPv4Interface or
    IPv6Interface objects does (by network, then netmask, then address) but compares plain
    integers: sorting 1,000 addresses by their objects costs more than reading them."""
    bits = 32 if version == 4 else 128
    mask = ((1 << prefixlen) - 1) << (bits - prefixlen)
    return version, value & mask, prefixlen, value


class Family(enum.IntEnum):
    """Address family, with the values netlink uses."""

    INET = 2
    INET6 = 10

    # Enum's own hash hashes the member's name in Python code; rules and routes hash their
    # family on every run. Equal to the int it equals, as a hash should be.
    __hash__ = int.__hash__

    @property
    def version(self) -> int:
        return 4 if self is Family.INET else 6

    @property
    def any(self) -> IPNetwork:
        """The default route's destination in this family (one object each: every uplink's
        default route asks)."""
        return _ANY4 if self is Family.INET else _ANY6

    @classmethod
    def of(cls, value: IPAddress | IPNetwork | IPInterface) -> Family:
        return cls.INET if value.version == 4 else cls.INET6


_ANY4, _ANY6 = ipaddress.IPv4Network((0, 0)), ipaddress.IPv6Network((0, 0))
FAMILIES = {2: Family.INET, 10: Family.INET6}  # netlink's family number -> Family, fast
_INET, _INET6 = Family.INET, Family.INET6


class _CachedHash(CachedHash):
    """A rule or route: its hash made once (records.CachedHash), and its `ip` text once."""

    __slots__ = ("_text",)
    _text: str  # ip_args(), made on first use: the state file lists every owned object

    def ip_args(self) -> str:
        """The object as `ip` arguments (without the add/del verb)."""
        text: str | None = getattr(self, "_text", None)
        if text is None:
            text = self._ip_args()
            object.__setattr__(self, "_text", text)
        return text

    def _ip_args(self) -> str:
        raise NotImplementedError


@record(frozen=True, order=True)
class Interface:
    """A network link as the kernel reports it."""

    index: int
    name: str
    up: bool = True  # administratively up and with carrier
    loopback: bool = False
    master: int | None = None  # ifindex of the bridge/bond this link is a port of
    kind: str = ""  # rtnetlink link kind: veth, bridge, vlan, ... ("" for physical NICs)


@record(frozen=True, slots=True)
class Counters:
    """An interface's traffic counters since it was created (as `ip -s link` shows them)."""

    rx_packets: int = 0
    tx_packets: int = 0
    rx_bytes: int = 0
    tx_bytes: int = 0

    def __sub__(self, earlier: Counters) -> Counters:
        return Counters(
            self.rx_packets - earlier.rx_packets,
            self.tx_packets - earlier.tx_packets,
            self.rx_bytes - earlier.rx_bytes,
            self.tx_bytes - earlier.tx_bytes,
        )


@record(frozen=True, slots=True, order=True)
class Address:
    """A global address on an interface, with its prefix (192.0.2.10/24)."""

    ifname: str
    ip: IPInterface

    @property
    def family(self) -> Family:
        return _INET if self.ip.version == 4 else _INET6  # Family.of, without two calls


@record(frozen=True, slots=True)
class NextHop:
    """One path of a multipath route."""

    dev: str | None
    gateway: IPAddress | None = None
    weight: int = 1


@record(frozen=True, slots=True)
class Route(_CachedHash):
    """A route in one table; the fields are the ones `ip route` shows."""

    family: Family
    table: int
    dst: IPNetwork
    dev: str | None = None
    gateway: IPAddress | None = None
    prefsrc: IPAddress | None = None
    scope: int = SCOPE_UNIVERSE
    protocol: int = 0
    metric: int = 0
    type: int = RTN_UNICAST
    nexthops: tuple[NextHop, ...] = ()
    source: IPNetwork | None = None  # IPv6 only: a source-specific route (`from P`)

    @property
    def is_default(self) -> bool:
        """Every destination, from every source: a source-specific default route is not."""
        return self.dst.prefixlen == 0 and self.source is None

    def devices(self) -> tuple[str, ...]:
        """The interfaces this route leaves through (several for a multipath route)."""
        if self.nexthops:
            return tuple(nh.dev for nh in self.nexthops if nh.dev)
        return (self.dev,) if self.dev else ()

    def gateways(self) -> tuple[tuple[str | None, IPAddress], ...]:
        """(device, gateway) of every path that has a gateway."""
        if self.nexthops:
            return tuple((nh.dev, nh.gateway) for nh in self.nexthops if nh.gateway)
        return ((self.dev, self.gateway),) if self.gateway else ()

    def _ip_args(self) -> str:
        """The route as `ip route` arguments (without the add/del verb)."""
        dst = "default" if self.dst.prefixlen == 0 else str(self.dst)
        parts = [dst]
        if self.source is not None:
            parts += ["from", str(self.source)]
        if self.gateway is not None:
            parts += ["via", str(self.gateway)]
        if self.dev:
            parts += ["dev", self.dev]
        parts += ["table", TABLE_NAMES.get(self.table, str(self.table))]
        parts += ["proto", str(self.protocol)]
        if self.scope == SCOPE_LINK:
            parts += ["scope", "link"]
        if self.prefsrc is not None:
            parts += ["src", str(self.prefsrc)]
        if self.metric:
            parts += ["metric", str(self.metric)]
        for hop in self.nexthops:  # `ip route` wants the nexthops last
            parts += ["nexthop", "via", str(hop.gateway), "dev", str(hop.dev)]
            parts += ["weight", str(hop.weight)]
        return " ".join(parts)


@record(frozen=True, slots=True)
class Rule(_CachedHash):
    """A policy routing rule that looks up a table (`ip rule`).

    Only rules of the form multihome writes are modelled in full; `other_selectors` marks a
    rule that also matches on something else (fwmark, iif, ...), so it is never confused with
    one of ours.
    """

    family: Family
    priority: int
    table: int
    src: IPNetwork | None = None
    suppress_prefixlen: int | None = None
    protocol: int = 0
    other_selectors: bool = False
    fwmark: int | None = None  # gateway mode: `fwmark M/MASK`, the mark of an uplink
    fwmask: int | None = None
    invert: bool = False  # `not`: the rule matches what its selectors do not

    def _ip_args(self) -> str:
        """The rule as `ip rule` arguments (without the add/del verb)."""
        parts = ["pref", str(self.priority), *(["not"] if self.invert else [])]
        parts += ["from", str(self.src) if self.src else "all"]
        if self.fwmark is not None:
            mask = f"/{self.fwmask:#x}" if self.fwmask not in (None, 0xFFFFFFFF) else ""
            parts += ["fwmark", f"{self.fwmark:#x}{mask}"]
        parts += ["lookup", TABLE_NAMES.get(self.table, str(self.table))]
        if self.suppress_prefixlen is not None:
            parts += ["suppress_prefixlength", str(self.suppress_prefixlen)]
        parts += ["proto", str(self.protocol)]
        return " ".join(parts)


def source_rule(
    family: Family, priority: int, table: int, value: int, suppress: int | None, protocol: int
) -> Rule:
    """`from ADDRESS lookup TABLE`, ADDRESS a host (/32 or /128) given as an integer."""
    src = host_network_of(family.version, value)
    return Rule(family, priority, table, src, suppress, protocol)


@record(frozen=True, slots=True, order=True)
class Sysctl:
    """A sysctl under /proc/sys, by path ("net/ipv4/conf/eth0/arp_ignore") and value, and
    the interface it belongs to (None for a namespace-wide one such as
    net/ipv4/fib_multipath_hash_policy)."""

    path: str
    value: str
    interface: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.interface is None:  # read once from the path: net/ipv{4,6}/conf/IFACE/KEY
            parts = self.path.split("/")
            conf = len(parts) == 5 and parts[0] == "net" and parts[2] == "conf"
            if conf and parts[3] not in ("all", "default"):
                object.__setattr__(self, "interface", parts[3])

    @property
    def name(self) -> str:
        """The dotted name `sysctl` takes; dots inside a component become slashes."""
        return ".".join(part.replace(".", "/") for part in self.path.split("/"))


def layout_key(obj: Rule | Route) -> str:
    """A rule or route as `multihome install` records what it persisted: its kind, family
    and `ip` arguments without the protocol (a stack gives the objects its own: networkd's
    rules and NetworkManager's rules and routes say `proto static`)."""
    kind = "rule" if isinstance(obj, Rule) else "route"
    return f"{kind} -{obj.family.version} " + replace(obj, protocol=0).ip_args()


@record(frozen=True)
class Ownership:
    """What marks an object as multihome's: its protocol number, table range, priority band;
    and what `multihome install` wrote into the host's network stack (`installed`: the
    layout_key of each object the stack brings back at every boot), which multihome
    recognises as its layout but leaves to that stack (the stack is its one owner)."""

    protocol: int = PROTOCOL
    table_min: int = 100
    table_max: int = 199
    priority: int = 1000  # band: priority .. priority + 3
    installed: frozenset[str] = frozenset()

    def is_installed(self, obj: Rule | Route) -> bool:
        """Is this one of the objects `multihome install` persisted (whatever its protocol)?"""
        if not self.installed:
            return False
        if isinstance(obj, Rule):  # only in multihome's band and range (a key costs a copy)
            if not self.priority <= obj.priority <= self.priority + 3:
                return False
        elif not self.may_hold(obj):
            return False
        return layout_key(obj) in self.installed

    @property
    def priorities(self) -> tuple[int, int, int, int]:
        """On-link source rules, main's specific routes, off-link source rules, balancing."""
        return (self.priority, self.priority + 1, self.priority + 2, self.priority + 3)

    @property
    def balance_table(self) -> int:
        """The table of the balancing route: the last of the range."""
        return self.table_max

    def owns_rule(self, rule: Rule) -> bool:
        # fwmark rules, always masked: gateway mode's and the nft form's mirror of rule 3
        # (beside the off-link source rules), the nft form's mirror of rule 1 (beside the
        # on-link ones, suppress_prefixlength 0)
        if rule.fwmark is not None and (
            rule.fwmask in (None, 0xFFFFFFFF)
            or rule.src is not None
            or not (
                (rule.priority == self.priorities[2] and rule.suppress_prefixlen is None)
                or (rule.priority == self.priorities[0] and rule.suppress_prefixlen == 0)
            )
        ):
            return False
        return (
            rule.protocol == self.protocol
            and not rule.other_selectors
            and self.priority <= rule.priority <= self.priority + 3  # in self.priorities
        )

    def may_hold(self, route: Route) -> bool:
        """Whether the route is where multihome puts its own: a table in its range, or main
        for a source-specific IPv6 route (the layout of an uplink alone on its prefixes,
        which needs no table)."""
        return self.table_min <= route.table <= self.table_max or (
            route.table == TABLE_MAIN and route.source is not None
        )

    def owns_route(self, route: Route) -> bool:
        return route.protocol == self.protocol and self.may_hold(route)

    def owned(self, state: HostState) -> tuple[list[Rule], list[Route]]:
        """The rules and routes in `state` that are multihome's."""
        return (
            [r for r in state.rules if self.owns_rule(r)],
            [r for r in state.routes if self.owns_route(r)],
        )


def distinct_networks(addresses: Iterable[Address]) -> list[tuple[Address, IPNetwork]]:
    """The first address of each distinct (interface, network) pair, in order, with its
    network: thousands of addresses fall into a few subnets. Pairs are told apart by plain
    integers (hashing a network object runs Python code; these are asked about every
    address of a host several times a plan)."""
    seen: set[tuple[str, int, int, int]] = set()
    found = []
    for address in addresses:
        network = address.ip.network
        prefixlen = network.prefixlen
        key = (
            address.ifname,
            network.version,
            int(address.ip) >> (network.max_prefixlen - prefixlen),
            prefixlen,
        )
        if key not in seen:
            seen.add(key)
            found.append((address, network))
    return found


@record(frozen=True)
class HostState:
    """Everything multihome reads from one network namespace."""

    interfaces: tuple[Interface, ...] = ()
    addresses: tuple[Address, ...] = ()
    routes: tuple[Route, ...] = ()
    rules: tuple[Rule, ...] = ()
    sysctls: Mapping[str, str] = field(default_factory=dict)  # path -> current value
    netns_id: int = 0  # inode of the network namespace
    # gateway mode, IPv6: the prefixes PD clients' records say each uplink was delegated
    # (host/pd.py reads them; discover leaves this empty)
    pd_records: tuple[tuple[str, IPNetwork], ...] = ()

    def interface(self, name: str) -> Interface | None:
        return next((i for i in self.interfaces if i.name == name), None)

    def addresses_of(self, ifname: str, family: Family | None = None) -> tuple[Address, ...]:
        found = self.addresses_by_interface.get(ifname, ())
        if family is None:
            return found
        return tuple(a for a in found if a.family == family)

    @cached_property
    def addresses_by_interface(self) -> dict[str, tuple[Address, ...]]:
        """The addresses by interface, indexed once per state: the planner asks for every
        uplink's addresses several times (a scan each time grows with uplinks x addresses)."""
        lists: dict[str, list[Address]] = {}
        for address in self.addresses:
            lists.setdefault(address.ifname, []).append(address)
        return {name: tuple(found) for name, found in lists.items()}


@record(frozen=True, slots=True)
class Lookup:
    """The kernel's route lookup for a reply from `src` to `dst` (`ip route get DST from SRC`)."""

    dst: IPAddress
    src: IPAddress
    dev: str | None = None
    gateway: IPAddress | None = None
    table: int | None = None
    error: str = ""
    iif: str | None = None  # a forwarded packet's lookup: the interface it came in on
    mark: int = 0  # ... and the mark it carries then

    def describe(self) -> str:
        head = f"ip route get {self.dst} from {self.src}"
        if self.iif is not None:
            head += f" iif {self.iif} mark {self.mark:#x}"
        if self.error:
            return f"{head}: {self.error}"
        via = f" via {self.gateway}" if self.gateway else ""
        table = TABLE_NAMES.get(self.table or 0, str(self.table))
        return f"{head} -> {self.dst}{via} dev {self.dev} table {table}"


class GatewaySource(enum.Enum):
    """Where an uplink's gateway came from; shown by `show` and `plan`."""

    CONFIG = "config"
    MAIN_DEFAULT = "default route in main"
    DHCP = "default route in main, learnt by DHCP"
    RA = "default route in main, learnt from router advertisements"
    SHARED_SUBNET = "gateway of another uplink on the same subnet"
    NONE = "none"


@record(frozen=True)
class Uplink:
    """An interface that gets its own routing table and source rules."""

    name: str
    table: int
    addresses: tuple[Address, ...]
    gateway4: IPAddress | None = None
    gateway6: IPAddress | None = None
    source4: GatewaySource = GatewaySource.NONE
    source6: GatewaySource = GatewaySource.NONE
    weight: int = 1
    # the prefixes its source rules select (both families), and why those: the planner's
    sources: tuple[IPNetwork, ...] = ()
    sources_why: str = ""
    # the nft sets that select it instead of rules (sourcemarks.py), where its addresses are
    # too many prefixes for rules: src4_N, src6_N
    source_sets: tuple[str, ...] = ()

    def gateway(self, family: Family) -> IPAddress | None:
        return self.gateway4 if family is Family.INET else self.gateway6

    def addresses_in(self, family: Family) -> tuple[Address, ...]:
        return self.addresses_by_family[0 if family == Family.INET else 1]

    def networks_in(self, family: Family) -> list[tuple[Address, IPNetwork]]:
        """distinct_networks() of its addresses in this family (the planner asks for each
        several times)."""
        return self.distinct_networks_by_family[0 if family == Family.INET else 1]

    @cached_property
    def distinct_networks_by_family(
        self,
    ) -> tuple[list[tuple[Address, IPNetwork]], list[tuple[Address, IPNetwork]]]:
        return (
            distinct_networks(self.addresses_in(Family.INET)),
            distinct_networks(self.addresses_in(Family.INET6)),
        )

    @cached_property
    def addresses_by_family(self) -> tuple[tuple[Address, ...], tuple[Address, ...]]:
        """The IPv4 and the IPv6 addresses, split once: the planner asks five times."""
        return (
            tuple(a for a in self.addresses if a.ip.version == 4),
            tuple(a for a in self.addresses if a.ip.version == 6),
        )


@record(frozen=True)
class SourceSet:
    """One uplink's source addresses in one family, selected by nftables instead of rules
    (sourcemarks.py): packets from them get the uplink's mark, and fwmark rules route them."""

    name: str  # in multihome's table: src4_N, src6_N (N: the uplink's mark id)
    uplink: str
    family: Family
    table: int
    mark: int  # inside the mark mask
    addresses: tuple[int, ...]  # sorted, as integers
    prefixes: int  # how many prefix rules would have selected them instead
    # its gateway is main's (not the config's): a packet main already routes by the uplink
    # keeps that route (sourcemarks.body)
    main_gateway: bool = True


@record(frozen=True)
class SourceMarks:
    """The nft form of source selection: one set per uplink and family (sourcemarks.py)."""

    mask: int
    sets: tuple[SourceSet, ...] = ()


@record(frozen=True)
class GatewayLayout:
    """Gateway mode: what multihome's nftables table does (gateway.py renders it)."""

    lan: tuple[str, ...]
    marks: tuple[tuple[str, int], ...]  # (uplink, its mark inside the mask)
    mask: int
    masquerade: bool = True
    flush_on_down: bool = True
    host_pair: bool = False  # sticky = "host-pair": a set per uplink remembers its pairs
    # host mode's inbound pinning: no LAN side; a forward-hook chain pins each new forwarded
    # connection from an uplink (a port forward) to it, local sockets keep the source rules
    pin_forwarded: bool = False
    sources: SourceMarks | None = None  # the nft form of source selection (sourcemarks.py)

    def mark_of(self, uplink: str) -> int | None:
        return next((m for name, m in self.marks if name == uplink), None)


@record(frozen=True)
class Delegation:
    """An IPv6 prefix an uplink's ISP delegated to the LAN (gateway mode), the LAN's on-link
    prefixes inside it (what the RA daemon announces), and how multihome knows its uplink."""

    uplink: str
    prefix: IPNetwork
    origin: str  # "config", or the evidence it was learnt from
    lan: tuple[tuple[str, IPNetwork], ...] = ()  # (LAN interface, its /64 inside `prefix`)


@record(frozen=True)
class NptMapping:
    """NPTv6 (RFC 6296) on one uplink: the LAN's `inside` prefix (a ULA one) leaves as
    `outside`, a prefix of the same length from the uplink's delegation, and back."""

    uplink: str
    inside: IPNetwork
    outside: IPNetwork


@record(frozen=True)
class Desired:
    """What the kernel should hold, as far as multihome owns it."""

    ownership: Ownership
    uplinks: tuple[Uplink, ...] = ()
    rules: tuple[Rule, ...] = ()
    routes: tuple[Route, ...] = ()
    sysctls: tuple[Sysctl, ...] = ()
    notes: tuple[str, ...] = ()  # why something was left out, for the user
    gateway: GatewayLayout | None = None  # gateway mode: multihome's nftables table
    delegations: tuple[Delegation, ...] = ()  # gateway mode, IPv6: the LAN's prefixes by uplink
    npt: tuple[NptMapping, ...] = ()  # gateway mode, IPv6: NPTv6 per uplink (kernel/npt.py)
    pinning: tuple[str, ...] = ()  # why inbound pinning is on ("eth0, eth1: DNAT to docker0...")


class Action(enum.Enum):
    ADD = "add"
    DELETE = "del"
    SET = "set"


@record(frozen=True)
class Change:
    """One step that brings the kernel closer to the plan; `inverse()` undoes it."""

    action: Action
    obj: Rule | Route | Sysctl
    previous: str | None = None  # for SET: the value before

    def inverse(self) -> Change:
        if self.action is Action.ADD:
            return Change(Action.DELETE, self.obj)
        if self.action is Action.DELETE:
            return Change(Action.ADD, self.obj)
        assert isinstance(self.obj, Sysctl) and self.previous is not None
        return Change(Action.SET, Sysctl(self.obj.path, self.previous), self.obj.value)

    def describe(self) -> str:
        """One line in the words of `ip`/`sysctl`, prefixed + (add), - (delete) or ~ (set)."""
        if isinstance(self.obj, Sysctl):
            return f"~ sysctl {self.obj.name}: {self.previous} -> {self.obj.value}"
        sign = "+" if self.action is Action.ADD else "-"
        kind = "rule" if isinstance(self.obj, Rule) else "route"
        return f"{sign} {kind} -{self.obj.family.version} {self.obj.ip_args()}"
