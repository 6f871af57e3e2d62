"""PURE: validate the config file's text (TOML) into a `Config`; the caller reads the file
(host/configfile.py, with its trust checks).

Everything that can be checked without the host is checked here, and every error names the
file, line and key. Checks that need the host (does the interface exist, is the gateway on
its subnet, is the table free) happen in the planner, with the same locations.
"""

from __future__ import annotations

import enum
import ipaddress
import re

from multihome import CONFIG_PATH
from multihome.core import names
from multihome.core.model import RESERVED_TABLES, IPAddress, IPNetwork, Ownership
from multihome.core.records import field, record
from multihome.errors import ConfigError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

DEFAULT_PATH = CONFIG_PATH
MAX_TABLE = 2**32 - 1
MAX_PRIORITY = 32765 - 3  # the band's four priorities stay below main's rule (32766)
LOOPBACK = "lo"  # the kernel's loopback device, which no config may name as an uplink


class RpFilter(enum.Enum):
    """What to do with reverse-path filtering on uplinks."""

    KEEP = "keep"  # leave it as it is (strict filtering works with multihome's rules)
    LOOSE = "loose"  # set rp_filter=2 on the uplinks (only when asked: it weakens spoof checks)


@record(frozen=True)
class UplinkConfig:
    name: str
    gateway4: IPAddress | None = None
    gateway6: IPAddress | None = None
    table: int | None = None
    weight: int = 1
    ipv4: bool = True
    ipv6: bool = True
    probe: tuple[IPAddress, ...] = ()  # health-check targets; none: the gateway
    probe6: tuple[IPAddress, ...] = ()  # IPv6 health-check targets; none: the IPv6 gateway
    reliability: int | None = None  # targets that must answer; None: a majority of them
    # IPv6 prefixes this uplink's ISP delegated to the LAN (gateway mode): traffic from them
    # leaves by this uplink (core/delegation.py)
    delegated: tuple[IPNetwork, ...] = ()


@record(frozen=True)
class Health:
    """multihome watch's health checks, in two classes per uplink and IP version: fast echo
    probes to the gateway (a dead link or gateway in under 1 s), and slower ones past it (the
    second hop, found with a TTL-limited probe toward `trace`, or the uplink's configured
    targets with a quorum). configkeys.py explains the defaults: with random probe loss p,
    the expected false downs in D seconds are D * r * (1 - p) * p**k per class."""

    interval: float = 0.1
    timeout: float = 0.15
    down_after: int = 6
    up_after: int = 5
    path_interval: float = 0.25
    path_timeout: float = 0.5
    path_down_after: int = 6
    path_up_after: int = 2
    second_hop: bool = True
    trace: IPAddress = ipaddress.IPv4Address("1.1.1.1")
    trace6: IPAddress = ipaddress.IPv6Address("2606:4700:4700::1111")


class Sticky(enum.Enum):
    """How a forwarded connection keeps its uplink (gateway mode)."""

    FLOW = "flow"  # each connection keeps its uplink (layer-4 hash for new ones)
    HOST_PAIR = "host-pair"  # one inner host and one remote host always share an uplink


DEFAULT_MARK_MASK = 0x0F000000


@record(frozen=True)
class GatewayConfig:
    """[gateway]: route forwarded traffic from the LAN interfaces over the uplinks."""

    lan: tuple[str, ...]
    masquerade: bool = True
    sticky: Sticky = Sticky.FLOW
    flush_on_down: bool = True
    # RFC 8475: the RA daemon that announces the LAN's delegated prefixes ("": none), the
    # directory of its drop-ins where multihome deprecates a dead uplink's prefixes, and
    # the command that makes it read them (host/ra.py)
    ra_daemon: str = ""
    ra_conf_dir: str = "/etc/dnsmasq.d"
    ra_restart: tuple[str, ...] = ("systemctl", "restart", "dnsmasq.service")
    ra_config: str = "/etc/radvd.conf"  # radvd's configuration file
    # where dhcpcd keeps its DHCPv6 leases (IFNAME.lease6): which uplink delegated a prefix
    pd_lease_dir: str = "/var/lib/dhcpcd"
    # NPTv6: the LAN's inside prefixes (ULA), each mapped to every uplink's delegation
    npt: tuple[IPNetwork, ...] = ()


