"""Commands that read and change the routing: show, plan, apply, remove, confirm, doctor."""

from __future__ import annotations

import argparse
import sys
import time

from multihome import PROTOCOL
from multihome.cli import Command
from multihome.cli.output import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_PENDING,
    change_json,
    count,
    plain,
    print_json,
    table,
    uplink_rows,
    with_user_options,
)
from multihome.errors import MultihomeError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from multihome.core.model import Desired, HostState
    from multihome.core.plan import Role
    from multihome.host import operations

    Roles = dict[str, tuple[Role, str]]

DEFAULT_CONFIRM = 30.0


def _show_text(host: HostState, desired: Desired, roles: Roles) -> list[str]:
    from multihome.core.model import TABLE_MAIN

    own = desired.ownership
    lines = [f"network namespace {host.netns_id}", "", "Interfaces"]
    rows = [["NAME", "STATE", "ROLE", "ADDRESSES", "WHY"]]
    for i in host.interfaces:
        role, reason = roles[i.name]
        addresses = ", ".join(str(a.ip) for a in host.addresses_of(i.name)) or "-"
        rows.append([i.name, "up" if i.up else "down", role.value, addresses, reason])
    lines += table(rows)
    lines += ["", "Default routes in main"]
    defaults = [r for r in host.routes if r.table == TABLE_MAIN and r.is_default]
    lines += [f"  -{r.family.version} {r.ip_args()}" for r in defaults] or ["  (none)"]
    lines += ["", "Uplinks (planned)"]
    lines += table(uplink_rows(desired)) if desired.uplinks else ["  (none)"]
    lines += ["", "Policy rules (* = multihome's)"]
    for r in sorted(host.rules, key=lambda r: (r.family, r.priority)):
        mark = "*" if own.owns_rule(r) else " "
        lines.append(f" {mark}-{r.family.version} {r.ip_args()}")
    _, owned_routes = own.owned(host)
    tables = sorted({r.table for r in owned_routes})
    lines += ["", f"Tables owned by multihome (protocol {own.protocol})"]
    if not tables:
        lines.append("  (none)")
    for number in tables:
        # (main: only multihome's IPv6 routes from a prefix, the layout needing no table)
        main = " (main: its routes from a prefix)" if number == TABLE_MAIN else ""
        lines.append(f"  table {number}{main}")
        lines += [
            f"    -{r.family.version} {r.ip_args()}" for r in owned_routes if r.table == number
        ]
    if desired.pinning:
        lines += ["", "Inbound pinning (port forwards answer through the uplink they came in on)"]
        lines += [f"  {reason}" for reason in desired.pinning]
    if desired.notes:
        lines += ["", "Notes"] + [f"  {n}" for n in desired.notes]
    return lines


def cmd_show(args: argparse.Namespace) -> int:
    from multihome.core.model import TABLE_MAIN
    from multihome.core.plan import roles
    from multihome.host import operations

    outcome = operations.preview(args.config)
    for warning in outcome.warnings:
        print(f"multihome: warning: {warning}", file=sys.stderr)
    host, desired = outcome.host, outcome.desired
    detected = roles(outcome.config, host)
    own = desired.ownership
    if args.json:
        print_json(
            {
                "netns_id": host.netns_id,
                "interfaces": [
                    {
                        **plain(i),
                        "addresses": [str(a.ip) for a in host.addresses_of(i.name)],
                        "role": detected[i.name][0],
                        "reason": detected[i.name][1],
                    }
                    for i in host.interfaces
                ],
                "default_routes": [
                    r for r in host.routes if r.table == TABLE_MAIN and r.is_default
                ],
                "uplinks": desired.uplinks,
                "rules": [{**plain(r), "owned": own.owns_rule(r)} for r in host.rules],
                "owned_routes": own.owned(host)[1],
                "pinning": desired.pinning,
                "notes": desired.notes,
            }
        )
    else:
        print("\n".join(_show_text(host, desired, detected)))
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    from multihome.host import operations
    from multihome.render import ip as render_ip

    outcome = operations.preview(args.config)
    for warning in outcome.warnings:
        print(f"multihome: warning: {warning}", file=sys.stderr)
    changes = list(outcome.changes)
    nft = outcome.table  # gateway mode's nftables table, when it changes
    if args.json:
        print_json(
            {
                "changed": outcome.changed,
                "uplinks": outcome.desired.uplinks,
                "changes": [change_json(c) for c in changes],
                "nftables": nft.script() if nft else None,
                "pinning": outcome.desired.pinning,
                "notes": outcome.desired.notes,
            }
        )
    elif args.format == "ip":
        lines = render_ip.commands(changes)
        if nft:
            lines.append(f"nft -f - <<'EOF'\n{nft.script()}EOF")
        print("\n".join(lines) if lines else "# no changes")
    else:
        if outcome.desired.uplinks:
            print("\n".join(table(uplink_rows(outcome.desired), indent="")))
            print()
        for reason in outcome.desired.pinning:
            print(f"inbound pinning: {reason}")
        for note in outcome.desired.notes:
            print(f"note: {note}")
        if changes or nft:
            print(f"{len(changes) + bool(nft)} changes pending:")
            print("\n".join(f"  {c.describe()}" for c in changes))
            if nft:
                print(f"  {nft.describe()}")
                print("\n".join(f"    {line}" for line in nft.script().splitlines()))
        else:
            print("no changes: the kernel already matches the plan")
    return EXIT_PENDING if args.check and outcome.changed else EXIT_OK


