"""PURE: every key of the config file, its default and its meaning, in one table.

The commented example config (examples/multihome.toml, installed as
/etc/multihome/multihome.toml by the Debian package) and the multihome.toml(5) man page are
rendered from this table; the unit tests check the table against config.py's list of known
keys and its defaults, so the documentation cannot drift from the loader.
"""

from __future__ import annotations

from multihome.core.records import record


@record(frozen=True)
class Key:
    section: str  # "multihome", "health", "sysctls", or "uplinks.NAME"
    name: str
    default: str | None  # the default as a TOML value; None: computed (`default_text` says how)
    meaning: str
    example: str  # a TOML value, as the example config shows it
    default_text: str = ""

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.name}"


UPLINK_SECTION = "uplinks.NAME"
OPT_IN = ("gateway",)  # sections whose presence turns a mode on

SECTIONS: tuple[tuple[str, str], ...] = (
    ("multihome", "What multihome owns and what it does."),
    (
        "health",
        "multihome watch's health checks (ICMP probes from each uplink's address): fast ones "
        "to the gateway, slower ones past it.",
    ),
    ("sysctls", "The sysctls multihome sets on the uplinks (and puts back on remove)."),
    (
        "gateway",
        "Gateway mode: route the forwarded traffic of LAN interfaces over the uplinks, each "
        "connection sticky to one uplink (fwmark rules, a multipath route and multihome's "
        "own nftables table, inet multihome).",
    ),
    (
        UPLINK_SECTION,
        "One table per uplink, named by its interface ([uplinks.eth0]). Without any, the "
        "uplinks are detected (interfaces with a default route in main, and those sharing an "
        "IPv4 subnet with one); with them, only those are managed.",
    ),
)