@record(frozen=True)
class Config:
    path: str = "(defaults)"
    ownership: Ownership = field(default_factory=Ownership)
    ipv4: bool = True
    ipv6: bool = True
    manage_arp: bool = True
    rp_filter: RpFilter = RpFilter.KEEP
    uplinks: tuple[UplinkConfig, ...] = ()  # empty: detect the uplinks
    balance: bool = False  # outbound balancing: a weighted multipath default route
    health: Health = field(default_factory=Health)
    gateway: GatewayConfig | None = None  # gateway mode (forwarded traffic), when configured
    lines: dict[str, int] = field(default_factory=dict, compare=False, hash=False)
    # the packet-mark bits multihome may use, for gateway mode and inbound pinning alike:
    # [multihome] mark_mask, or (as before it existed) [gateway] mark_mask
    mark_mask: int = DEFAULT_MARK_MASK
    # host mode: pin inbound forwarded connections (port forwards to local bridges) to the
    # uplink they arrived on
    pin_inbound: bool = True
    # IPv6 uplinks alone on their prefixes: routes from the prefixes in main, not a table
    ipv6_source_routes: bool = True

    def error(self, message: str, key: str, hint: str = "") -> ConfigError:
        """An error located at `key` ("uplinks.eth0.gateway") of this file."""
        return ConfigError(
            message, path=self.path, line=line_of(self.lines, key), key=key, hint=hint
        )


_SECTIONS: dict[str, set[str]] = {
    "multihome": {
        "table_range",
        "priority",
        "ipv4",
        "ipv6",
        "balance",
        "ipv6_source_routes",
        "mark_mask",
        "pin_inbound",
    },
    "sysctls": {"arp", "rp_filter"},
    "health": {
        "interval",
        "timeout",
        "down_after",
        "up_after",
        "path_interval",
        "path_timeout",
        "path_down_after",
        "path_up_after",
        "second_hop",
        "trace",
        "trace6",
    },
    "gateway": {
        "lan",
        "masquerade",
        "sticky",
        "mark_mask",
        "flush_on_down",
        "ra_daemon",
        "ra_conf_dir",
        "ra_restart",
        "ra_config",
        "npt",
        "pd_lease_dir",
    },
}
_UPLINK_KEYS = {
    "gateway",
    "gateway6",
    "table",
    "weight",
    "ipv4",
    "ipv6",
    "probe",
    "probe6",
    "reliability",
    "delegated",
}


def _split_dotted(text: str) -> list[str]:
    """Split a TOML dotted key (`uplinks."eth0.100"`) into its parts."""
    pattern = r"\"((?:[^\"\\]|\\.)*)\"|'([^']*)'|([^.\s\"']+)"
    return [_unescape(dq) or sq or bare for dq, sq, bare in re.findall(pattern, text)]


def _unescape(basic: str) -> str:
    """A TOML basic string's escapes (\\uXXXX, \\", ...), as tomllib reads the key, so its
    line is found; JSON's escapes are TOML's but \\UXXXXXXXX and \\e, kept as written."""
    import json  # only for a quoted key with an escape

    if "\\" not in basic:
        return basic
    try:
        return str(json.loads(f'"{basic}"'))
    except ValueError:
        return basic


