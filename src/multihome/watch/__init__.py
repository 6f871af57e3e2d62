"""`multihome watch`: keep the plan applied while the host changes, health-check the uplinks'
gateways, and balance outgoing connections over the healthy ones.

One loop, one thread: rtnetlink multicast events (links, addresses, routes, rules) are
debounced and answered with a reconcile -- read, plan, diff, apply, through the same code
path as `multihome apply`, touching only multihome's objects. ICMP and ICMPv6 echo probes
(probes.py) leave each uplink from its own address and device to its gateway or the
configured targets; the health state machine (health.py), kept per uplink and IP version,
turns their results into up/down, and a change re-plans that family's balancing route at
once. When what happens is decided by scheduler.py; the status file, metrics and systemd
notification live in modules of their own.
"""

from __future__ import annotations

import gc
import os
import random
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from types import FrameType
from typing import Any

from multihome.core import model
from multihome.core.config import DEFAULT_PATH, Config
from multihome.core.health import ClassHealth, Kind, Link, UplinkHealth, observe
from multihome.core.model import Family, GatewayLayout, IPAddress
from multihome.core.records import asdict
from multihome.errors import MultihomeError
from multihome.host import configfile as config_file
from multihome.host import confirm, handoff, operations, state
from multihome.kernel import discover, echoes, namespace, nfnetlink
from multihome.kernel.reader import Decoded
from multihome.watch import gateway_usage, metrics
from multihome.watch.backoff import Backoff
from multihome.watch.deprecate import Deprecator
from multihome.watch.notify import Notify
from multihome.watch.probes import Probe, ProbeKind
from multihome.watch.scheduler import Action, Scheduler
from multihome.watch.status import Status, read_status, status_entry, write_status

__all__ = ["Watcher", "read_status", "watch"]

# rtnetlink multicast groups (<linux/rtnetlink.h>: RTNLGRP_*)
GROUPS = (1, 5, 7, 8, 9, 11, 19)  # link, ipv4 ifaddr/route/rule, ipv6 ifaddr/route/rule


def _log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())
    print(f"{stamp} multihome watch: {message}", flush=True)


ProbeKey = tuple[str, int]  # (uplink, IP version)
# what one probe is: its kind, source, targets, answers needed, the gateway it looks past
ProbeSpec = tuple[ProbeKind, IPAddress, tuple[IPAddress, ...], int, IPAddress | None]


def _label(key: ProbeKey) -> str:
    return f"{key[0]} IPv{key[1]}"


def _order(item: tuple[tuple[ProbeKey, Kind], object]) -> tuple[str, int, str]:
    """Probes in the order of their uplink, IP version and kind (gateway first)."""
    (name, version), kind = item[0]
    return name, version, kind.value


def _changes(number: int) -> str:
    return f"{number} change" + ("" if number == 1 else "s")


def _flush_uplink(name: str, mark: int, mask: int, why: str = "") -> None:
    """Delete one uplink's tracked connections (multihome's entries, by its mark) and log it.
    Runs on the gateway worker's thread."""
    try:
        count = gateway_usage.flush(mark, mask)
    except MultihomeError as error:
        _log(f"{name}: flushing its connections failed: {error.message}")
    else:
        _log(f"{name}: {why}{count} tracked connections flushed (mark 0x{mark:08x})")


def _forget_pairs(layout: GatewayLayout, name: str) -> None:
    try:
        gateway_usage.forget_pairs(layout, name)
    except MultihomeError as error:
        _log(f"{name}: forgetting its host pairs failed: {error.message}")