KEYS: tuple[Key, ...] = (
    Key(
        "multihome",
        "table_range",
        "[100, 199]",
        "The routing tables multihome may use, first and last; with balance = true the last "
        "one holds the balancing route. Must not include the kernel's tables 253-255.",
        "[100, 199]",
    ),
    Key(
        "multihome",
        "priority",
        "1000",
        "The first of its rule priorities: the source rules for on-link replies on a shared"
        " subnet (1000), main's specific routes (1001), the source rules (1002) and balancing"
        " (1003).",
        "1000",
    ),
    Key("multihome", "ipv4", "true", "Manage IPv4 routing.", "true"),
    Key("multihome", "ipv6", "true", "Manage IPv6 routing.", "true"),
    Key(
        "multihome",
        "balance",
        "false",
        "multihome watch: spread new outgoing connections over the healthy uplinks by "
        "weight (a weighted multipath default route in the last table, rule priority + 3).",
        "false",
    ),
    Key(
        "multihome",
        "ipv6_source_routes",
        "true",
        "An IPv6 uplink alone on its prefixes gets a route from each prefix in main (`default"
        " from P via G`) and one rule, instead of a table and rules: cheaper per packet. The"
        " kernel needs IPV6_SUBTREES (Debian's, Ubuntu's and RHEL's have it); false: a table"
        " per uplink for IPv6 too, as for IPv4 (a kernel without it refuses the route and"
        " apply says to set this).",
        "true",
    ),
    Key(
        "multihome",
        "mark_mask",
        "0x0F000000",
        "The packet-mark bits multihome may use, in conntrack and on packets (uplink ids "
        "1-15 in the default), for gateway mode and for inbound pinning. Gateway mode "
        "refuses to apply when other software uses them (an iptables or nft MARK/CONNMARK "
        "rule, an fwmark rule), naming it; host mode leaves pinning out with a note. "
        "Kubernetes uses 0x4000 and 0x8000, Calico 0xFFFF0000, Tailscale 0x00FF0000.",
        "0x0F000000",
    ),
    Key(
        "multihome",
        "pin_inbound",
        "true",
        "On a host that forwards and has destination NAT to a local interface that is not "
        "an uplink (Docker, Podman, libvirt, kube-proxy NodePorts, a port forward), pin each "
        "new inbound forwarded connection to the uplink it arrived on (a conntrack mark in "
        "multihome's nftables table, inet multihome) and route its replies by that mark, so "
        "published ports answer through every uplink. false: leave forwarded traffic to "
        "main's routes.",
        "true",
    ),
    Key(
        "health",
        "interval",
        "0.1",
        "Seconds between probe rounds to each uplink's gateway (on average: each interval is "
        "drawn from +-5 %, from a random phase, so that many hosts' probes do not "
        "synchronise). The rule: with random, independent probe loss p, an uplink goes down "
        "falsely D * r * (1 - p) * p^k times in D seconds (r rounds a second, k = "
        "down_after), and a dead gateway is found between (k - 1) / r and k / r plus the "
        "timeout. The defaults (r = 10, k = 6, timeout 0.15 s): 0.65-0.75 s to find a dead "
        "gateway; 0.38 false downs per uplink and IP version in 30 days at 5 % loss, 23 at "
        "10 % (there raise down_after: 8 gives 0.23). Probe traffic: 10 echo requests a "
        "second to the gateway and 4 past it, per uplink and IP version (about 1 kB/s).",
        "0.1",
    ),
    Key(
        "health",
        "timeout",
        "0.15",
        "Seconds to wait for a gateway probe's answer (rounds overlap); it adds to the "
        "detection time. Raise it where the gateway's RTT can approach it (satellite, an "
        "uplink whose queue fills under load).",
        "0.15",
    ),
    Key(
        "health",
        "down_after",
        "6",
        "Lost gateway rounds in a row before an uplink is down (k in the rule above).",
        "6",
    ),
    Key(
        "health",
        "up_after",
        "5",
        "Answered gateway rounds in a row before a down uplink is up again.",
        "5",
    ),
    Key(
        "health",
        "path_interval",
        "0.25",
        "Seconds between probe rounds past the gateway: to the second hop, or to the "
        "uplink's probe targets. The same rule: r = 4, k = 6 and the 0.5 s timeout give "
        "0.15 false downs in 30 days at 5 % loss, and find a dead path behind a live "
        "gateway in 1.75-2 s.",
        "0.25",
    ),
    Key(
        "health",
        "path_timeout",
        "0.5",
        "Seconds to wait for an answer from past the gateway (raise it for far targets).",
        "0.5",
    ),
    Key(
        "health",
        "path_down_after",
        "6",
        "Lost rounds past the gateway in a row before an uplink is down.",
        "6",
    ),
    Key(
        "health",
        "path_up_after",
        "2",
        "Answered rounds past the gateway in a row before a down uplink is up again.",
        "2",
    ),
    Key(
        "health",
        "second_hop",
        "true",
        "Without probe targets, check the path past the gateway at its second hop: an echo "
        "request with hop limit 2 toward `trace` expires at the router behind the gateway, "
        "whose time-exceeded reply names it; then that router is asked directly (echo, "
        "hop limit 2). Counts only once the second hop has answered (some filter it).",
        "true",
    ),
    Key(
        "health",
        "trace",
        '"1.1.1.1"',
        "Where the TTL-limited probe that finds the second hop is sent: any address routed "
        "past the gateway (the probe expires at the second hop and never gets there).",
        '"1.1.1.1"',
    ),
    Key(
        "health",
        "trace6",
        '"2606:4700:4700::1111"',
        "The same for IPv6.",
        '"2606:4700:4700::1111"',
    ),
    Key(
        "sysctls",
        "arp",
        "true",
        "Set arp_ignore=1 and arp_announce=2 on NICs that share a subnet, so each NIC "
        "answers ARP only for its own addresses (no ARP flux).",
        "true",
    ),
    Key(
        "sysctls",
        "rp_filter",
        '"keep"',
        'Reverse-path filtering on the uplinks: "keep" leaves it as it is (strict filtering '
        'works with multihome\'s rules); "loose" sets rp_filter=2 (weakens spoofing checks).',
        '"keep"',
    ),
    Key(
        "gateway",
        "lan",
        "[]",
        "The interfaces (or bridges: br-lan, docker0, virbr0) whose forwarded traffic "
        "multihome routes over the uplinks; gateway mode needs at least one.",
        '["lan0"]',
    ),
    Key(
        "gateway",
        "masquerade",
        "true",
        "SNAT each forwarded connection to the address of the uplink it leaves by.",
        "true",
    ),
    Key(
        "gateway",
        "sticky",
        '"flow"',
        '"flow": each connection keeps its uplink (layer-4 hash for new ones); "host-pair": '
        "all connections between one inner host and one remote host use one uplink, also "
        "after another uplink returns (for sites that tie a session to the client's address).",
        '"flow"',
    ),
    Key(
        "gateway",
        "mark_mask",
        "0x0F000000",
        "The same as [multihome] mark_mask, where it was set before that key existed; when "
        "both are set they must be equal.",
        "0x0F000000",
    ),
    Key(
        "gateway",
        "flush_on_down",
        "true",
        "multihome watch: when an uplink dies, delete its connections' conntrack entries "
        "(only multihome's, by mark), so clients reconnect at once through a healthy uplink.",
        "true",
    ),
    Key(
        "gateway",
        "ra_daemon",
        '""',
        "IPv6, RFC 8475: the daemon that sends the LAN's router advertisements, \"dnsmasq\", "
        "\"radvd\" or \"\" (none). With it, multihome watch announces a dead uplink's "
        "delegated prefixes with preferred lifetime 0 (LAN hosts move new connections to the "
        "other prefix) and restores them when it is back. dnsmasq: it writes the drop-in "
        "multihome-deprecated.conf (`dhcp-range=PREFIX,ra-only,64,deprecated` per prefix) "
        "into ra_conf_dir, runs ra_restart (dnsmasq does not re-read dhcp-range on SIGHUP), "
        "and removes exactly that file when the uplinks are back or watch stops. radvd (no "
        "drop-ins): it adds one marked line, `AdvPreferredLifetime 0;`, last in the prefix's "
        "block of ra_config, runs ra_restart (radvd reloads on SIGHUP), and removes exactly "
        "its marked lines again.",
        '"dnsmasq"',
    ),
    Key(
        "gateway",
        "ra_conf_dir",
        '"/etc/dnsmasq.d"',
        "The RA daemon's drop-in directory (dnsmasq's conf-dir). It and the directories above "
        "it must be root's and writable by no one else.",
        '"/etc/dnsmasq.d"',
    ),
    Key(
        "gateway",
        "ra_restart",
        '["systemctl", "restart", "dnsmasq.service"]',
        "The command that makes the RA daemon read its configuration again; with "
        'ra_daemon = "radvd" the default is ["systemctl", "reload", "radvd.service"].',
        '["systemctl", "restart", "dnsmasq.service"]',
    ),
    Key(
        "gateway",
        "ra_config",
        '"/etc/radvd.conf"',
        "radvd's configuration file (ra_daemon = \"radvd\"); its directory and those above "
        "it must be root's and writable by no one else.",
        '"/etc/radvd.conf"',
    ),
    Key(
        "gateway",
        "pd_lease_dir",
        '"/var/lib/dhcpcd"',
        "Where dhcpcd keeps its DHCPv6 leases (IFNAME.lease6): a prefix delegated in the "
        "lease of an uplink is that uplink's, so a LAN prefix inside it is routed by it "
        "without `delegated` in the config. The directory and those above it must be root's "
        "and writable by no one else.",
        '"/var/lib/dhcpcd"',
    ),
    Key(
        "gateway",
        "npt",
        "[]",
        "IPv6: the LAN's inside prefixes (ULA, e.g. fd00:1::/64) to translate with NPTv6 (RFC "
        "6296, stateless and checksum-neutral): on each uplink with a delegated prefix the "
        "inside prefix leaves as the delegation's subnet with the same subnet id "
        "(fd00:0:0:1::/64 with 2001:db8:a::/48 leaves as 2001:db8:a:1::/64), so a LAN host "
        "keeps one address and reaches the internet through every uplink. New connections "
        "from it spread over the healthy uplinks (a multipath route, layer-4 hash). Written "
        "as ip6tables rules in multihome's own chains MULTIHOME-NPT-PRE and "
        "MULTIHOME-NPT-POST of the mangle table (nftables has no stateless NPT).",
        '["fd00:1::/64"]',
    ),
    Key(
        UPLINK_SECTION,
        "gateway",
        None,
        "The uplink's IPv4 gateway; must be on the uplink's subnet.",
        '"192.0.2.1"',
        "detected from main's default route through the interface",
    ),
    Key(
        UPLINK_SECTION,
        "gateway6",
        None,
        "The uplink's IPv6 gateway (a link-local address is usual).",
        '"fe80::1"',
        "detected from main's default route through the interface",
    ),
    Key(
        UPLINK_SECTION,
        "table",
        None,
        "The uplink's routing table, inside table_range.",
        "100",
        "the lowest free table in table_range",
    ),
    Key(
        UPLINK_SECTION,
        "weight",
        "1",
        "The uplink's share of new outgoing connections with balance = true (1-256).",
        "1",
    ),
    Key(UPLINK_SECTION, "ipv4", "true", "Manage this uplink's IPv4 routing.", "true"),
    Key(UPLINK_SECTION, "ipv6", "true", "Manage this uplink's IPv6 routing.", "true"),
    Key(
        UPLINK_SECTION,
        "probe",
        "[]",
        "Health-check targets behind the gateway (up to 8 IPv4 addresses), probed by "
        "multihome watch from the uplink's address every path_interval, beside the gateway "
        "probes; the uplink is down when fewer than `reliability` of them answer, "
        "path_down_after rounds in a row. None: the second hop (second_hop).",
        '["203.0.113.100"]',
    ),
    Key(
        UPLINK_SECTION,
        "probe6",
        "[]",
        "IPv6 health-check targets behind the gateway (up to 8 IPv6 addresses), probed by "
        "multihome watch with ICMPv6 from the uplink's address, as `probe`.",
        '["2001:db8:ff::100"]',
    ),
    Key(
        UPLINK_SECTION,
        "reliability",
        None,
        "How many of the probe targets must answer for a round to count as answered (as "
        "mwan3's reliability): with 3 targets and 2, one target down changes nothing. At "
        "most the number of targets.",
        "1",
        "a majority of the targets (2 of 3, 1 of 2)",
    ),
    Key(
        UPLINK_SECTION,
        "delegated",
        "[]",
        "Gateway mode, IPv6: the prefixes this uplink's ISP delegated to the LAN (DHCPv6-PD), "
        "up to 8. Forwarded traffic from them leaves by this uplink (`from PREFIX lookup "
        "TABLE` after main's specific routes), so that neither ISP sees the other's sources; "
        "with multihome watch, a dead uplink's prefixes are announced deprecated on the LAN "
        "(RFC 8475). None: learnt from the LAN interfaces' addresses where the uplink they "
        "came from can be known (`multihome plan` names those it cannot map).",
        '["2001:db8:a::/48"]',
    ),
)