def key_lines(text: str) -> dict[str, int]:
    """Map each dotted key ("uplinks.eth0.gateway") and table to the line it is on."""
    lines: dict[str, int] = {}
    section: list[str] = []
    # TOML ends lines at \n only; str.splitlines() would also split at \x85 and friends
    # inside strings, and every later line number would be off.
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.split("#", 1)[0].strip()
        header = re.match(r"^\[\s*([^\[\]]+?)\s*\]$", stripped)
        if header:
            section = _split_dotted(header.group(1))
            lines.setdefault(".".join(section), number)
            continue
        assignment = re.match(r"^([A-Za-z0-9_\-\"'. ]+?)\s*=", stripped)
        if assignment:
            dotted = ".".join([*section, *_split_dotted(assignment.group(1))])
            lines.setdefault(dotted, number)
    return lines


def line_of(lines: dict[str, int], key: str) -> int | None:
    """The line of a key; for a table named only by its subkeys (`[uplinks.eth0]` for
    `uplinks`), its first line; else the line of the enclosing table."""
    if key in lines:
        return lines[key]
    below = [line for k, line in lines.items() if k.startswith(key + ".")]
    if below:
        return min(below)
    return lines.get(key.rsplit(".", 1)[0]) if "." in key else None


def _unknown(key: str, known: set[str], where: str) -> str:
    import difflib  # only for a mistake in the config

    close = difflib.get_close_matches(key, sorted(known), n=1)
    suggestion = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown key '{key}' in [{where}]{suggestion}; known: {', '.join(sorted(known))}"


class _Reader:
    """Typed access to the parsed TOML with located errors."""

    def __init__(self, path: str, lines: dict[str, int]) -> None:
        self.path = path
        self.lines = lines

    def fail(self, message: str, key: str, hint: str = "") -> ConfigError:
        return ConfigError(
            message, path=self.path, line=line_of(self.lines, key), key=key, hint=hint
        )

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(f"must be true or false, not {value!r}", key)
        return value

    def integer(self, value: Any, key: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"must be a whole number, not {value!r}", key)
        if not low <= value <= high:
            raise self.fail(f"{value} is out of range ({low}-{high})", key)
        return value

    def seconds(self, value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"must be a number of seconds, not {value!r}", key)
        if not 0.05 <= value <= 3600:
            raise self.fail(f"{value} is out of range (0.05-3600 seconds)", key)
        return float(value)

    def table(self, value: Any, key: str) -> int:
        table = self.integer(value, key, 1, MAX_TABLE)
        if table in RESERVED_TABLES:
            raise self.fail(
                f"table {table} is reserved by the kernel (253 default, 254 main, 255 local)",
                key,
                hint="pick an unused table id, e.g. in 100-199",
            )
        return table

    def address_list(self, value: Any, key: str, version: int = 4) -> list[Any]:
        if not isinstance(value, list) or len(value) > 8:
            raise self.fail(f"must be a list of up to 8 IPv{version} addresses", key)
        return value

    def address(self, value: Any, key: str, version: int) -> IPAddress:
        try:
            address = ipaddress.ip_address(value) if isinstance(value, str) else None
        except ValueError:
            address = None
        if address is None or address.version != version:
            raise self.fail(f"{value!r} is not an IPv{version} address", key)
        what = "a gateway" if key.rpartition(".")[2].startswith("gateway") else "a probe target"
        if address.is_multicast or address.is_unspecified or address.is_loopback:
            raise self.fail(f"{address} cannot be {what}", key)
        if address.version == 4 and address.is_reserved:  # 240.0.0.0/4, 255.255.255.255
            raise self.fail(f"{address} cannot be {what} (a reserved or broadcast address)", key)
        return address

    def delegated(self, value: Any, key: str) -> tuple[IPNetwork, ...]:
        """A list of up to 8 IPv6 prefixes of /64 or wider, written without host bits."""
        if not isinstance(value, list) or len(value) > 8:
            raise self.fail("must be a list of up to 8 IPv6 prefixes", key)
        found = []
        for item in value:
            try:
                network = ipaddress.ip_network(item) if isinstance(item, str) else None
            except ValueError:
                network = None  # host bits set, or not a prefix
            if network is None or network.version != 6:
                raise self.fail(
                    f"{item!r} is not an IPv6 prefix", key, hint='e.g. "2001:db8:a::/48"'
                )
            if not 1 <= network.prefixlen <= 64 or network.is_link_local or network.is_multicast:
                raise self.fail(
                    f"{network} cannot be a delegated prefix (a /64 or wider, global or ULA)",
                    key,
                )
            found.append(network)
        return tuple(found)


