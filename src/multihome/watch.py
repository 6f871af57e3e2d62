"""`multihome watch`: keep the plan applied while the host changes, health-check the uplinks'
gateways, and balance outgoing connections over the healthy ones.

One loop, one thread: rtnetlink multicast events (links, addresses, routes, rules) are
debounced and answered with a reconcile -- read, plan, diff, apply, through the same code
path as `multihome apply`, touching only multihome's objects. ICMP echo probes leave each
uplink from its own address and device (so they take the uplink's own table) to its gateway
or the configured targets; the health state machine (health.py) turns their results into
up/down, and a change re-plans the balancing route at once. A periodic reconcile catches
anything an event did not announce.
"""

from __future__ import annotations

import contextlib
import http.server
import ipaddress
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from types import FrameType
from typing import Any

from multihome import config as config_file
from multihome import discover, namespace, operations, state
from multihome.errors import MultihomeError
from multihome.health import Link, UplinkHealth, observe

# rtnetlink multicast groups (<linux/rtnetlink.h>: RTNLGRP_*)
GROUPS = (1, 5, 7, 8, 9, 11, 19)  # link, ipv4 ifaddr/route/rule, ipv6 ifaddr/route/rule
DEBOUNCE = 0.03  # quiet time after the last event before reconciling
MAX_DELAY = 0.2  # ... but never later than this after the first one
PERIODIC = 30.0  # a reconcile even without events, as a safety net
ICMP_ECHO, ICMP_ECHOREPLY = 8, 0
SO_BINDTODEVICE = 25


def _log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())
    print(f"{stamp} multihome watch: {message}", flush=True)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    checksum: int = ~total & 0xFFFF
    return checksum


@dataclass
class Probe:
    """ICMP echo from one uplink: its socket, source, targets and the round in flight."""

    uplink: str
    source: ipaddress.IPv4Address
    targets: tuple[ipaddress.IPv4Address, ...]
    sock: socket.socket
    ident: int
    seq: int = 0
    sent_at: float = 0.0
    answered: float | None = None  # RTT of the first answer of this round

    @classmethod
    def open(
        cls,
        uplink: str,
        source: ipaddress.IPv4Address,
        targets: tuple[ipaddress.IPv4Address, ...],
        ident: int,
    ) -> Probe:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, uplink.encode())
        sock.bind((str(source), 0))
        sock.setblocking(False)
        return cls(uplink, source, targets, sock, ident)

    def send(self, now: float) -> None:
        self.seq = (self.seq + 1) & 0xFFFF
        self.sent_at, self.answered = now, None
        header = struct.pack("!BBHHH", ICMP_ECHO, 0, 0, self.ident, self.seq)
        payload = b"multihome"
        packet = (
            struct.pack("!BBHHH", ICMP_ECHO, 0, _checksum(header + payload), self.ident, self.seq)
            + payload
        )
        for target in self.targets:
            with contextlib.suppress(OSError):  # unreachable now: the round will fail
                self.sock.sendto(packet, (str(target), 0))

    def receive(self, now: float) -> None:
        while True:
            try:
                data, (sender, _) = self.sock.recvfrom(2048)
            except BlockingIOError:
                return
            header_length = (data[0] & 0x0F) * 4
            kind, _, _, ident, seq = struct.unpack_from("!BBHHH", data, header_length)
            if (
                kind == ICMP_ECHOREPLY
                and ident == self.ident
                and seq == self.seq
                and ipaddress.ip_address(sender) in self.targets
                and self.answered is None
            ):
                self.answered = now - self.sent_at


@dataclass
class Status:
    """What `multihome status` and the metrics show."""

    pid: int = field(default_factory=os.getpid)
    started: float = field(default_factory=time.time)
    uplinks: dict[str, dict[str, Any]] = field(default_factory=dict)
    reconciles: int = 0
    errors: int = 0
    last_reconcile: float | None = None
    last_result: str = ""


def status_path(netns_id: int) -> str:
    return state.file_path(netns_id, "watch.json")


def read_status(netns_id: int) -> dict[str, Any] | None:
    try:
        with open(status_path(netns_id), encoding="utf-8") as file:
            data: dict[str, Any] = json.load(file)
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(int(data.get("pid", 0)), 0)
        data["running"] = True
    except (ProcessLookupError, ValueError):
        data["running"] = False
    return data


class _Notify:
    """systemd's notify protocol (Type=notify): READY=1 and WATCHDOG=1."""

    def __init__(self) -> None:
        address = os.environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = os.environ.get("WATCHDOG_USEC", "")
        self.watchdog = int(usec) / 1e6 / 2 if usec.isdigit() else None
        self.next_ping = 0.0

    def send(self, message: str) -> None:
        if not self.address:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), self.address)

    def tick(self, now: float) -> None:
        if self.watchdog and now >= self.next_ping:
            self.send("WATCHDOG=1")
            self.next_ping = now + self.watchdog


