"""Benchmark: the data path, stock routing vs multihome's rules (needs root, nft).

The kernel walks the rule list on every route lookup: each unconnected UDP packet, each new
TCP connection, each strict rp_filter check of a received packet no socket demuxes early. This
measures what multihome's layout costs there, against the same host with stock routing.

Per case (a number of addresses and a layout), two identical hosts are built in throwaway
namespaces: a server with two uplinks eth0 and eth1, each a veth to its own ISP namespace, a
default route per uplink in main as DHCP installs them (metric 100 and 200), strict
rp_filter (1) on the server as RHEL ships it. `multihome --netns NS apply` runs on one of
them; the other keeps stock routing. Layouts:
  own          each uplink's addresses in its own /16 (198.18.0.0/16 on eth0, 198.19.0.0/16
               on eth1), half of them on each;
  interleaved  one /16 on both NICs, the addresses alternating eth0, eth1, eth0, ... (the
               seed's two NICs on one switch, at scale), both gateways 198.18.255.254.
The first address is on eth0 (the first added), the last on eth1 (the last added).
Each ISP holds the peer 203.0.113.10 on its loopback (a TCP listener; UDP to port 9 is
dropped at its ingress by nft, so the peer costs little), and 203.0.113.2K, the source of
the received traffic below, for which the server's main has a route via that uplink's
gateway: stock strict rp_filter accepts it only so (an off-link source arriving on the
second uplink is exactly what stock drops), and both hosts then count the same packets.

Measures, each a rate over a fixed time (--seconds), in rounds that measure stock and
multihome back to back (the order alternating). The measuring process is pinned to one CPU
(--cpu), and a rate is per second of its CPU time (--wall: of the wall clock): its system
calls and the softirq work they set off, which runs in its context (the peer's and the
server's packet processing, rp_filter's lookup included), so that the other load of a shared
machine does not count.
  UDP sendto/s from the first / the last address: a socket bound to the address sends 64
      bytes to 203.0.113.10:9, beyond the gateway; successful sendto calls per second;
  TCP connects/s from the last address: connect to 203.0.113.10:8080 and close (RST, so no
      TIME_WAIT piles up), at most --connects per measure;
  received UDP pps to the last address through strict rp_filter: the ISP of eth1 sends from
      203.0.113.21 to a socket bound to the last address (not connected: no early demux) that
      is never read; packets that reached UDP (InDatagrams + InErrors of the server's
      /proc/net/snmp) per second of the sender's run.
Printed: medians of the rounds, and the ratio multihome / stock (the median of the rounds'
ratios), against the targets of issue 26 -- own subnets >= 0.93 of stock at every size,
interleaved >= 0.90 at 20 addresses and >= 0.75 at 2,000 and more; the `ip -j rule` count
(both families) of each host; and the path the last address's UDP took on each host (from the
interfaces' TX counters: stock leaves by eth0, multihome must leave by eth1).

With --rules a third host carries the rules form written by `ip -batch` (the rules multihome
writes below sourcemarks.THRESHOLD: per uplink its tables, and for each of its source
prefixes `from P lookup T suppress_prefixlength 0` and `from P lookup T` -- for alternating
addresses a prefix is an address), so that the nft form multihome chooses above the
threshold and the rules it replaces are measured side by side against the same stock host:
the crossover that sets sourcemarks.THRESHOLD.

With --variants NAME... each variant is one more host: multihome's apply, then its nft form
changed by hand (the source selection's output chain or its rules), measured in the same
rounds against the same stock host and printed as one more column -- the forms that
sourcemarks.py chose between, side by side (only in the cases where multihome chose the nft
form: elsewhere the column says "-", as it does for a measure that nothing passed, TCP on a
variant's wrong path). The variants (2 uplinks, the default mark band):
  lookup-first  the set lookup before the device test (the chain before this option)
  vmap          one verdict map of every address to its uplink's chain (one lookup)
  marked-1001   rule 1001 (main's specific routes) for marked packets only (not fwmark 0/M)
  no-mark       the chain without its mark: its cost without the reroute (wrong path)
  no-chain      no output chain: the rules' cost alone (wrong path)
  one-rule      one fwmark rule (eth1's at 1002) and none at 1000 or 1001: the least a
                reroute can cost (wrong for on-link and main's specific routes)
  egress-fwd    no output chain; a netdev egress chain on eth0 forwards packets from
                eth1's addresses to eth1's gateway (`fwd ip to G device eth1`): no second
                route lookup (but the TTL is lowered, the firewall and `ip route get`
                see eth0, and the next hop is the gateway whatever the destination)
and three measured also where the uplinks keep prefix rules: one without multihome,
  floor         the stock host and one rule that matches nothing (`from 192.0.2.255 lookup
                1000` at 1000): what the kernel's rule machinery costs once a host has any
                rule of its own (no merged local+main table, the rules walked), the least
                any layout of rules can cost (the wrong path: stock's)
and two that change rule 1 (at 1000):
  guard         one more rule before it, `not to 198.18.0.0/15 goto 1001` (both layouts'
                subnets): a packet to anywhere else skips rule 1, lookup and walk
  to-net        each rule 1 selects the destination too (`to 198.18.0.0/15`) instead of
                suppress_prefixlength 0: no table lookup for a packet to elsewhere

Default: 5 rounds of 1 s per measure (after a warm-up), about 5 minutes on 2 cores; --long
runs 9 rounds of 2 s (about 15 minutes).

Usage: python bench/bench_datapath.py [--sizes N...] [--layouts own interleaved]
       [--rounds N] [--seconds S] [--connects N] [--cpu N] [--wall] [--long] [--rules]
       [--variants NAME...]
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from bench_cli import MULTIHOME, PYTHON, batch, count_rules, netns

from multihome.core.config import DEFAULT_MARK_MASK
from multihome.core.gateway import mark as mark_of
from multihome.core.sources import covering_prefixes

PID = os.getpid()
PEER = "203.0.113.10"  # on each ISP's loopback: beyond the gateway
SINK_PORT, TCP_PORT, RX_PORT = 9, 8080, 9999
LAYOUTS = ("own", "interleaved")
MEASURES = ("udp_first", "udp_last", "tcp_last", "rx_last")
LABELS = {
    "udp_first": "UDP sendto/s, first address",
    "udp_last": "UDP sendto/s, last address",
    "tcp_last": "TCP connects/s, last address",
    "rx_last": "UDP rx pps, rp_filter=1, last",
}


def far(k: int) -> str:
    """The source of the traffic ISP k sends to the server (on its loopback)."""
    return f"203.0.113.{20 + k}"


def target(layout: str, size: int) -> float:
    if layout == "own":
        return 0.93
    return 0.90 if size <= 20 else 0.75


# -- the processes that measure, run inside the namespaces -----------------------------------

MEASURE = r"""
import json, os, socket, struct, sys, time
kind, cpu, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
src, dst, port = sys.argv[4], sys.argv[5], int(sys.argv[6])
if cpu >= 0:
    os.sched_setaffinity(0, {cpu})