def parse(text: str, path: str = "(string)") -> Config:
    """Parse and validate config text; raises ConfigError naming file, line and key."""
    import tomllib  # only where a config file exists

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        match = re.search(r"line (\d+)", str(error))
        line = int(match.group(1)) if match else None
        raise ConfigError(f"not valid TOML: {error}", path=path, line=line) from None
    except RecursionError:  # tomllib parses nested arrays and tables by recursion
        raise ConfigError(
            "arrays or tables nested too deeply to be a multihome config", path=path
        ) from None
    lines = key_lines(text)
    read = _Reader(path, lines)
    known = {*_SECTIONS, "uplinks"}
    for section in data:
        if section not in known:
            raise read.fail(_unknown(section, known, "top level"), section)
    for section, keys in _SECTIONS.items():
        body = data.get(section, {})
        if not isinstance(body, dict):
            raise read.fail("must be a table ([" + section + "])", section)
        for key in body:
            if key not in keys:
                raise read.fail(_unknown(key, keys, section), f"{section}.{key}")

    main = data.get("multihome", {})
    ownership = Ownership()
    if "table_range" in main:
        key = "multihome.table_range"
        value = main["table_range"]
        if not (isinstance(value, list) and len(value) == 2):
            raise read.fail("must be a list of two table ids, e.g. [100, 199]", key)
        low, high = (read.table(v, key) for v in value)
        if low > high:
            raise read.fail(f"the range is empty ({low} > {high})", key)
        if low < 253 <= high:
            raise read.fail("the range includes the kernel's tables 253-255", key)
        ownership = Ownership(ownership.protocol, low, high, ownership.priority)
    if "priority" in main:
        priority = read.integer(main["priority"], "multihome.priority", 1, MAX_PRIORITY)
        ownership = Ownership(
            ownership.protocol, ownership.table_min, ownership.table_max, priority
        )
    ipv4 = read.boolean(main.get("ipv4", True), "multihome.ipv4")
    ipv6 = read.boolean(main.get("ipv6", True), "multihome.ipv6")
    balance = read.boolean(main.get("balance", False), "multihome.balance")
    pin_inbound = read.boolean(main.get("pin_inbound", True), "multihome.pin_inbound")
    source_routes = read.boolean(
        main.get("ipv6_source_routes", True), "multihome.ipv6_source_routes"
    )
    health = _health(read, data.get("health", {}))

    sysctls = data.get("sysctls", {})
    manage_arp = read.boolean(sysctls.get("arp", True), "sysctls.arp")
    rp_value = sysctls.get("rp_filter", RpFilter.KEEP.value)
    try:
        rp_filter = RpFilter(rp_value)
    except ValueError:
        raise read.fail(
            f"must be 'keep' or 'loose', not {rp_value!r}", "sysctls.rp_filter"
        ) from None

    uplinks: list[UplinkConfig] = []
    uplink_tables = data.get("uplinks", {})
    if not isinstance(uplink_tables, dict):
        raise read.fail("must be tables, one per interface: [uplinks.eth0]", "uplinks")
    seen_tables: dict[int, str] = {}
    for name, body in uplink_tables.items():
        prefix = f"uplinks.{name}"
        why = names.problem(name)
        if why is not None:  # the key shown as repr: it may hold what would forge a line
            raise ConfigError(
                f"{name!r} is not a valid interface name: it {why}",
                path=path,
                line=line_of(lines, prefix),
                key=f"uplinks.{name!r}",
            )
        if not isinstance(body, dict):
            raise read.fail("must be a table: [uplinks." + name + "]", prefix)
        if name == LOOPBACK:  # no gateway behind it: its rules would steer nothing
            raise read.fail(
                f"{name} is the loopback interface: it leads to no gateway, so it cannot be"
                " an uplink",
                prefix,
                hint=f"remove [uplinks.{name}]; name the interfaces that lead to a gateway",
            )
        for key in body:
            if key not in _UPLINK_KEYS:
                raise read.fail(_unknown(key, _UPLINK_KEYS, prefix), f"{prefix}.{key}")
        table = None
        if "table" in body:
            table = read.table(body["table"], f"{prefix}.table")
            if not ownership.table_min <= table <= ownership.table_max:
                raise read.fail(
                    f"table {table} is outside multihome's table range "
                    f"{ownership.table_min}-{ownership.table_max}",
                    f"{prefix}.table",
                    hint="widen [multihome] table_range or pick a table inside it",
                )
            if table in seen_tables:
                raise read.fail(
                    f"table {table} is already used by uplink {seen_tables[table]}",
                    f"{prefix}.table",
                )
            seen_tables[table] = name
        uplinks.append(
            UplinkConfig(
                name=name,
                gateway4=read.address(body["gateway"], f"{prefix}.gateway", 4)
                if "gateway" in body
                else None,
                gateway6=read.address(body["gateway6"], f"{prefix}.gateway6", 6)
                if "gateway6" in body
                else None,
                table=table,
                weight=read.integer(body.get("weight", 1), f"{prefix}.weight", 1, 256),
                ipv4=read.boolean(body.get("ipv4", True), f"{prefix}.ipv4"),
                ipv6=read.boolean(body.get("ipv6", True), f"{prefix}.ipv6"),
                probe=tuple(
                    read.address(v, f"{prefix}.probe", 4)
                    for v in read.address_list(body.get("probe", []), f"{prefix}.probe")
                ),
                probe6=tuple(
                    read.address(v, f"{prefix}.probe6", 6)
                    for v in read.address_list(body.get("probe6", []), f"{prefix}.probe6", 6)
                ),
                reliability=read.integer(body["reliability"], f"{prefix}.reliability", 1, 8)
                if "reliability" in body
                else None,
                delegated=read.delegated(body.get("delegated", []), f"{prefix}.delegated"),
            )
        )
        _check_reliability(read, uplinks[-1], prefix)
        _check_delegated(read, uplinks, prefix)
    if balance and ownership.table_max in seen_tables:
        raise read.fail(
            f"table {ownership.table_max} is the balancing table (the range's last)",
            f"uplinks.{seen_tables[ownership.table_max]}.table",
        )
    gateway = _gateway(read, data["gateway"], uplinks) if "gateway" in data else None
    mark_mask = _mark_mask(read, main, data.get("gateway"), uplinks)
    if gateway is not None and ownership.table_max in seen_tables:
        raise read.fail(
            f"table {ownership.table_max} is the balancing table (the range's last), which"
            " gateway mode uses",
            f"uplinks.{seen_tables[ownership.table_max]}.table",
        )
    return Config(
        path,
        ownership,
        ipv4,
        ipv6,
        manage_arp,
        rp_filter,
        tuple(uplinks),
        balance,
        health,
        gateway,
        lines,
        mark_mask,
        pin_inbound,
        source_routes,
    )