class Watcher:
    def __init__(self, config_path: str | None, metrics_address: str | None = None) -> None:
        self.config_path = config_path
        self.health_config = config_file.load(config_path).health
        self.netns_id = namespace.identity()
        self.health: dict[ProbeKey, UplinkHealth] = {}
        self.probes: dict[tuple[ProbeKey, Kind], Probe] = {}  # a gateway and a path probe
        self.status_written = 0.0
        self.status = Status()
        self.lock = threading.Lock()
        self.running = True
        self.hung_up = False  # a SIGHUP came: reconcile at the loop's next turn
        self.notify = Notify()
        self.metrics_address = metrics_address
        self.events = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.events.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.events.bind((0, sum(1 << (g - 1) for g in GROUPS)))
        self.events.setblocking(False)
        # nftables' changes (a port forward published, another mark user): a reconcile
        # follows them as it follows the routing's, not only the periodic one
        self.firewall_events = nfnetlink.subscribe()
        # The events of the last reconcile's own changes: they need no reconcile of their
        # own (each would read, plan and diff everything again, to find nothing to do).
        self.echoes: echoes.Echoes = {}
        self.names: dict[int, str] = {}
        self.layout: GatewayLayout | None = None  # gateway mode, from the last reconcile
        self.refused = ""  # the last mark overlap that kept the nftables table (logged once)
        self.gateway = gateway_usage.Worker(_log)  # flushes and counts, off this thread
        self.backoff = Backoff()
        # what the last reconcile's read decoded: the next decodes only what changed
        self.decoded = Decoded()
        # SIGUSR1: a request (apply, confirm) waits in its file; one may have come before
        # the loop ran (the placeholder handler of watch() kept it)
        self.requested = True
        # What the last reconcile applied; while a change handed over by `apply --confirm`
        # awaits confirmation, the deadline and the config to go back to; after a revert,
        # that config and the config file's signature (kept until the file changes).
        self.applied: Config | None = None
        self.guard: tuple[float, Config] | None = None
        self.pinned: tuple[Config, tuple[int, ...] | None] | None = None
        # RFC 8475: the dead uplinks' delegated prefixes deprecated by the RA daemon
        self.deprecator = Deprecator(_log, self.gateway.hand)

    def stop(self, signum: int, frame: FrameType | None) -> None:
        self.running = False

    def hangup(self, signum: int, frame: FrameType | None) -> None:
        """SIGHUP: reconcile at once, reading the config again (as every reconcile does);
        the health settings (interval, timeout) change with a restart. Logged by the loop,
        not here: a signal handler must not write to a stream it may have interrupted."""
        self.hung_up = True

    def woken(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True

    # -- reconcile ------------------------------------------------------------------------

    def down(self, version: int) -> frozenset[str]:
        """The uplinks whose probes in this IP version found them dead."""
        return frozenset(
            name for (name, v), h in self.health.items() if v == version and h.state is Link.DOWN
        )

    def reconcile(self, reason: str) -> operations.Outcome | None:
        """Apply the plan for the uplinks' health now; the outcome, None when it failed."""
        start = time.monotonic()
        outcome: operations.Outcome | None = None
        try:
            outcome = operations.reconcile(
                self.config_path, self.down(4), self.down(6), self._pinned(), self.decoded
            )
        except MultihomeError as error:
            self.echoes = {}
            self.status.errors += 1
            self.status.last_result = f"error: {error.message}"
            if self.backoff.failed(time.monotonic(), time.time(), error.message, random.random()):
                hint = f"; {error.hint}" if error.hint else ""
                _log(
                    f"reconcile ({reason}) failed: {error.message}{hint} (tried again with a"
                    " growing delay; logged again when the cause changes)"
                )
        else:
            failed = self.backoff.succeeded()
            if failed:
                _log(f"reconcile ({reason}) works again, after {_attempts(failed)} that failed")
            self.applied = outcome.config
            changes = outcome.changes
            self.names = {i.index: i.name for i in outcome.host.interfaces}
            self.echoes = echoes.echoes_of(
                (c.action is model.Action.ADD, c.obj)
                for c in changes
                if not isinstance(c.obj, model.Sysctl)
            )
            self.status.last_result = f"{reason}: {_changes(len(changes))}"
            if changes or outcome.table is not None:
                self.status.last_change = time.time()
                self.status.last_change_result = self.status.last_result
            if outcome.table_refused:  # the routing part went in; the table was kept
                self.status.errors += 1
                self.status.last_result = f"error: {outcome.table_refused}"
                if outcome.table_refused != self.refused:
                    _log(f"reconcile ({reason}): nftables table kept: {outcome.table_refused}")
            self.refused = outcome.table_refused
            if changes:
                elapsed = (time.monotonic() - start) * 1000
                _log(
                    f"reconcile ({reason}): {_changes(len(changes))} in {elapsed:.0f} ms: "
                    + "; ".join(c.describe() for c in changes[:6])
                    + (" ..." if len(changes) > 6 else "")
                )
            self._update_probes(outcome)
            if outcome.table is not None:
                self._flush_left(self.layout, outcome.desired.gateway)
            self.layout = outcome.desired.gateway
            self.gateway.use(self.layout)
            self.deprecator.update(
                outcome.config,
                outcome.desired,
                self.down(4),
                self.down(6),
                {name for name, version in self.health if version == 6},
            )
        self.status.reconciles += 1
        self.status.last_reconcile = time.time()
        self.status.failure = self.backoff.cause
        self.status.failing_since = self.backoff.since
        self.status.failures_in_a_row = self.backoff.failures
        self._write_status()
        return outcome

    # -- one owner: requests handed over by apply, and the changes it guards --------------

    def _pinned(self) -> Config | None:
        """The config a revert went back to, while the config file is as it was then."""
        if self.pinned is None:
            return None
        config, signature = self.pinned
        if _signature(self.config_path) != signature:
            self.pinned = None
            _log("the config file changed: the configuration of the last revert is let go")
            return None
        return config

    def _serve_request(self) -> None:
        request = handoff.take_request(self.netns_id)
        if request is None:
            return
        mine = os.path.abspath(self.config_path or DEFAULT_PATH)
        seconds = request.get("confirm")
        error = ""
        if request.get("action") != "apply":
            error = f"it does not take the request {request.get('action')!r}"
        elif request.get("config") != mine:
            error = (
                f"it applies {mine or 'the default config'}, not"
                f" {request.get('config') or 'the default config'}"
            )
        elif seconds is not None and self.guard is not None:
            error = "a change it guards is already awaiting confirmation"
        elif seconds is not None and self.applied is None:
            error = "it has not applied a configuration yet: nothing to go back to"
        if error:
            handoff.answer(self.netns_id, request, {"error": error})
            return
        previous = self.applied
        self.pinned = None  # apply: the config file as it is now
        outcome = self.reconcile("apply" + (" --confirm" if seconds is not None else ""))
        if outcome is None:
            handoff.answer(self.netns_id, request, {"error": self.status.last_result})
            return
        lines = [c.describe() for c in outcome.changes]
        if outcome.table is not None:
            lines.append(outcome.table.describe())
        if seconds is not None and lines and previous is not None:
            deadline = time.monotonic() + float(seconds)
            confirm.publish(self.netns_id, deadline, confirm.BY_WATCH)
            self.guard = (deadline, previous)
            _log(f"the change is reverted in {float(seconds):g} s unless `multihome confirm`")
        handoff.answer(self.netns_id, request, {"changes": lines})

    def _check_guard(self, now: float) -> None:
        """A change awaiting confirmation: kept when confirmed, reverted at the deadline
        (or at once when the answer was `no`), by a reconcile with the config from before."""
        if self.guard is None:
            return
        deadline, previous = self.guard
        answer = confirm.answer(self.netns_id)
        if answer == confirm.KEEP:
            self.guard = None
            confirm.settle(self.netns_id, {"outcome": "kept"})
            _log("the change was confirmed: it is kept")
            return
        if answer is None and now < deadline:
            return
        self.guard = None
        self.pinned = (previous, _signature(self.config_path))
        outcome = self.reconcile("revert of an unconfirmed change")
        if outcome is None:
            result = {"outcome": "revert failed", "error": self.status.last_result}
        else:
            result = {"outcome": "reverted"}
            _log(
                "the change was not confirmed: reverted (the configuration from before is"
                " kept until the config file changes)"
            )
        confirm.settle(self.netns_id, result)

    def _wait(self, timers: Scheduler, now: float, deadline: float | None) -> float:
        """Seconds until the scheduler, a probe round's end (`deadline`), a retry or a
        confirmation deadline is due."""
        wait = timers.wait(now, deadline)
        if self.backoff.retry_at is not None:
            wait = min(wait, max(0.0, self.backoff.retry_at - now))
        if self.guard is not None:
            wait = min(wait, max(0.0, self.guard[0] - now))
        return wait

    def _probe_specs(self, outcome: operations.Outcome) -> dict[tuple[ProbeKey, Kind], ProbeSpec]:
        """Per uplink and IP version, from its first global address of that version: fast
        probes to its gateway, and slower ones past it: to the configured targets (`probe`,
        `probe6`, with a quorum), else to the second hop (found toward [health] trace)."""
        cfg = self.health_config
        specs: dict[tuple[ProbeKey, Kind], ProbeSpec] = {}
        configured = {u.name: u for u in outcome.config.uplinks}
        targeted = any(u.probe or u.probe6 for u in configured.values())
        # (each reconcile: the host's addresses indexed only when a target could be one)
        local = {a.ip.ip for a in outcome.host.addresses} if targeted else set()
        for uplink in outcome.desired.uplinks:
            for family in (Family.INET, Family.INET6):
                version = family.version
                # the first one only: an uplink may have thousands (not a list of them all)
                source = next(
                    (
                        a.ip.ip
                        for a in uplink.addresses_in(family)
                        if not (version == 6 and a.ip.ip.is_link_local)
                    ),
                    None,
                )
                if source is None:
                    continue
                key = (uplink.name, version)
                gateway = uplink.gateway(family)
                own = configured.get(uplink.name)
                targets = tuple(  # not the host's own addresses (plan notes them)
                    t for t in ((own.probe if version == 4 else own.probe6) if own else ())
                    if t not in local
                )
                if gateway is not None:
                    specs[key, Kind.GATEWAY] = (ProbeKind.GATEWAY, source, (gateway,), 1, None)
                if targets:
                    reliability = own.reliability if own and own.reliability else None
                    needed = min(reliability or (len(targets) + 1) // 2, len(targets))
                    specs[key, Kind.PATH] = (ProbeKind.TARGETS, source, targets, needed, None)
                elif gateway is not None and cfg.second_hop:
                    trace = cfg.trace if version == 4 else cfg.trace6
                    specs[key, Kind.PATH] = (ProbeKind.SECOND_HOP, source, (trace,), 1, gateway)
        return specs

    def _update_probes(self, outcome: operations.Outcome) -> None:
        """Open the probes the plan's uplinks need, close those it no longer has."""
        specs = self._probe_specs(outcome)
        for pkey in list(self.probes):
            probe = self.probes[pkey]
            spec = (probe.kind, probe.source, probe.targets, probe.needed, probe.gateway)
            if specs.get(pkey) != spec:
                probe.close()
                del self.probes[pkey]
        cfg = self.health_config
        for pkey, (kind, source, to, needed, gateway) in sorted(specs.items(), key=_order):
            key, health_kind = pkey
            if pkey in self.probes:
                continue
            timeout = cfg.timeout if health_kind is Kind.GATEWAY else cfg.path_timeout
            try:
                self.probes[pkey] = Probe.open(key[0], kind, source, to, timeout, needed, gateway)
            except OSError as error:
                _log(f"{_label(key)}: cannot probe from {source}: {error.strerror}")
                continue
            # configured targets count from the start; the second hop once it has answered
            armed = (key, Kind.PATH) in specs and specs[key, Kind.PATH][0] is ProbeKind.TARGETS
            self.health.setdefault(
                key, UplinkHealth(since=time.time(), path=ClassHealth(armed=armed))
            )
        for key in list(self.health):
            if not any(pkey[0] == key for pkey in specs):
                del self.health[key]

    # -- status ---------------------------------------------------------------------------

    def _write_status(self) -> None:
        with self.lock:
            uplinks: dict[str, dict[str, Any]] = {}
            for (name, version), h in sorted(self.health.items()):
                fast = self.probes.get(((name, version), Kind.GATEWAY))
                path = self.probes.get(((name, version), Kind.PATH))
                uplinks.setdefault(name, {})[f"ipv{version}"] = status_entry(
                    h,
                    [str(t) for t in fast.targets] if fast else [],
                    path.description if path else "",
                )
            # gateway mode forwards (and NATs) IPv4: its connections count there
            for name, used in self.gateway.usage().items():
                if "ipv4" in uplinks.get(name, {}):
                    uplinks[name]["ipv4"].update(used)
            self.status.uplinks = uplinks
            data = asdict(self.status)
        try:
            write_status(self.netns_id, data)
        except MultihomeError as error:  # the routing is kept right; only `status` lags
            _log(f"cannot write the status file: {error.message}")

    def metrics_text(self) -> str:
        with self.lock:
            status = asdict(self.status)
        return metrics.metrics_text(status, discover.read_counters())

    # -- the loop -------------------------------------------------------------------------

    def _drain_events(self) -> bool:
        """Whether events came that are not the echoes of the last reconcile's changes."""
        return _news(
            self.events, lambda data: not echoes.only_echoes(data, self.echoes, self.names)
        )

    def _drain_firewall_events(self) -> bool:
        """Whether nftables said a table, chain or rule of another's changed."""
        assert self.firewall_events is not None
        return _news(self.firewall_events, nfnetlink.foreign_change)

    def run(self) -> None:
        # A signal's handler only sets a flag; the byte the wakeup fd gets ends the select
        # at once (Python would restart it with the time left).
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGHUP, self.hangup)
        signal.signal(handoff.WAKE, self.woken)
        self.gateway.start()
        try:
            self._loop(wake_r)
        finally:
            self.gateway.stop()
            signal.set_wakeup_fd(-1)
            wake_r.close()
            wake_w.close()

    def _loop(self, wake: socket.socket) -> None:
        if self.metrics_address:
            _log(f"metrics on {metrics.serve(self.metrics_address, self.metrics_text)}")
        self.reconcile("start")
        self.notify.send("READY=1")
        _log(
            f"watching (pid {os.getpid()}); uplinks probed: "
            + (
                ", ".join(
                    f"{_label(key)} ({probe.kind.value} {probe.description})"
                    for (key, _), probe in sorted(self.probes.items(), key=_order)
                )
                or "none"
            )
        )
        cfg = self.health_config
        timers = Scheduler.start(time.monotonic(), cfg.interval, cfg.path_interval, random.Random())
        while self.running:
            sockets: list[Any] = [self.events, wake, *(p.sock for p in self.probes.values())]
            if self.firewall_events is not None:
                sockets.append(self.firewall_events)
            deadline = min(
                (d for p in self.probes.values() if (d := p.next_deadline()) is not None),
                default=None,
            )
            try:
                ready, _, _ = select.select(
                    sockets, [], [], self._wait(timers, time.monotonic(), deadline)
                )
            except InterruptedError:
                continue
            now = time.monotonic()
            self.notify.tick(now)
            if wake in ready:
                _drain(wake)
            if self.hung_up:
                self.hung_up = False
                self.pinned = None  # the config as it is on disk, also after a revert
                _log("SIGHUP: reconciling now with the config as it is on disk")
                self.reconcile("SIGHUP")
            if self.requested:
                self.requested = False
                self._serve_request()
            self._check_guard(now)
            # after a failure, events (its own undo among them) wait for the retry, which
            # reads everything anyway
            if self.events in ready and self._drain_events() and not self.backoff.waiting(now):
                timers.event(now)
            if (
                self.firewall_events in ready
                and self._drain_firewall_events()
                and not self.backoff.waiting(now)
            ):
                timers.firewall_event()
            if self.backoff.due(now):
                self.reconcile("retry")
                timers.reconciled()
            for probe in self.probes.values():
                if probe.sock in ready:
                    probe.receive()
            before = self.down(4)
            if self._evaluate_rounds(now):
                self.reconcile("health")
                timers.reconciled()
                self._flush(self.down(4) - before)
            for action in timers.due(now):
                if action in (Action.SEND_ROUND, Action.SEND_PATH_ROUND):
                    kind = Kind.GATEWAY if action is Action.SEND_ROUND else Kind.PATH
                    for (_, probe_kind), probe in self.probes.items():
                        if probe_kind is kind:
                            probe.send(now)
                elif action is Action.RECONCILE_EVENTS:
                    self.reconcile("event")
                elif not self.backoff.waiting(now):
                    self.reconcile("periodic")
        if self.guard is not None:
            self.guard = None
            confirm.settle(
                self.netns_id,
                {
                    "outcome": "unguarded",
                    "error": "multihome watch stopped before the deadline: the change"
                    " stays applied and was NOT reverted",
                },
            )
        self.deprecator.stop()
        for probe in self.probes.values():
            probe.close()
        self.events.close()
        if self.firewall_events is not None:
            self.firewall_events.close()
        _log("stopped")

    def _flush_left(self, before: GatewayLayout | None, after: GatewayLayout | None) -> None:
        """Uplinks that left the table (their link or default route went away): their marks
        have no restore rule and no fwmark rule any more, so with flush_on_down their
        connections go at once, and clients reconnect through the uplinks that are left."""
        if before is None or after is None or not before.flush_on_down:
            return  # no table any more ([gateway] removed): nothing is flushed by surprise
        kept = {name for name, _ in after.marks}
        for name, mark in before.marks:
            if name in kept:
                continue
            mask = before.mask
            self.gateway.hand(partial(_flush_uplink, name, mark, mask, "left the table, "))

    def _flush(self, died: frozenset[str]) -> None:
        """Gateway mode with flush_on_down: delete the dead uplinks' connections (only
        multihome's entries, by mark), after the balancing route has left them, so that
        clients reconnect through a healthy uplink at once instead of hanging."""
        layout = self.layout
        if layout is None:
            return
        for name in sorted(died):
            self.gateway.hand(partial(_forget_pairs, layout, name))
            mark = layout.mark_of(name)
            if mark is None or not layout.flush_on_down:
                continue
            self.gateway.hand(partial(_flush_uplink, name, mark, layout.mask))

    def _evaluate_rounds(self, now: float) -> bool:
        """Feed the finished probe rounds to the health state machines; whether an uplink
        changed state (up or down)."""
        changed = False
        for (key, kind), probe in self.probes.items():
            for answered, rtt in probe.finished(now):
                before = self.health.get(key, UplinkHealth(since=time.time()))
                after = observe(before, answered, rtt, time.time(), self.health_config, kind)
                self.health[key] = after
                if after.state is not before.state:
                    changed = True
                    why = f" (probes to {probe.description} lost)" if not answered else ""
                    _log(f"{_label(key)}: {before.state.value} -> {after.state.value}{why}")
        if changed or now - self.status_written >= 1.0:
            self.status_written = now
            self._write_status()
        return changed


def _news(sock: Any, is_news: Callable[[bytes], bool]) -> bool:
    """Read every datagram waiting on a netlink socket; whether one of them `is_news`
    (ENOBUFS, events lost, is: a reconcile catches up)."""
    news = False
    while True:
        try:
            data = sock.recv(1 << 16)
        except BlockingIOError:
            return news
        except OSError:
            return True
        if not data:
            return news
        news = is_news(data) or news


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(4096):
            pass
    except BlockingIOError:
        pass


def _attempts(number: int) -> str:
    return f"{number} attempt" + ("" if number == 1 else "s")


def _signature(config_path: str | None) -> tuple[int, ...] | None:
    """Which config file is there now (inode, size, modification time); None: none."""
    try:
        found = os.stat(config_path or DEFAULT_PATH)
    except OSError:
        return None
    return (found.st_ino, found.st_size, found.st_mtime_ns)


def watch(config_path: str | None, metrics_address: str | None) -> None:
    if os.geteuid() != 0:
        raise MultihomeError("multihome watch needs root (netlink changes, raw ICMP probes)")
    netns_id = namespace.identity()
    # a request's SIGUSR1 may come as soon as the lock is held: harmless until the loop
    # runs (which looks for a request first), instead of the default, which terminates
    signal.signal(handoff.WAKE, lambda signum, frame: None)
    # one owner of the routing at a time: held for the daemon's life, released by its end
    held = state.wait_free(netns_id, state.WATCH_LOCK, 0.5, handoff.WATCH)
    if held is None:
        pid = state.holder(netns_id, state.WATCH_LOCK) or 0
        raise MultihomeError(
            f"another multihome (pid {pid or '?'}) owns this namespace's routing: a watch,"
            " or a remove that stopped one",
            hint=handoff.how_to_stop(pid),
        )
    try:
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        _collect_less()
        Watcher(config_path, metrics_address).run()
    finally:
        held.release()


# A reconcile at 1,000 addresses makes and drops tens of thousands of objects, all but a
# few dozen (the json encoder's closures, ~2 kB) freed by their reference counts: with the
# default threshold (700), the cyclic collector ran four times per address event (~1 ms
# of CPU) for those. Now it runs every few hundred events. What the daemon loaded at
# start-up (modules, classes) lives as long as it does: frozen, no collection walks it.
GC_THRESHOLD = (20_000, 10, 10)


def _collect_less() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