class Watcher:
    def __init__(self, config_path: str | None, metrics: str | None = None) -> None:
        self.config_path = config_path
        self.health_config = config_file.load(config_path).health
        self.netns_id = namespace.identity()
        self.health: dict[str, UplinkHealth] = {}
        self.probes: dict[str, Probe] = {}
        self.status = Status()
        self.lock = threading.Lock()
        self.running = True
        self.notify = _Notify()
        self.metrics_address = metrics
        self.events = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.events.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.events.bind((0, sum(1 << (g - 1) for g in GROUPS)))
        self.events.setblocking(False)

    def stop(self, signum: int, frame: FrameType | None) -> None:
        self.running = False

    # -- reconcile ------------------------------------------------------------------------

    def down(self) -> frozenset[str]:
        return frozenset(n for n, h in self.health.items() if h.state is Link.DOWN)

    def reconcile(self, reason: str) -> None:
        start = time.monotonic()
        try:
            outcome = operations.reconcile(self.config_path, self.down())
        except MultihomeError as error:
            self.status.errors += 1
            self.status.last_result = f"error: {error.message}"
            _log(f"reconcile ({reason}) failed: {error.message}")
        else:
            changes = outcome.changes
            self.status.last_result = f"{len(changes)} changes"
            if changes:
                elapsed = (time.monotonic() - start) * 1000
                _log(
                    f"reconcile ({reason}): {len(changes)} changes in {elapsed:.0f} ms: "
                    + "; ".join(c.describe() for c in changes[:6])
                    + (" ..." if len(changes) > 6 else "")
                )
            self._update_probes(outcome)
        self.status.reconciles += 1
        self.status.last_reconcile = time.time()
        self._write_status()

    def _update_probes(self, outcome: operations.Outcome) -> None:
        targets: dict[str, tuple[ipaddress.IPv4Address, tuple[ipaddress.IPv4Address, ...]]] = {}
        configured = {u.name: u.probe for u in outcome.config.uplinks}
        for uplink in outcome.desired.uplinks:
            sources = [a.ip.ip for a in uplink.addresses if a.ip.version == 4]
            probe_to = configured.get(uplink.name) or (
                (uplink.gateway4,) if uplink.gateway4 is not None else ()
            )
            if sources and probe_to:
                targets[uplink.name] = (sources[0], tuple(probe_to))  # type: ignore[arg-type]
        for name in list(self.probes):
            probe = self.probes[name]
            if targets.get(name) != (probe.source, probe.targets):
                probe.sock.close()
                del self.probes[name]
        for index, (name, (source, to)) in enumerate(sorted(targets.items())):
            if name not in self.probes:
                ident = (os.getpid() * 31 + index) & 0xFFFF
                try:
                    self.probes[name] = Probe.open(name, source, to, ident)
                except OSError as error:
                    _log(f"{name}: cannot probe from {source}: {error.strerror}")
                    continue
                self.health.setdefault(name, UplinkHealth(since=time.time()))
        for name in list(self.health):
            if name not in targets:
                del self.health[name]

    # -- status ---------------------------------------------------------------------------

    def _write_status(self) -> None:
        with self.lock:
            self.status.uplinks = {
                name: {
                    "state": h.state.value,
                    "since": h.since,
                    "last_rtt_ms": round(h.last_rtt * 1000, 3) if h.last_rtt is not None else None,
                    "probes_sent": h.sent,
                    "probes_lost": h.lost,
                    "loss": round(h.lost / h.sent, 4) if h.sent else 0.0,
                    "targets": [str(t) for t in self.probes[name].targets]
                    if name in self.probes
                    else [],
                }
                for name, h in sorted(self.health.items())
            }
            data = asdict(self.status)
        os.makedirs(state.STATE_DIR, exist_ok=True)
        path = status_path(self.netns_id)
        with open(path + ".tmp", "w", encoding="utf-8") as file:
            json.dump(data, file, indent=1)
        os.replace(path + ".tmp", path)

    # -- the loop -------------------------------------------------------------------------

    def _drain_events(self) -> bool:
        got = False
        while True:
            try:
                if not self.events.recv(1 << 16):
                    return got
                got = True
            except BlockingIOError:
                return got
            except OSError:  # ENOBUFS: events were lost; a reconcile catches up
                return True

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        if self.metrics_address:
            self._serve_metrics(self.metrics_address)
        self.reconcile("start")
        self.notify.send("READY=1")
        _log(
            f"watching (pid {os.getpid()}); uplinks probed: "
            + (", ".join(sorted(self.probes)) or "none")
        )
        cfg = self.health_config
        interval = max(cfg.interval, cfg.timeout)
        next_round = time.monotonic()
        round_end: float | None = None
        first_event: float | None = None
        last_event = 0.0
        next_periodic = time.monotonic() + PERIODIC
        while self.running:
            now = time.monotonic()
            deadlines = [next_round, next_periodic]
            if round_end is not None:
                deadlines.append(round_end)
            if first_event is not None:
                deadlines.append(min(last_event + DEBOUNCE, first_event + MAX_DELAY))
            wait = max(0.0, min(deadlines) - now)
            sockets = [self.events, *(p.sock for p in self.probes.values())]
            try:
                ready, _, _ = select.select(sockets, [], [], wait)
            except InterruptedError:
                continue
            now = time.monotonic()
            self.notify.tick(now)
            if self.events in ready and self._drain_events():
                first_event = first_event if first_event is not None else now
                last_event = now
            for probe in self.probes.values():
                if probe.sock in ready:
                    probe.receive(now)
            if round_end is not None and now >= round_end:
                round_end = None
                if self._evaluate_round(now):
                    self.reconcile("health")
                    first_event = None
            if now >= next_round and self.probes:
                for probe in self.probes.values():
                    probe.send(now)
                round_end = now + cfg.timeout
                next_round = now + interval
            elif now >= next_round:
                next_round = now + interval
            if first_event is not None and (
                now >= last_event + DEBOUNCE or now >= first_event + MAX_DELAY
            ):
                first_event = None
                self.reconcile("event")
            if now >= next_periodic:
                next_periodic = now + PERIODIC
                self.reconcile("periodic")
        for probe in self.probes.values():
            probe.sock.close()
        self.events.close()
        _log("stopped")

    def _evaluate_round(self, now: float) -> bool:
        changed = False
        for name, probe in self.probes.items():
            before = self.health.get(name, UplinkHealth(since=time.time()))
            after = observe(
                before, probe.answered is not None, probe.answered, time.time(), self.health_config
            )
            self.health[name] = after
            if after.state is not before.state:
                changed = True
                _log(
                    f"{name}: {before.state.value} -> {after.state.value} "
                    f"(probes to {', '.join(map(str, probe.targets))})"
                )
        if changed or int(now) % 2 == 0:
            self._write_status()
        return changed

    # -- metrics --------------------------------------------------------------------------

    def metrics_text(self) -> str:
        with self.lock:
            status = asdict(self.status)
        lines = [
            "# TYPE multihome_uplink_up gauge",
            *(
                f'multihome_uplink_up{{uplink="{n}"}} {int(u["state"] == "up")}'
                for n, u in status["uplinks"].items()
            ),
            "# TYPE multihome_probe_rtt_seconds gauge",
            *(
                f'multihome_probe_rtt_seconds{{uplink="{n}"}} {u["last_rtt_ms"] / 1000}'
                for n, u in status["uplinks"].items()
                if u["last_rtt_ms"] is not None
            ),
            "# TYPE multihome_probes_lost_total counter",
            *(
                f'multihome_probes_lost_total{{uplink="{n}"}} {u["probes_lost"]}'
                for n, u in status["uplinks"].items()
            ),
            "# TYPE multihome_reconciles_total counter",
            f"multihome_reconciles_total {status['reconciles']}",
            "# TYPE multihome_reconcile_errors_total counter",
            f"multihome_reconcile_errors_total {status['errors']}",
        ]
        counters = discover.read_counters()
        for kind in ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes"):
            lines.append(f"# TYPE multihome_interface_{kind}_total counter")
            lines += [
                f'multihome_interface_{kind}_total{{interface="{n}"}} {getattr(c, kind)}'
                for n, c in sorted(counters.items())
                if n != "lo"
            ]
        return "\n".join(lines) + "\n"

    def _serve_metrics(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        watcher = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                body = watcher.metrics_text().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None  # one line per action in the log, not per scrape

        try:
            server = http.server.ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
        except (OSError, ValueError) as error:
            raise MultihomeError(f"cannot serve metrics on {address}: {error}") from None
        threading.Thread(target=server.serve_forever, daemon=True).start()
        _log(f"metrics on http://{host or '127.0.0.1'}:{port}/metrics")


def watch(config_path: str | None, metrics: str | None) -> None:
    if os.geteuid() != 0:
        raise MultihomeError("multihome watch needs root (netlink changes, raw ICMP probes)")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    Watcher(config_path, metrics).run()