def _check_reliability(read: _Reader, uplink: UplinkConfig, prefix: str) -> None:
    """A quorum of no more answers than there are targets (without targets it is unused)."""
    most = max(len(uplink.probe), len(uplink.probe6))
    if uplink.reliability is not None and most and uplink.reliability > most:
        raise read.fail(
            f"{uplink.reliability} targets must answer, but the uplink has {most}",
            f"{prefix}.reliability",
            hint="list the targets in probe = [...] (and probe6), or lower reliability",
        )


def _check_delegated(read: _Reader, uplinks: list[UplinkConfig], prefix: str) -> None:
    """A delegated prefix belongs to one uplink: it may not overlap another's (or its own)."""
    last = uplinks[-1]
    for index, network in enumerate(last.delegated):
        for other in uplinks:
            theirs = other.delegated[:index] if other is last else other.delegated
            clash = next((n for n in theirs if n.overlaps(network)), None)
            if clash is not None:
                whose = "" if other is last else f" of uplink {other.name}"
                raise read.fail(
                    f"{network} overlaps {clash}{whose}: a delegated prefix leaves by one"
                    " uplink",
                    f"{prefix}.delegated",
                )


def _health(read: _Reader, body: dict[str, Any]) -> Health:
    """The [health] section."""
    default = Health()

    def seconds(key: str) -> float:
        return read.seconds(body.get(key, getattr(default, key)), f"health.{key}")

    def rounds(key: str) -> int:
        return read.integer(body.get(key, getattr(default, key)), f"health.{key}", 1, 100)

    return Health(
        interval=seconds("interval"),
        timeout=seconds("timeout"),
        down_after=rounds("down_after"),
        up_after=rounds("up_after"),
        path_interval=seconds("path_interval"),
        path_timeout=seconds("path_timeout"),
        path_down_after=rounds("path_down_after"),
        path_up_after=rounds("path_up_after"),
        second_hop=read.boolean(body.get("second_hop", True), "health.second_hop"),
        trace=read.address(body["trace"], "health.trace", 4) if "trace" in body else default.trace,
        trace6=read.address(body["trace6"], "health.trace6", 6)
        if "trace6" in body
        else default.trace6,
    )