clock = time.perf_counter
done = failed = 0
data = bytes(64)
if kind in ("sendto", "send"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    if kind == "send":  # the ISP's sender: connected, its own lookup cached in the socket
        s.connect((dst, port))
    target = (dst, port)
    cpu_start, start = time.process_time(), clock()
    end = start + seconds
    while clock() < end:
        for _ in range(500):
            try:
                s.sendto(data, target) if kind == "sendto" else s.send(data)
            except OSError:
                failed += 1
        done += 500
elif kind == "connect":
    limit = int(sys.argv[7])
    linger = struct.pack("ii", 1, 0)
    cpu_start, start = time.process_time(), clock()
    end = start + seconds
    while done < limit and clock() < end:
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        c.setsockopt(socket.IPPROTO_IP, 24, 1)  # IP_BIND_ADDRESS_NO_PORT: port at connect
        c.settimeout(1.0)
        c.bind((src, 0))
        try:
            c.connect((dst, port))
        except OSError:
            failed += 1
        done += 1
        c.close()
else:
    raise SystemExit(f"unknown measure {kind}")
wall, cpu = clock() - start, time.process_time() - cpu_start
print(json.dumps({"count": done - failed, "failed": failed, "wall": wall, "cpu": cpu}))
"""

# In each ISP: a listener that never accepts. With TCP_DEFER_ACCEPT the kernel completes the
# handshake with a request socket that waits for data, and the client's RST removes it: no
# process runs per connection, nothing queues.
LISTEN = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 60)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(4096)
print("ready", flush=True)
sys.stdin.read()
"""

# In the server: a UDP socket bound to the last address that is never read (what arrives
# beyond its buffer counts as InErrors); prints the UDP counters on each line read.
RECEIVE = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.bind((sys.argv[1], int(sys.argv[2])))
def udp():
    with open("/proc/net/snmp", encoding="ascii") as f:
        names, values = [line.split() for line in f if line.startswith("Udp:")][:2]
    row = dict(zip(names[1:], map(int, values[1:])))
    return row["InDatagrams"] + row["InErrors"]
print(udp(), flush=True)
for _ in sys.stdin:
    print(udp(), flush=True)
"""


# In each ISP: UDP to the sink port dropped as it arrives, before IP sees it.
SINK = f"""
table netdev sink {{
    chain in {{
        type filter hook ingress device "lan" priority 0; policy accept;
        udp dport {SINK_PORT} drop
    }}
}}
"""


class Helper:
    """A helper process in a namespace, for a with-block; killed by its pid at the end."""

    def __init__(self, ns: str, code: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, PYTHON, "-c", code, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.first = self.proc.stdout.readline().strip()
        if not self.first:
            self.close()
            raise SystemExit(f"a helper in {ns} did not start ({' '.join(args)})")

    def ask(self) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


@dataclass(frozen=True)
class Settings:
    cpu: int  # the CPU the measuring processes are pinned to, or -1
    seconds: float  # per measure
    connects: int  # at most, per TCP measure
    wall: bool  # rates per wall-clock second instead of per CPU second


def measure(
    ns: str, kind: str, settings: Settings, seconds: float, *args: str
) -> tuple[int, float]:
    """One measuring process: its successful operations, and the seconds they took (of its
    CPU time, or of the wall clock with --wall)."""
    argv = [PYTHON, "-c", MEASURE, kind, str(settings.cpu), str(seconds), *args]
    out = subprocess.run(
        ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=seconds + 60
    )
    if out.returncode != 0:
        raise SystemExit(f"measure {kind} in {ns} failed: {out.stderr.strip()}")
    result = json.loads(out.stdout)
    return int(result["count"]), float(result["wall" if settings.wall else "cpu"])


# -- the hosts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where a case's addresses go: (device, address) in order, prefix, gateway per uplink."""

    name: str
    addresses: tuple[tuple[str, str], ...]
    prefixlen: int
    gateways: tuple[str, str]

    @property
    def first(self) -> str:
        return self.addresses[0][1]

    @property
    def last(self) -> str:
        return self.addresses[-1][1]


def layout(name: str, size: int) -> Layout:
    base = int(ipaddress.IPv4Address("198.18.0.1"))
    if name == "own":
        half = size // 2
        own = [("eth0", base + i) for i in range(half)]
        own += [("eth1", base + 65536 + i) for i in range(size - half)]
        chosen = tuple((dev, str(ipaddress.IPv4Address(a))) for dev, a in own)
        return Layout(name, chosen, 16, ("198.18.255.254", "198.19.255.254"))
    interleaved = tuple((f"eth{i % 2}", str(ipaddress.IPv4Address(base + i))) for i in range(size))
    return Layout(name, interleaved, 16, ("198.18.255.254", "198.18.255.254"))


@dataclass
class Host:
    """One built server with its two ISPs, and the helper processes running in them."""

    label: str  # "stock" or "multihome"
    server: str
    isps: tuple[str, str]
    receiver: Helper | None = None


def rules_form(ns: str, chosen: Layout) -> None:
    """The rules form, written by `ip -batch`: per uplink a table with its on-link and default
    routes, main's suppress rule, and two rules per source prefix (multihome's own prefixes,
    from `multihome plan --json`, so that the rules are exactly the ones it would write)."""
    lines = ["-4 rule add pref 1001 lookup main suppress_prefixlength 0 proto 77"]
    for k, gateway in enumerate(chosen.gateways):
        table = 100 + k
        first = next(a for dev, a in chosen.addresses if dev == f"eth{k}")
        network = ipaddress.ip_interface(f"{first}/{chosen.prefixlen}").network
        lines += [
            f"-4 route add {network} dev eth{k} src {first} table {table} proto 77",
            f"-4 route add default via {gateway} dev eth{k} table {table} proto 77",
        ]
        mine = [int(ipaddress.IPv4Address(a)) for dev, a in chosen.addresses if dev == f"eth{k}"]
        theirs = [int(ipaddress.IPv4Address(a)) for dev, a in chosen.addresses if dev != f"eth{k}"]
        for prefix in covering_prefixes([network], mine, theirs):
            lines += [
                f"-4 rule add pref 1000 from {prefix} lookup {table} suppress_prefixlength 0"
                " proto 77",
                f"-4 rule add pref 1002 from {prefix} lookup {table} proto 77",
            ]
    batch(ns, lines)


# -- the variants of the nft form (--variants) ----------------------------------------------

VARIANTS = (
    "lookup-first",
    "vmap",
    "marked-1001",
    "no-mark",
    "no-chain",
    "one-rule",
    "egress-fwd",
    "floor",
    "guard",
    "to-net",
)
RULES_VARIANTS = ("floor", "guard", "to-net")  # also where the uplinks keep prefix rules
DEVICES = {1: "eth0", 2: "eth1"}  # mark id -> uplink (tables 100, 101: ids 1, 2)


def nft(ns: str, text: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=text, text=True, check=True)


def has_sources(ns: str) -> bool:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "list", "chain", "inet", "multihome", "sources_out"],
        capture_output=True,
        check=False,
    )
    return out.returncode == 0