def _report(outcome: operations.Outcome, args: argparse.Namespace, verb: str) -> int:
    if outcome.watch_pid:
        return _report_by_watch(outcome, args, verb)
    changes = list(outcome.changes)
    nft = outcome.table
    if args.json:
        print_json(
            {
                "changed": outcome.changed,
                "changes": [change_json(c) for c in changes],
                "nftables": nft.describe() if nft else None,
                "uplinks": outcome.desired.uplinks,
                "pinning": outcome.desired.pinning,
                "remarked": outcome.remarked,
                "notes": outcome.desired.notes,
                "warnings": outcome.warnings,
            }
        )
        return EXIT_OK
    for reason in outcome.desired.pinning:
        print(f"inbound pinning: {reason}")
    for note in outcome.desired.notes:
        print(f"note: {note}")
    _print_remarked(outcome)
    for warning in outcome.warnings:
        print(f"multihome: warning: {warning}", file=sys.stderr)
    if not outcome.changed:
        print(f"{verb}: nothing to do, the kernel already matches")
        return EXIT_OK
    for change in changes:
        print(f"  {change.describe()}")
    if nft:
        print(f"  {nft.describe()}")
    print(f"{verb}: {count(len(changes) + bool(nft), 'change')} made")
    return EXIT_OK


def _print_remarked(outcome: operations.Outcome) -> None:
    if outcome.remarked:  # (0 on every apply after the first: not worth a line)
        print(
            f"inbound pinning: re-marked {count(outcome.remarked, 'port-forwarded connection')}"
            " open before apply, so that replies leave by the uplink they came in on (conntrack)"
        )


def _report_by_watch(outcome: operations.Outcome, args: argparse.Namespace, verb: str) -> int:
    """The running `multihome watch` did the work (it owns the routing): what it changed."""
    by = f"multihome watch (pid {outcome.watch_pid})"
    if args.json:
        # "changes" keeps its shape (objects, as `plan --json` lists them) for scripts that
        # read it; watch reports its changes as lines
        print_json(
            {
                "changed": outcome.changed,
                "changes": [],
                "by_watch": {"pid": outcome.watch_pid, "changes": outcome.by_watch},
                "remarked": outcome.remarked,
                "warnings": outcome.warnings,
            }
        )
        return EXIT_OK
    for line in outcome.by_watch:
        print(f"  {line}")
    _print_remarked(outcome)
    for warning in outcome.warnings:  # (the re-marking's, done here after the watch's work)
        print(f"multihome: warning: {warning}", file=sys.stderr)
    if not outcome.changed:
        print(f"{verb}: handed to {by}: nothing to do, the kernel already matches")
    else:
        print(f"{verb}: handed to {by}: {count(len(outcome.by_watch), 'change')} made")
    return EXIT_OK


def _ask_to_keep(seconds: float) -> int:
    """On a terminal, ask: `yes` keeps the change, `no` reverts it now, no answer by the
    deadline leaves the revert to the guardian."""
    import select

    from multihome.host import operations

    deadline = time.monotonic() + seconds
    prompt = (
        f"Keep the new routing? Type 'yes' to keep it, 'no' to revert it now ({seconds:.0f} s): "
    )
    while True:
        sys.stdout.write(prompt)
        sys.stdout.flush()
        ready, _, _ = select.select([sys.stdin], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            print("\nno answer in time: the change is reverted")
            return EXIT_OK
        answer = sys.stdin.readline().strip().lower()
        if answer in ("y", "yes", "n", "no"):
            keep = answer.startswith("y")
            outcome, at = operations.confirm_pending(keep=keep)
            if not keep and outcome == "reverted":
                print("reverted: the routing is as it was before")
                return EXIT_OK
            print(_confirmation_text(outcome, at))
            return _confirmation_code(outcome)
        prompt = "Please type 'yes' or 'no': "


def _confirmation_text(outcome: str, at: float | None) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(at)) if at else "?"
    return {
        "kept": "confirmed: the change is kept",
        "reverted": f"too late: the change was reverted at {when}",
        "nothing pending": "nothing awaits confirmation",
    }.get(outcome, f"the guardian reported: {outcome}")


def _confirmation_code(outcome: str) -> int:
    return {"kept": EXIT_OK, "nothing pending": EXIT_OK, "reverted": EXIT_PENDING}.get(
        outcome, EXIT_ERROR
    )


