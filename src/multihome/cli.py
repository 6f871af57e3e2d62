"""The `multihome` command: argument parsing and printing only; the work is in operations.py.

Exit codes: 0 ok; 1 changes pending (plan --check); 2 bad input or failure.
"""

from __future__ import annotations

import argparse
import enum
import ipaddress
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, is_dataclass
from typing import Any

from multihome import PROTOCOL, __version__, discover, files, namespace, operations
from multihome.config import DEFAULT_PATH
from multihome.errors import MultihomeError
from multihome.lab import MAX_NICS, SCENARIO_NAMES
from multihome.lab.units import parse_rate, parse_size
from multihome.model import TABLE_MAIN, Change, Counters, Desired, HostState, Route, Rule
from multihome.plan import is_candidate
from multihome.render import ip as render_ip
from multihome.render import registry

EXIT_OK, EXIT_PENDING, EXIT_ERROR = 0, 1, 2
DEFAULT_CONFIRM = 30.0


def _plain(value: Any) -> Any:
    """JSON-ready form of model objects."""
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, enum.IntEnum):
        return int(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(
        value,
        ipaddress.IPv4Address
        | ipaddress.IPv6Address
        | ipaddress.IPv4Network
        | ipaddress.IPv6Network
        | ipaddress.IPv4Interface
        | ipaddress.IPv6Interface,
    ):
        return str(value)
    return value


def _print_json(data: Any) -> None:
    print(json.dumps(_plain(data), indent=2))


def _change_json(change: Change) -> dict[str, Any]:
    obj = change.obj
    kind = "sysctl" if not isinstance(obj, Rule | Route) else type(obj).__name__.lower()
    return {
        "action": change.action.value,
        "kind": kind,
        "object": _plain(obj),
        "previous": change.previous,
        "command": render_ip.command(change),
    }


def _table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _uplink_rows(desired: Desired) -> list[list[str]]:
    rows = [["UPLINK", "TABLE", "ADDRESSES", "IPv4 GATEWAY", "IPv6 GATEWAY"]]
    for u in desired.uplinks:
        rows.append(
            [
                u.name,
                str(u.table),
                ", ".join(str(a.ip) for a in u.addresses),
                f"{u.gateway4} ({u.source4.value})" if u.gateway4 else "-",
                f"{u.gateway6} ({u.source6.value})" if u.gateway6 else "-",
            ]
        )
    return rows


def _show_text(host: HostState, desired: Desired) -> list[str]:
    own = desired.ownership
    lines = [f"network namespace {host.netns_id}", "", "Interfaces"]
    rows = [["NAME", "STATE", "ROLE", "ADDRESSES"]]
    for i in host.interfaces:
        role = (
            "loopback"
            if i.loopback
            else f"port of ifindex {i.master}"
            if i.master
            else "candidate"
            if is_candidate(i)
            else "-"
        )
        addresses = ", ".join(str(a.ip) for a in host.addresses_of(i.name)) or "-"
        rows.append([i.name, "up" if i.up else "down", role, addresses])
    lines += _table(rows)
    lines += ["", "Default routes in main"]
    defaults = [r for r in host.routes if r.table == TABLE_MAIN and r.is_default]
    lines += [f"  -{r.family.version} {r.ip_args()}" for r in defaults] or ["  (none)"]
    lines += ["", "Uplinks (planned)"]
    lines += _table(_uplink_rows(desired)) if desired.uplinks else ["  (none)"]
    lines += ["", "Policy rules (* = multihome's)"]
    for r in sorted(host.rules, key=lambda r: (r.family, r.priority)):
        mark = "*" if own.owns_rule(r) else " "
        lines.append(f" {mark}-{r.family.version} {r.ip_args()}")
    _, owned_routes = own.owned(host)
    tables = sorted({r.table for r in owned_routes})
    lines += ["", f"Tables owned by multihome (protocol {own.protocol})"]
    if not tables:
        lines.append("  (none)")
    for table in tables:
        lines.append(f"  table {table}")
        lines += [
            f"    -{r.family.version} {r.ip_args()}" for r in owned_routes if r.table == table
        ]
    if desired.notes:
        lines += ["", "Notes"] + [f"  {n}" for n in desired.notes]
    return lines


def cmd_show(args: argparse.Namespace) -> int:
    outcome = operations.preview(args.config)
    host, desired = outcome.host, outcome.desired
    own = desired.ownership
    if args.json:
        _print_json(
            {
                "netns_id": host.netns_id,
                "interfaces": [
                    {**_plain(i), "addresses": [str(a.ip) for a in host.addresses_of(i.name)]}
                    for i in host.interfaces
                ],
                "default_routes": [
                    r for r in host.routes if r.table == TABLE_MAIN and r.is_default
                ],
                "uplinks": desired.uplinks,
                "rules": [{**_plain(r), "owned": own.owns_rule(r)} for r in host.rules],
                "owned_routes": own.owned(host)[1],
                "notes": desired.notes,
            }
        )
    else:
        print("\n".join(_show_text(host, desired)))
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    outcome = operations.preview(args.config)
    changes = list(outcome.changes)
    if args.json:
        _print_json(
            {
                "uplinks": outcome.desired.uplinks,
                "changes": [_change_json(c) for c in changes],
                "notes": outcome.desired.notes,
            }
        )
    elif args.format == "ip":
        print("\n".join(render_ip.commands(changes)) if changes else "# no changes")
    else:
        if outcome.desired.uplinks:
            print("\n".join(_table(_uplink_rows(outcome.desired), indent="")))
            print()
        for note in outcome.desired.notes:
            print(f"note: {note}")
        if changes:
            print(f"{len(changes)} changes pending:")
            print("\n".join(f"  {c.describe()}" for c in changes))
        else:
            print("no changes: the kernel already matches the plan")
    return EXIT_PENDING if args.check and changes else EXIT_OK


def _report(outcome: operations.Outcome, args: argparse.Namespace, verb: str) -> int:
    changes = list(outcome.changes)
    if args.json:
        _print_json(
            {
                "changed": bool(changes),
                "changes": [_change_json(c) for c in changes],
                "uplinks": outcome.desired.uplinks,
                "notes": outcome.desired.notes,
                "warnings": outcome.warnings,
            }
        )
        return EXIT_OK
    for note in outcome.desired.notes:
        print(f"note: {note}")
    for warning in outcome.warnings:
        print(f"multihome: warning: {warning}", file=sys.stderr)
    if not changes:
        print(f"{verb}: nothing to do, the kernel already matches")
        return EXIT_OK
    for change in changes:
        print(f"  {change.describe()}")
    print(f"{verb}: {len(changes)} changes made")
    return EXIT_OK


def _ask_to_keep(seconds: float) -> None:
    """On a terminal, ask; a 'yes' confirms, anything else leaves the revert to the guardian."""
    import select

    deadline = time.monotonic() + seconds
    sys.stdout.write(f"Keep the new routing? Type 'yes' within {seconds:.0f} s: ")
    sys.stdout.flush()
    ready, _, _ = select.select([sys.stdin], [], [], max(0.0, deadline - time.monotonic()))
    answer = sys.stdin.readline().strip().lower() if ready else ""
    if answer in ("y", "yes"):
        print(_confirmation_text(operations.confirm_pending()))
    else:
        print("\nnot confirmed: the change is reverted at the deadline")


def _confirmation_text(outcome: str) -> str:
    return {
        "kept": "confirmed: the change is kept",
        "reverted": "too late: the change was already reverted",
        "nothing pending": "nothing awaits confirmation",
    }.get(outcome, f"the guardian reported: {outcome}")


def _converge(args: argparse.Namespace, verb: str) -> int:
    if args.confirm is not None and not 1 <= args.confirm <= 86400:
        raise MultihomeError(f"--confirm takes 1-86400 seconds, not {args.confirm:g}")
    handler = operations.apply if verb == "apply" else operations.remove
    outcome = handler(args.config, args.confirm)
    code = _report(outcome, args, verb)
    if args.confirm is not None and outcome.changes:
        note = (
            f"run `multihome{' --netns ' + args.netns if args.netns else ''} confirm` within"
            f" {args.confirm:g} s, or the change is reverted"
        )
        print(note, file=sys.stderr if args.json else sys.stdout)
        if sys.stdin.isatty() and not args.json:
            _ask_to_keep(args.confirm)
    return code


def cmd_apply(args: argparse.Namespace) -> int:
    return _converge(args, "apply")


def cmd_remove(args: argparse.Namespace) -> int:
    return _converge(args, "remove")


def cmd_export(args: argparse.Namespace) -> int:
    overrides = {}
    for item in args.network_file:
        name, _, file = item.partition("=")
        if not name or not file.endswith(".network") or "/" in file:
            raise MultihomeError(
                f"--network-file takes IFACE=NAME.network, not {item!r}",
                hint="e.g. --network-file eth0=10-netplan-eth0.network",
            )
        overrides[name] = file
    rendered = operations.export(args.config, args.format, overrides, _executable())
    written = files.write_tree(args.output, rendered.files) if args.output else []
    if args.json:
        _print_json(
            {
                "format": args.format,
                "files": rendered.files,
                "written": written,
                "notes": rendered.notes,
            }
        )
        return EXIT_OK
    for note in rendered.notes:
        print(f"note: {note}", file=sys.stderr)
    if written:
        print("\n".join(f"wrote {path}" for path in written))
    else:
        for path, text in sorted(rendered.files.items()):
            print(f"# ==> {path} <==\n{text}")
    return EXIT_OK


def _executable() -> str:
    """The multihome that is running (units written by install must run this one, not
    another on PATH); for `python -m multihome`, the one on PATH."""
    import shutil

    running = os.path.abspath(sys.argv[0])
    if os.path.basename(running) == "multihome" and os.access(running, os.X_OK):
        return running
    return shutil.which("multihome") or running


def cmd_install(args: argparse.Namespace) -> int:
    done = operations.install_files(args.config, args.format, args.root, _executable())
    if args.json:
        _print_json(done)
        return EXIT_OK
    print(f"install: {', '.join(done.formats)} ({'; '.join(done.reasons)})")
    for path in done.backups:
        print(f"  kept aside {path}")
    for path in done.written:
        print(f"  wrote {path}")
    for path in done.removed:
        print(f"  removed {path} (from an earlier install)")
    for note in done.notes:
        print(f"note: {note}")
    return EXIT_OK


def cmd_uninstall(args: argparse.Namespace) -> int:
    from multihome import install as install_module

    removed = install_module.uninstall(args.root)
    if args.json:
        _print_json({"removed": removed})
    elif removed:
        print("\n".join(f"  removed {path}" for path in removed))
        print(f"uninstall: {len(removed)} files removed")
    else:
        print("uninstall: nothing installed")
    return EXIT_OK


def cmd_watch(args: argparse.Namespace) -> int:
    from multihome import watch as watch_module

    watch_module.watch(args.config, args.metrics)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from multihome import watch as watch_module

    status = watch_module.read_status(namespace.identity())
    if status is None:
        raise MultihomeError(
            "multihome watch has not run in this namespace",
            hint="start it: multihome watch (or systemctl start multihome-watch)",
        )
    if args.json:
        _print_json(status)
        return EXIT_OK
    state = "running" if status["running"] else "NOT running (last status below)"
    print(f"multihome watch: {state}, pid {status['pid']}")
    rows = [["UPLINK", "STATE", "SINCE", "LAST RTT", "LOSS", "PROBES TO"]]
    for name, uplink in status["uplinks"].items():
        since = time.strftime("%H:%M:%S", time.localtime(uplink["since"]))
        rtt = f"{uplink['last_rtt_ms']:.2f} ms" if uplink["last_rtt_ms"] is not None else "-"
        rows.append(
            [
                name,
                uplink["state"],
                since,
                rtt,
                f"{uplink['loss']:.1%}",
                ", ".join(uplink["targets"]),
            ]
        )
    print("\n".join(_table(rows, indent="")) if len(rows) > 1 else "no uplinks probed")
    last = status["last_reconcile"]
    when = time.strftime("%H:%M:%S", time.localtime(last)) if last else "never"
    print(
        f"last reconcile: {when} ({status['last_result']}); {status['reconciles']} in all,"
        f" {status['errors']} failed"
    )
    return EXIT_OK


def cmd_confirm(args: argparse.Namespace) -> int:
    outcome = operations.confirm_pending()
    if args.json:
        _print_json({"outcome": outcome})
    else:
        print(_confirmation_text(outcome))
    return EXIT_ERROR if outcome not in ("kept", "nothing pending") else EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    report = operations.diagnose(args.config)
    if args.json:
        _print_json(
            {
                "errors": report.errors,
                "findings": [_plain(f) for f in report.findings],
                "notes": report.notes,
            }
        )
        return EXIT_PENDING if report.errors else EXIT_OK
    for note in report.notes:
        print(note)
    if not report.findings and not report.notes:
        print("no problems found: every address replies through its own interface")
    for finding in report.findings:
        print(f"{finding.severity.value.upper():8}{finding.check}: {finding.summary}")
        for line in finding.evidence:
            print(f"{'':8}evidence: {line}")
        if finding.consequence:
            print(f"{'':8}consequence: {finding.consequence}")
        if finding.fix:
            print(f"{'':8}fix: {finding.fix}")
        print()
    if report.findings:
        warnings = len(report.findings) - report.errors
        print(f"{_count(report.errors, 'error')}, {_count(warnings, 'warning')}")
    return EXIT_PENDING if report.errors else EXIT_OK


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _counter_rows(counters: dict[str, Counters], seconds: float | None) -> list[dict[str, Any]]:
    tx = sum(c.tx_packets for c in counters.values())
    rx = sum(c.rx_packets for c in counters.values())
    rows = []
    for name, c in counters.items():
        row: dict[str, Any] = {
            "interface": name,
            "rx_packets": c.rx_packets,
            "tx_packets": c.tx_packets,
            "rx_bytes": c.rx_bytes,
            "tx_bytes": c.tx_bytes,
            "tx_share": round(c.tx_packets / tx, 6) if tx else 0.0,
            "rx_share": round(c.rx_packets / rx, 6) if rx else 0.0,
        }
        if seconds:
            row.update(
                rx_pps=round(c.rx_packets / seconds, 1),
                tx_pps=round(c.tx_packets / seconds, 1),
                rx_mbps=round(c.rx_bytes * 8 / seconds / 1e6, 3),
                tx_mbps=round(c.tx_bytes * 8 / seconds / 1e6, 3),
            )
        rows.append(row)
    return rows


def _counter_table(rows: list[dict[str, Any]], rates: bool) -> list[str]:
    if rates:
        header = ["IFACE", "RX pkt/s", "TX pkt/s", "RX Mbit/s", "TX Mbit/s", "TX share", "RX share"]
        keys = ["rx_pps", "tx_pps", "rx_mbps", "tx_mbps"]
    else:
        header = [
            "IFACE",
            "RX packets",
            "TX packets",
            "RX bytes",
            "TX bytes",
            "TX share",
            "RX share",
        ]
        keys = ["rx_packets", "tx_packets", "rx_bytes", "tx_bytes"]
    table = [header]
    for row in rows:
        table.append(
            [
                row["interface"],
                *(f"{row[k]:,}" for k in keys),
                f"{row['tx_share']:.1%}",
                f"{row['rx_share']:.1%}",
            ]
        )
    return _table(table, indent="")


def cmd_counters(args: argparse.Namespace) -> int:
    def read() -> dict[str, Counters]:
        return {n: c for n, c in discover.read_counters().items() if n != "lo"}

    if args.watch is None:
        counters = read()
        rows = _counter_rows(counters, None)
        if args.json:
            _print_json({"interfaces": rows})
        elif args.format == "ifconfig":
            print("\n".join(_ifconfig(counters)))
        else:
            print("\n".join(_counter_table(rows, rates=False)))
        return EXIT_OK
    if args.watch <= 0:
        raise MultihomeError("--watch takes a positive number of seconds")
    live = sys.stdout.isatty() and not args.json
    previous, then = read(), time.monotonic()
    printed = 0
    for _ in range(args.count) if args.count else iter(int, 1):
        time.sleep(args.watch)
        current, now = read(), time.monotonic()
        delta = {n: c - previous[n] for n, c in current.items() if n in previous}
        rows = _counter_rows(delta, now - then)
        previous, then = current, now
        if not live:
            print(
                json.dumps(
                    {"time": round(time.time(), 3), "interval": args.watch, "interfaces": rows}
                ),
                flush=True,
            )
            continue
        lines = _counter_table(rows, rates=True)
        if printed:
            sys.stdout.write(f"\x1b[{printed}F\x1b[J")  # back to the table's first line
        print("\n".join(lines), flush=True)
        printed = len(lines)
    return EXIT_OK


def _ifconfig(counters: dict[str, Counters]) -> list[str]:
    from multihome.lab.report import ifconfig_counters

    lines = []
    for name, c in counters.items():
        lines += [f"{name}:", *ifconfig_counters(c), ""]
    return lines


class ProgressBar:
    """One line per phase on a terminal: [#####.....] 12000/20000 requests."""

    def __init__(self) -> None:
        self.phase = ""

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase != self.phase:
            if self.phase:
                sys.stderr.write("\n")
            self.phase = phase
        filled = int(30 * done / total) if total else 30
        bar = "#" * filled + "." * (30 - filled)
        sys.stderr.write(f"\r{phase:>11} [{bar}] {done}/{total} requests")
        if done >= total:
            sys.stderr.write("\n")
            self.phase = ""
        sys.stderr.flush()


PHASE_TITLES = {
    "destination": "phase destination: stock routing (by destination only)",
    "policy": "phase policy: after `multihome apply` in the server namespace",
}


def _lab_options(args: argparse.Namespace) -> Any:
    try:
        size = parse_size(args.size)
        rate = parse_rate(args.link_rate) if args.link_rate else None
    except ValueError as error:
        raise MultihomeError(str(error)) from None
    if not 2 <= args.nics <= MAX_NICS:
        raise MultihomeError(f"--nics must be 2-{MAX_NICS}, not {args.nics}")
    if args.requests < 1 or args.concurrency < 1 or size < 1:
        raise MultihomeError("--requests, --concurrency and --size must be positive")
    from multihome.lab.run import LabOptions

    return LabOptions(
        scenario=args.scenario,
        nics=args.nics,
        size=size,
        requests=args.requests,
        concurrency=args.concurrency,
        link_rate_bps=rate,
        keep=args.keep,
    )


def cmd_lab(args: argparse.Namespace) -> int:
    # The lab needs pyroute2 and more; other commands should not pay for importing it.
    from multihome.lab import plot as lab_plot
    from multihome.lab import report as lab_report
    from multihome.lab import run as lab_run

    if args.netns:
        raise MultihomeError("the lab builds its own namespaces; --netns does not apply")
    if args.scenario == "clean":
        removed = lab_run.clean()
        if args.json:
            _print_json({"removed": removed})
        else:
            print(f"removed {len(removed)} lab namespaces" + (": " if removed else ""))
            print("\n".join(f"  {name}" for name in removed)) if removed else None
        return EXIT_OK
    options = _lab_options(args)
    interactive = sys.stderr.isatty() and not args.json

    def quiet(phase: str, done: int, total: int) -> None:
        return None

    result, kept = lab_run.run(options, ProgressBar() if interactive else quiet)
    if args.plot:
        lab_plot.write_png(result, args.plot)
    if args.json:
        _print_json(lab_report.to_json(result))
    else:
        rate = (
            f", tbf {options.link_rate_bps / 1e6:g} Mbit/s per NIC" if options.link_rate_bps else ""
        )
        print(
            f"multihome lab {options.scenario}: {options.nics} server NICs, "
            f"{options.requests} requests of {options.size} bytes, "
            f"{options.concurrency} in parallel{rate}"
        )
        for phase in result.phases:
            print(f"\n== {PHASE_TITLES[phase.name]}\n")
            print("\n".join(lab_report.listing(phase)))
        print("== summary (share of the server's packets per NIC)\n")
        print("\n".join(lab_report.summary(result)))
        if args.plot:
            print(f"\nplot written to {args.plot}")
    if kept is not None:
        print(
            f"\nthe network is still up (--keep); enter the server with\n"
            f"  ip netns exec {kept.ns('server')} bash\n"
            f"namespaces: {' '.join(kept.ns(h) for h in kept.topology.hosts)}\n"
            "remove it with: multihome lab clean",
            file=sys.stderr if args.json else sys.stdout,
        )
    return EXIT_OK


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str, str]] = {
    "show": (
        cmd_show,
        "interfaces, addresses, gateways, rules and owned tables",
        "Show the interfaces and their addresses, the default routes in main, the uplinks "
        "multihome detects (or reads from the config), every policy rule (multihome's "
        "marked *) and the tables multihome owns. Reads only.",
    ),
    "plan": (
        cmd_plan,
        "the changes `apply` would make",
        "Print the changes `apply` would make, as a diff (+ add, - delete, ~ sysctl), or "
        "with --format ip as the equivalent ip/sysctl commands. Reads only.",
    ),
    "apply": (
        cmd_apply,
        "make the kernel match the plan (idempotent, all or nothing)",
        "Create the per-uplink tables and source rules and set the ARP sysctls. Touches only "
        f"objects with multihome's protocol number ({PROTOCOL}); if the kernel refuses any "
        "change, every change already made is undone. A second run changes nothing.",
    ),
    "remove": (
        cmd_remove,
        "remove everything multihome created, restore sysctls",
        "Delete every rule and route multihome owns in this namespace and put back the "
        "sysctl values it replaced. Foreign rules and routes are never touched.",
    ),
    "confirm": (
        cmd_confirm,
        "keep a change made with --confirm",
        "Keep the change that `apply --confirm` or `remove --confirm` made in this namespace; "
        "without it the change is reverted when the time is up.",
    ),
    "export": (
        cmd_export,
        "render the plan for a network stack, to keep it across reboots",
        "Render the plan for the host's network stack: "
        + "; ".join(f"{name}: {text}" for name, (_, text) in registry().items())
        + ". Without -o the files are printed; with -o DIR they are written under DIR "
        "(ip: multihome.sh; networkd: NAME.network.d/90-multihome.conf per uplink; netplan: "
        "90-multihome.yaml; systemd: multihome.service and 90-multihome.conf for sysctl.d).",
    ),
    "install": (
        cmd_install,
        "write the plan into the host's network stack, to survive reboots",
        "Detect which stack manages the uplinks (systemd-networkd, also under netplan; "
        "NetworkManager; ifupdown; none) and write the plan where it reads it, atomically, "
        "keeping aside any file it replaces; no stack or a mix gets multihome.service. "
        "Files multihome did not write are never edited. `multihome uninstall` removes "
        "exactly what was written.",
    ),
    "uninstall": (
        cmd_uninstall,
        "remove what `multihome install` wrote",
        "Remove every file the last install wrote (as listed in its manifest under "
        "var/lib/multihome) and put back what they replaced.",
    ),
    "watch": (
        cmd_watch,
        "daemon: keep it right as the host changes; health checks, failover, balancing",
        "Subscribe to netlink link, address, route and rule events and re-apply the plan "
        "(only multihome's objects) within milliseconds of a change; probe each uplink's "
        "gateway (or [uplinks.X] probe targets) from its own address; with [multihome] "
        "balance = true, spread new outgoing connections over the healthy uplinks by weight. "
        "One log line per action; SIGTERM stops it; systemd Type=notify with watchdog.",
    ),
    "status": (
        cmd_status,
        "what multihome watch sees: uplink health, last reconcile",
        "Each uplink's state (up/down, since when, last probe RTT, loss) and the last "
        "reconcile of the multihome watch running in this namespace.",
    ),
    "doctor": (
        cmd_doctor,
        "find asymmetric routing, with evidence and the fix",
        "Check the live state (read only): for every address, the kernel's own route lookup "
        "of a reply to an off-link client and to an on-link neighbour; strict reverse-path "
        "filtering that drops traffic; ARP flux between NICs on one subnet; rules pointing "
        "to empty tables; tables without their on-link route; several default routes and "
        "no source rules; drift from multihome's plan. Exit 0: no errors; 1: errors found; "
        "2: could not run.",
    ),
    "counters": (
        cmd_counters,
        "per-interface traffic and each interface's share",
        "Per interface RX/TX packets and bytes and its share of all TX and RX packets (how "
        "the problem was first measured). --watch SECONDS shows rates per interval, "
        "refreshed in place on a terminal, one JSON object per interval otherwise.",
    ),
    "lab": (
        cmd_lab,
        "reproduce the two-NIC web-serving experiment in network namespaces",
        "Build a test network in network namespaces (server, switch, router, client; "
        "documentation addresses only), serve a file many times over every server address, "
        "and compare the server's per-NIC counters with stock routing (phase destination) "
        "and after `multihome apply` (phase policy). Needs root; the host's own network is "
        "never touched. `multihome lab clean` removes networks left behind.",
    ),
}