def set_elements(ns: str, name: str) -> list[str]:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-j", "list", "set", "inet", "multihome", name],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [
        str(e) for item in json.loads(out)["nftables"] if "set" in item for e in item["set"]["elem"]
    ]


def _mark(uplink_id: int) -> str:
    value = mark_of(DEFAULT_MARK_MASK, uplink_id)
    return f"meta mark set meta mark & 0x{~DEFAULT_MARK_MASK & 0xFFFFFFFF:08x} | 0x{value:08x}"


def _output_chain(lines: list[str], extra: list[str] | None = None) -> str:
    return "\n".join(
        [
            "table inet multihome {",
            *(extra or []),
            "chain sources_out {",
            "type route hook output priority mangle + 1; policy accept;",
            *lines,
            "}",
            "}",
            "",
        ]
    )


def variant(ns: str, name: str) -> None:
    """Change multihome's nft form on host `ns` into the variant `name` (VARIANTS; floor: the
    stock host's rules)."""
    mask = f"0x{DEFAULT_MARK_MASK:08x}"
    if name in ("lookup-first", "no-mark", "vmap", "no-chain", "egress-fwd"):
        nft(ns, "delete chain inet multihome sources_out\n")
    if name == "lookup-first":
        nft(
            ns,
            _output_chain(
                [f'ip saddr @src4_{k} oifname != "{dev}" {_mark(k)}' for k, dev in DEVICES.items()]
            ),
        )
    elif name == "no-mark":
        nft(
            ns,
            _output_chain([f'oifname != "{dev}" ip saddr @src4_{k}' for k, dev in DEVICES.items()]),
        )
    elif name == "vmap":
        pairs = [f"{a} : jump up{k}" for k in DEVICES for a in set_elements(ns, f"src4_{k}")]
        extra = [
            "map sources4 {",
            "type ipv4_addr : verdict",
            f"elements = {{ {', '.join(pairs)} }}",
            "}",
        ]
        for k, dev in DEVICES.items():
            extra += [f"chain up{k} {{", f'oifname != "{dev}" {_mark(k)}', "}"]
        nft(ns, _output_chain(["ip saddr vmap @sources4"], extra))
    elif name == "marked-1001":
        batch(
            ns,
            [
                "-4 rule del pref 1001",
                f"-4 rule add pref 1001 not fwmark 0/{mask} lookup main suppress_prefixlength 0"
                " proto 77",
            ],
        )
    elif name == "to-net":
        out = subprocess.run(
            ["ip", "-n", ns, "-j", "-4", "rule", "show", "pref", "1000"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        lines = []
        for r in json.loads(out):
            sel = f"from {r['src']}/{r.get('srclen', 32)}" if r.get("src", "all") != "all" else ""
            if "fwmark" in r:
                sel += f" fwmark {r['fwmark']}/{r['fwmask']}"
            lines += [
                f"-4 rule del pref 1000 {sel} lookup {r['table']} suppress_prefixlength 0",
                f"-4 rule add pref 1000 {sel} to 198.18.0.0/15 lookup {r['table']} proto 77",
            ]
        batch(ns, lines)
    elif name == "floor":  # on a host without multihome
        batch(ns, ["-4 rule add pref 1000 from 192.0.2.255 lookup 1000"])
    elif name == "guard":
        batch(ns, ["-4 rule add pref 999 not to 198.18.0.0/15 goto 1001 proto 77"])
    elif name == "one-rule":
        batch(
            ns,
            [
                "-4 rule del pref 1001",
                "-4 rule del pref 1000",
                "-4 rule del pref 1000",
                f"-4 rule del pref 1002 fwmark 0x{mark_of(DEFAULT_MARK_MASK, 1):x}/{mask}",
            ],
        )
    elif name == "egress-fwd":
        elements = ", ".join(set_elements(ns, "src4_2"))
        gateway_of_eth1 = "198.18.255.254"  # the interleaved layout's
        nft(
            ns,
            "\n".join(
                [
                    "table netdev multihome_fwd {",
                    "set src4_2 {",
                    "type ipv4_addr",
                    f"elements = {{ {elements} }}",
                    "}",
                    "chain eth0_out {",
                    'type filter hook egress device "eth0" priority 0; policy accept;',
                    f'ip saddr @src4_2 fwd ip to {gateway_of_eth1} device "eth1"',
                    "}",
                    "}",
                    "",
                ]
            ),
        )


def sysctl(ns: str, values: dict[str, str]) -> None:
    args = [f"{name}={value}" for name, value in values.items()]
    subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", *args], check=True)


def build(host: Host, chosen: Layout) -> None:
    """The server, its ISPs, their addresses and routes (ip -batch), the sink in each ISP."""
    for ns in (host.server, *host.isps):
        batch(ns, ["link set lo up"])
    lines = []
    for k, isp in enumerate(host.isps):
        lines += [f"link add eth{k} type veth peer name lan netns {isp}", f"link set eth{k} up"]
    batch(host.server, lines)
    # strict before the addresses exist, as on a RHEL host from boot
    strict = {"net.ipv4.conf.all.rp_filter": "1", "net.ipv4.conf.default.rp_filter": "1"}
    strict |= {f"net.ipv4.conf.eth{k}.rp_filter": "1" for k in range(2)}
    sysctl(host.server, strict)
    lines = [f"-4 addr add {a}/{chosen.prefixlen} dev {dev}" for dev, a in chosen.addresses]
    for k, gateway in enumerate(chosen.gateways):
        lines += [
            f"-4 route add default via {gateway} dev eth{k} metric {100 * (k + 1)}",
            f"-4 route add {far(k)}/32 via {gateway} dev eth{k}",
        ]
    batch(host.server, lines)
    for k, isp in enumerate(host.isps):
        batch(
            isp,
            [
                "link set lan up",
                f"-4 addr add {chosen.gateways[k]}/{chosen.prefixlen} dev lan",
                f"-4 addr add {PEER}/32 dev lo",
                f"-4 addr add {far(k)}/32 dev lo",
                # the server's addresses on-link, whichever uplink (stock sends the last
                # address's packets by eth0)
                "-4 route add 198.18.0.0/15 dev lan",
            ],
        )
        subprocess.run(
            ["ip", "netns", "exec", isp, "nft", "-f", "-"], input=SINK, text=True, check=True
        )


def tx(ns: str) -> dict[str, int]:
    out = subprocess.run(
        ["ip", "-n", ns, "-j", "-s", "link"], capture_output=True, text=True, check=True
    ).stdout
    return {link["ifname"]: link["stats64"]["tx"]["packets"] for link in json.loads(out)}


def path_of_last(host: Host, chosen: Layout, settings: Settings) -> str:
    """The uplink that UDP from the last address leaves by, from the TX counters."""
    before = tx(host.server)
    measure(host.server, "sendto", settings, 0.2, chosen.last, PEER, str(SINK_PORT))
    after = tx(host.server)
    sent = {dev: after[dev] - before[dev] for dev in ("eth0", "eth1")}
    return max(sent, key=lambda dev: sent[dev])


# -- the measures ---------------------------------------------------------------------------


def rate(host: Host, chosen: Layout, name: str, settings: Settings, seconds: float) -> float:
    if name in ("udp_first", "udp_last"):
        source = chosen.first if name == "udp_first" else chosen.last
        done, spent = measure(
            host.server, "sendto", settings, seconds, source, PEER, str(SINK_PORT)
        )
    elif name == "tcp_last":
        limit = str(settings.connects)
        args = (chosen.last, PEER, str(TCP_PORT), limit)
        done, spent = measure(host.server, "connect", settings, seconds, *args)
        if done == 0 and host.label in VARIANTS:  # (a variant on the wrong path)
            return 0.0
        if done == 0:
            raise SystemExit(f"{host.label}: no TCP connection from {chosen.last} succeeded")
    else:  # what reached UDP in the server, per second of the sender's run
        assert host.receiver is not None
        before = int(host.receiver.ask())
        sender = (far(1), chosen.last, str(RX_PORT))
        _, spent = measure(host.isps[1], "send", settings, seconds, *sender)
        time.sleep(0.05)  # what is still in the backlog
        done = int(host.receiver.ask()) - before
    return done / spent


@dataclass
class Result:
    stock: list[float] = field(default_factory=list)
    mine: list[float] = field(default_factory=list)
    rules: list[float] = field(default_factory=list)  # --rules: the rules form's host
    variants: dict[str, list[float]] = field(default_factory=dict)  # --variants

    @property
    def ratio(self) -> float:
        return statistics.median(
            m / s if s else 0.0 for s, m in zip(self.stock, self.mine, strict=True)
        )

    @property
    def rules_ratio(self) -> float:
        return statistics.median(
            m / s if s else 0.0 for s, m in zip(self.stock, self.rules, strict=True)
        )

    def variant_ratio(self, name: str) -> float | None:
        rates = self.variants.get(name)
        if not rates or not any(rates):  # no nft form in this case, or nothing went through
            return None
        return statistics.median(
            m / s if s else 0.0 for s, m in zip(self.stock, rates, strict=True)
        )


def run_case(
    name: str,
    size: int,
    rounds: int,
    settings: Settings,
    state_dir: str,
    with_rules: bool = False,
    variants: tuple[str, ...] = (),
) -> tuple[dict[str, Result], dict[str, int], dict[str, str], float]:
    chosen = layout(name, size)
    tag = f"mhbd{PID}{name[0]}{size}"
    with contextlib.ExitStack() as stack:

        def namespace(suffix: str) -> str:
            return stack.enter_context(netns(f"{tag}{suffix}"))

        hosts = []
        labels = ["stock", "multihome", *(["rules"] if with_rules else []), *variants]
        for index, label in enumerate(labels):
            short = label[0] if index < 3 else f"v{index}"
            server, isp0, isp1 = (namespace(short + part) for part in ("s", "i0", "i1"))
            hosts.append(Host(label, server, (isp0, isp1)))
        for host in hosts:
            build(host, chosen)

        def apply(host: Host) -> float:
            start = time.perf_counter()
            subprocess.run(
                [*MULTIHOME, "--netns", host.server, "apply"],
                check=True,
                stdout=subprocess.DEVNULL,
                env={**os.environ, "MULTIHOME_STATE_DIR": state_dir},
            )
            return time.perf_counter() - start

        applied = apply(hosts[1])
        if with_rules:
            rules_form(hosts[2].server, chosen)
        if variants and not has_sources(hosts[1].server):  # no nft form here: no variants
            hosts = [h for h in hosts if h.label not in variants or h.label in RULES_VARIANTS]
        for host in hosts:
            if host.label in variants:
                if host.label != "floor":
                    apply(host)
                variant(host.server, host.label)
        for host in hosts:
            for isp in host.isps:
                listener = Helper(isp, LISTEN, PEER, str(TCP_PORT))
                stack.callback(listener.close)
            host.receiver = Helper(host.server, RECEIVE, chosen.last, str(RX_PORT))
            stack.callback(host.receiver.close)
        rules = {host.label: count_rules(host.server) for host in hosts}
        paths = {host.label: path_of_last(host, chosen, settings) for host in hosts}
        for host in hosts:  # warm-up: neighbours resolved, code paths hot
            for what in MEASURES:
                rate(host, chosen, what, settings, 0.2)
        results = {what: Result() for what in MEASURES}
        for turn in range(rounds):
            for what in MEASURES:
                order = hosts if turn % 2 == 0 else hosts[::-1]
                got = {h.label: rate(h, chosen, what, settings, settings.seconds) for h in order}
                results[what].stock.append(got["stock"])
                results[what].mine.append(got["multihome"])
                if with_rules:
                    results[what].rules.append(got["rules"])
                for label in variants:
                    if label in got:
                        results[what].variants.setdefault(label, []).append(got[label])
        return results, rules, paths, applied


# -- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 2000, 10000])
    parser.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="per measure")
    parser.add_argument("--connects", type=int, default=20000, help="at most, per measure")
    cpus = sorted(os.sched_getaffinity(0))
    parser.add_argument(
        "--cpu", type=int, default=cpus[-1], help="pin the measuring processes (-1: do not)"
    )
    parser.add_argument("--long", action="store_true", help="9 rounds of 2 s")
    parser.add_argument("--wall", action="store_true", help="rates per wall-clock second")
    parser.add_argument(
        "--rules", action="store_true", help="a third host with the rules form, by ip -batch"
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=VARIANTS,
        default=[],
        help="more hosts: multihome's nft form changed by hand, one column each",
    )
    args = parser.parse_args()
    if args.long:
        args.rounds, args.seconds = 9, 2.0
    settings = Settings(args.cpu, args.seconds, args.connects, args.wall)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # remove the namespaces on kill
    if shutil.which("nft") is None:
        raise SystemExit("needs nft (package nftables)")
    began = time.perf_counter()
    state_dir = tempfile.mkdtemp(prefix="mhbench-datapath-")
    pinned = f"pinned to CPU {args.cpu}" if args.cpu >= 0 else "not pinned"
    clock = "wall-clock second" if args.wall else "CPU second of the measuring process"
    print(
        f"{' '.join(MULTIHOME)}; {args.rounds} rounds of {args.seconds:g} s per measure after a"
        f" warm-up, medians; measuring processes {pinned}; {os.cpu_count()} cores\n"
        f"rates per {clock}; ratio: multihome / stock, the median of the rounds' ratios"
    )
    header = f"  {'':31}{'stock':>11}{'multihome':>11}{'ratio':>7}  target"
    met = total = 0
    try:
        for size in args.sizes:
            for name in args.layouts:
                results, rules, paths, applied = run_case(
                    name, size, args.rounds, settings, state_dir, args.rules, tuple(args.variants)
                )
                print(
                    f"{size:,} addresses, {name}: rules stock {rules['stock']}, multihome"
                    f" {rules['multihome']}"
                    + (f", rules form {rules['rules']}" if args.rules else "")
                    + f" (apply {applied:.1f} s); UDP from the last address"
                    f" leaves by: stock {paths['stock']}, multihome {paths['multihome']}"
                    f"{'' if paths['multihome'] == 'eth1' else ' (WRONG: not its uplink)'}"
                )
                print(
                    header
                    + ("  rules form" if args.rules else "")
                    + "".join(f"  {v:>12}" for v in args.variants)
                )
                limit = target(name, size)
                for what, result in results.items():
                    ok = result.ratio >= limit
                    met, total = met + ok, total + 1
                    print(
                        f"  {LABELS[what]:31}{statistics.median(result.stock):11,.0f}"
                        f"{statistics.median(result.mine):11,.0f}{result.ratio:7.2f}"
                        f"  >= {limit:.2f} {'MET' if ok else 'NOT MET'}"
                        + (f"  {result.rules_ratio:.2f}" if args.rules else "")
                        + "".join(
                            f"  {'-' if r is None else f'{r:.2f}':>12}"
                            for r in map(result.variant_ratio, args.variants)
                        )
                    )
                sys.stdout.flush()
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    print(f"targets: {met} of {total} met; the whole run {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