def _converge(args: argparse.Namespace, verb: str) -> int:
    from multihome.host import operations

    if args.confirm is not None and not 1 <= args.confirm <= 86400:
        raise MultihomeError(f"--confirm takes 1-86400 seconds, not {args.confirm:g}")
    handler = operations.apply if verb == "apply" else operations.remove
    outcome = handler(args.config, args.confirm)
    code = _report(outcome, args, verb)
    if args.confirm is not None and outcome.changed:  # the guardian was armed
        note = (
            f"run `multihome{' --netns ' + args.netns if args.netns else ''} confirm` within"
            f" {args.confirm:g} s, or the change is reverted"
        )
        print(note, file=sys.stderr if args.json else sys.stdout)
        if sys.stdin.isatty() and not args.json:
            return _ask_to_keep(args.confirm) or code
    return code


def cmd_apply(args: argparse.Namespace) -> int:
    return _converge(args, "apply")


def cmd_remove(args: argparse.Namespace) -> int:
    return _converge(args, "remove")


def cmd_confirm(args: argparse.Namespace) -> int:
    from multihome.host import operations

    outcome, at = operations.confirm_pending()
    if args.json:
        data: dict[str, object] = {"outcome": outcome}
        if at is not None:
            data["at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(at))
        print_json(data)
    else:
        print(_confirmation_text(outcome, at))
    return _confirmation_code(outcome)


def cmd_doctor(args: argparse.Namespace) -> int:
    from multihome.host import operations

    report = operations.diagnose(args.config)
    if args.json:
        print_json(
            {
                "errors": report.errors,
                "findings": [
                    {**plain(f), "fix": with_user_options(f.fix, args) if f.fix else f.fix}
                    for f in report.findings
                ],
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
            print(f"{'':8}fix: {with_user_options(finding.fix, args)}")
        print()
    if report.findings:
        warnings = len(report.findings) - report.errors
        print(f"{count(report.errors, 'error')}, {count(warnings, 'warning')}")
    return EXIT_PENDING if report.errors else EXIT_OK


def _plan_arguments(cmd: argparse.ArgumentParser) -> None:
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


def _confirm_argument(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--confirm",
        type=float,
        nargs="?",
        const=DEFAULT_CONFIRM,
        metavar="SECONDS",
        help="revert the change unless `multihome confirm` follows within SECONDS "
        f"(default {DEFAULT_CONFIRM:g}); on a terminal, ask",
    )


COMMANDS = (
    Command(
        "show",
        cmd_show,
        "interfaces, addresses, gateways, rules and owned tables",
        "Show the interfaces with their addresses, role and the reason for it (an uplink "
        "leads to a gateway: named in the config, a default route in main through it, or "
        "the subnet of one that has it), the default routes in main, the uplinks multihome "
        "plans, every policy rule (multihome's marked *) and the tables multihome owns. "
        "Reads only.",
    ),
    Command(
        "plan",
        cmd_plan,
        "the changes `apply` would make",
        "Print the changes `apply` would make, as a diff (+ add, - delete, ~ sysctl), or "
        "with --format ip as the equivalent ip/sysctl commands. Reads only.",
        _plan_arguments,
    ),
    Command(
        "apply",
        cmd_apply,
        "make the kernel match the plan (idempotent, all or nothing)",
        "Create the per-uplink tables and source rules and set the ARP sysctls. Touches only "
        f"objects with multihome's protocol number ({PROTOCOL}); if the kernel refuses any "
        "change, every change already made is undone. A second run changes nothing. While "
        "`multihome watch` runs in the namespace, it owns the routing: apply hands it the "
        "request (with --confirm, watch guards the change and keeps failing over).",
        _confirm_argument,
    ),
    Command(
        "remove",
        cmd_remove,
        "remove everything multihome created, restore sysctls",
        "Delete every rule and route multihome owns in this namespace and put back the "
        "sysctl values it replaced. Foreign rules and routes are never touched. A "
        "`multihome watch` running in the namespace is stopped first (it would put "
        "everything back), and the message says so.",
        _confirm_argument,
    ),
    Command(
        "confirm",
        cmd_confirm,
        "keep a change made with --confirm",
        "Keep the change that `apply --confirm` or `remove --confirm` made in this namespace; "
        "without it the change is reverted when the time is up.",
    ),
    Command(
        "doctor",
        cmd_doctor,
        "find asymmetric routing, with evidence and the fix",
        "Check the live state (read only): for every address, the kernel's own route lookup "
        "of a reply to an off-link client and to an on-link neighbour; strict reverse-path "
        "filtering that drops traffic; ARP flux between NICs on one subnet; rules pointing "
        "to empty tables; tables without their on-link route; several default routes and "
        "no source rules; drift from multihome's plan. Exit 0: no errors; 1: errors found; "
        "2: could not run.",
    ),
)
