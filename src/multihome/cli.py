"""The `multihome` command: argument parsing and printing only; the work is in operations.py.

Exit codes: 0 ok; 1 changes pending (plan --check); 2 bad input or failure.
"""

from __future__ import annotations

import argparse
import enum
import ipaddress
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, is_dataclass
from typing import Any

from multihome import PROTOCOL, __version__, namespace, operations
from multihome.config import DEFAULT_PATH
from multihome.errors import MultihomeError
from multihome.model import TABLE_MAIN, Change, Desired, HostState, Route, Rule
from multihome.plan import is_candidate
from multihome.render import ip as render_ip

EXIT_OK, EXIT_PENDING, EXIT_ERROR = 0, 1, 2


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
    owned_routes = [r for r in host.routes if own.owns_route(r)]
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
                "owned_routes": [r for r in host.routes if own.owns_route(r)],
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
            }
        )
        return EXIT_OK
    for note in outcome.desired.notes:
        print(f"note: {note}")
    if not changes:
        print(f"{verb}: nothing to do, the kernel already matches")
        return EXIT_OK
    for change in changes:
        print(f"  {change.describe()}")
    print(f"{verb}: {len(changes)} changes made")
    return EXIT_OK


def cmd_apply(args: argparse.Namespace) -> int:
    return _report(operations.apply(args.config), args, "apply")


def cmd_remove(args: argparse.Namespace) -> int:
    return _report(operations.remove(args.config), args, "remove")


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
}


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
        epilog="Exit codes: 0 ok, 1 changes pending (plan --check), 2 error.",
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