EXAMPLE_UPLINK = "eth0"


def _wrap(text: str, prefix: str, width: int = 92) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and len(prefix) + len(line) + 1 + len(word) > width:
            lines.append(prefix + line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(prefix + line)
    return lines


def default_description(key: Key) -> str:
    return key.default if key.default is not None else key.default_text


def example_config() -> str:
    """The commented example config: every key with its meaning and default, commented out,
    so that the file as shipped changes nothing (multihome behaves as without a config)."""
    out = [
        "# multihome's config file: /etc/multihome/multihome.toml (or -c FILE).",
        "# Every key is optional; the values shown commented out are the defaults, or",
        "# examples where the default is computed. See multihome.toml(5).",
        "# The file must not be writable by group or others (multihome refuses it otherwise).",
    ]
    for section, about in SECTIONS:
        out.append("")
        keys = [k for k in KEYS if k.section == section]
        if section == UPLINK_SECTION:
            out += _wrap(about, "# ")
            out.append(f"#[uplinks.{EXAMPLE_UPLINK}]")
        elif section in OPT_IN:  # its presence turns a mode on: commented out as a whole
            out += _wrap(about, "# ")
            out.append(f"#[{section}]")
        else:
            out += _wrap(about, "# ")
            out.append(f"[{section}]")
        for key in keys:
            out += _wrap(key.meaning, "#   ")
            out.append(f"#   default: {default_description(key)}")
            value = key.default if key.default is not None else key.example
            if section == UPLINK_SECTION or section in OPT_IN:
                value = key.example
            out.append(f"#{key.name} = {value}")
    return "\n".join(out) + "\n"