def _gateway(read: _Reader, body: dict[str, Any], uplinks: list[UplinkConfig]) -> GatewayConfig:
    """The [gateway] section (its mark_mask is read with [multihome]'s, by _mark_mask)."""
    lan = body.get("lan", [])  # none: an error when planning (gateway mode needs a LAN)
    if not isinstance(lan, list) or not all(isinstance(n, str) for n in lan):
        raise read.fail(
            f'must be a list of interface names, e.g. ["lan0"], not {lan!r}',
            "gateway.lan",
            hint="name the interfaces (or bridges: br-lan, docker0) whose forwarded traffic"
            " multihome routes",
        )
    for name in lan:
        why = names.problem(name)
        if why is not None:
            raise read.fail(f"{name!r} is not a valid interface name: it {why}", "gateway.lan")
    if len(set(lan)) != len(lan):
        raise read.fail("names an interface twice", "gateway.lan")
    for name in lan:
        if any(u.name == name for u in uplinks):
            raise read.fail(
                f"{name} is an uplink ([uplinks.{name}]); a LAN interface cannot be one",
                "gateway.lan",
            )
    sticky_value = body.get("sticky", Sticky.FLOW.value)
    try:
        sticky = Sticky(sticky_value)
    except ValueError:
        import difflib  # only for a mistake in the config

        close = difflib.get_close_matches(str(sticky_value), [s.value for s in Sticky], n=1)
        suggestion = f" (did you mean '{close[0]}'?)" if close else ""
        raise read.fail(
            f"must be 'flow' or 'host-pair', not {sticky_value!r}{suggestion}", "gateway.sticky"
        ) from None
    return GatewayConfig(
        lan=tuple(lan),
        masquerade=read.boolean(body.get("masquerade", True), "gateway.masquerade"),
        sticky=sticky,
        flush_on_down=read.boolean(body.get("flush_on_down", True), "gateway.flush_on_down"),
        **_ra(read, body),
        npt=read.delegated(body.get("npt", []), "gateway.npt"),
    )