def _lab_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "scenario",
        nargs="?",
        default="seed",
        choices=(*SCENARIO_NAMES, "clean"),
        help="seed (default): the article's NICs on one switch; two-isp: one ISP per NIC, "
        "with anti-spoofing; clean: remove lab networks left behind",
    )
    cmd.add_argument("--nics", type=int, default=2, help="server NICs, 2-8 (default 2)")
    cmd.add_argument("--size", default="90KB", help="file size (default 90KB = 92,160 bytes)")
    cmd.add_argument("--requests", type=int, default=20000, help="per phase (default 20000)")
    cmd.add_argument("--concurrency", type=int, default=40, help="in parallel (default 40)")
    cmd.add_argument(
        "--link-rate", metavar="RATE", help="rate-limit every server NIC (tc tbf), e.g. 100mbit"
    )
    cmd.add_argument("--plot", metavar="FILE.png", help="write a figure of both phases")
    cmd.add_argument(
        "--keep", action="store_true", help="leave the last phase's network up to explore"
    )


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--netns",
        metavar="NAME",
        default=argparse.SUPPRESS,
        help="act inside the named network namespace (as `ip netns exec NAME`)",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print machine-readable JSON",
    )
    common.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help=f"config file (default {DEFAULT_PATH} if it exists, else autodetect)",
    )
    parser = argparse.ArgumentParser(
        prog="multihome",
        parents=[common],
        description="Make a multi-homed Linux host route symmetrically: replies leave "
        "through the interface that owns their source address (source-based policy routing).",
        epilog="Exit codes: 0 ok; 1 changes pending (plan --check) or errors found (doctor); "
        "2 bad input or failure.",
    )
    parser.add_argument("--version", action="version", version=f"multihome {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, summary, description) in COMMANDS.items():
        cmd = sub.add_parser(name, parents=[common], help=summary, description=description)
        if name == "plan":
            cmd.add_argument(
                "--format",
                choices=("diff", "ip"),
                default="diff",
                help="diff (default) or ip: the equivalent ip/sysctl commands",
            )
            cmd.add_argument(
                "--check",
                action="store_true",
                help="exit 1 when changes are pending, 0 when none",
            )
        if name == "lab":
            _lab_arguments(cmd)
        if name == "export":
            cmd.add_argument("--format", required=True, choices=sorted(registry()))
            cmd.add_argument("-o", "--output", metavar="DIR", help="write the files under DIR")
            cmd.add_argument(
                "--network-file",
                action="append",
                default=[],
                metavar="IFACE=NAME",
                help="networkd: the .network file managing IFACE (default: as networkd "
                "reports it, else 10-IFACE.network)",
            )
        if name == "watch":
            cmd.add_argument(
                "--metrics",
                metavar="ADDR:PORT",
                help="serve Prometheus metrics, e.g. 127.0.0.1:9477 (off by default)",
            )
        if name in ("install", "uninstall"):
            cmd.add_argument(
                "--root", default="/", metavar="DIR", help="install under DIR (default /)"
            )
        if name == "install":
            cmd.add_argument(
                "--format",
                default="auto",
                choices=("auto", *sorted(registry())),
                help="auto (default): the stack that manages the uplinks",
            )
        if name in ("apply", "remove"):
            cmd.add_argument(
                "--confirm",
                type=float,
                nargs="?",
                const=DEFAULT_CONFIRM,
                metavar="SECONDS",
                help="revert the change unless `multihome confirm` follows within SECONDS "
                f"(default {DEFAULT_CONFIRM:g}); on a terminal, ask",
            )
        if name == "counters":
            cmd.add_argument(
                "--watch", type=float, metavar="SECONDS", help="rates every SECONDS seconds"
            )
            cmd.add_argument(
                "--count", type=int, default=0, help="with --watch: stop after N intervals"
            )
            cmd.add_argument(
                "--format",
                choices=("table", "ifconfig"),
                default="table",
                help="table (default) or ifconfig-style listing",
            )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, default in (("netns", None), ("json", False), ("config", None)):
        if not hasattr(args, name):
            setattr(args, name, default)
    handler = COMMANDS[args.command][0]
    try:
        if args.netns:
            namespace.enter(args.netns)
        return handler(args)
    except MultihomeError as error:
        print(f"multihome: {error.message}", file=sys.stderr)
        if error.hint:
            print(f"hint: {error.hint}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("multihome: interrupted", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # `multihome doctor | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