# the command that makes each daemon read its configuration again, by default
RA_RESTART = {
    "": (),
    "dnsmasq": ("systemctl", "restart", "dnsmasq.service"),  # no reload of dhcp-range
    "radvd": ("systemctl", "reload", "radvd.service"),  # SIGHUP
}
RA_DAEMONS = tuple(RA_RESTART)


def _ra(read: _Reader, body: dict[str, Any]) -> dict[str, Any]:
    """[gateway]'s RA daemon keys, for GatewayConfig."""
    default = GatewayConfig(lan=())
    daemon = body.get("ra_daemon", default.ra_daemon)
    if daemon not in RA_DAEMONS:
        raise read.fail(
            f"must be \"dnsmasq\", \"radvd\" or \"\" (none), not {daemon!r}",
            "gateway.ra_daemon",
        )
    directory = body.get("ra_conf_dir", default.ra_conf_dir)
    if not isinstance(directory, str) or not directory.startswith("/") or "\0" in directory:
        raise read.fail(f"must be an absolute path, not {directory!r}", "gateway.ra_conf_dir")
    restart = body.get("ra_restart", list(RA_RESTART[daemon]) or list(default.ra_restart))
    if (
        not isinstance(restart, list)
        or not restart
        or not all(isinstance(a, str) and a and "\0" not in a for a in restart)
    ):
        raise read.fail(
            "must be a command as a list of its words",
            "gateway.ra_restart",
            hint='e.g. ["systemctl", "restart", "dnsmasq.service"]',
        )
    config = body.get("ra_config", default.ra_config)
    if not isinstance(config, str) or not config.startswith("/") or "\0" in config:
        raise read.fail(f"must be an absolute path, not {config!r}", "gateway.ra_config")
    leases = body.get("pd_lease_dir", default.pd_lease_dir)
    if not isinstance(leases, str) or not leases.startswith("/") or "\0" in leases:
        raise read.fail(f"must be an absolute path, not {leases!r}", "gateway.pd_lease_dir")
    return {
        "ra_daemon": daemon,
        "ra_conf_dir": directory,
        "ra_restart": tuple(restart),
        "ra_config": config,
        "pd_lease_dir": leases,
    }


def _mark_mask(
    read: _Reader,
    main: dict[str, Any],
    gateway: dict[str, Any] | None,
    uplinks: list[UplinkConfig],
) -> int:
    """The mark band: [multihome] mark_mask, or [gateway] mark_mask where only that is set
    (its place before the band served more than gateway mode); both set must agree."""
    values = {
        key: read.integer(body["mark_mask"], key, 1, 2**32 - 1)
        for key, body in (("multihome.mark_mask", main), ("gateway.mark_mask", gateway or {}))
        if "mark_mask" in body
    }
    gateway_mode = gateway is not None
    if len(set(values.values())) > 1:
        raise read.fail(
            f"0x{values['multihome.mark_mask']:08X} differs from [gateway] mark_mask"
            f" 0x{values['gateway.mark_mask']:08X}"
            f" (line {line_of(read.lines, 'gateway.mark_mask')})",
            "multihome.mark_mask",
            hint="set the mask once, in [multihome] mark_mask",
        )
    key, mask = next(iter(values.items()), ("multihome.mark_mask", DEFAULT_MARK_MASK))
    # gateway mode marks every configured uplink; host mode's pinning leaves out (with a
    # note) an uplink whose id does not fit
    needed = max(2, len(uplinks)) if gateway_mode else 2
    if _mark_ids(mask) < needed:
        raise read.fail(
            f"0x{mask:08X} leaves room for {_mark_ids(mask)} uplink ids; at least"
            f" {needed} are needed",
            key,
            hint="use a mask of 4 contiguous bits or more, e.g. 0x0F000000",
        )
    return mask


def _mark_ids(mask: int) -> int:
    """How many uplink ids (1..n) fit in the contiguous bits of `mask` (0: not contiguous)."""
    low = mask & -mask
    shifted = mask // low
    if shifted & (shifted + 1):
        return 0
    return shifted
