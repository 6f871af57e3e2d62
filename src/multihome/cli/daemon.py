"""The daemon's commands: watch (run it) and status (what it sees)."""

from __future__ import annotations

import argparse
import time

from multihome.cli import Command
from multihome.cli.output import EXIT_OK, print_json, table
from multihome.errors import MultihomeError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

# LSB init-script convention (also systemctl status): 3 = program is not running.
EXIT_NOT_RUNNING = 3


NEVER_RAN = "multihome watch has not run in this namespace"


class NotRunning(MultihomeError):
    exit_code = EXIT_NOT_RUNNING


def cmd_watch(args: argparse.Namespace) -> int:
    from multihome import watch as watch_module

    watch_module.watch(args.config, args.metrics)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from multihome import watch as watch_module
    from multihome.kernel import namespace

    status = watch_module.read_status(namespace.identity())
    if status is None and args.json:  # a status all the same: scripts read "running"
        print_json({"running": False, "pid": None, "reason": NEVER_RAN})
        return EXIT_NOT_RUNNING
    if status is None:
        raise NotRunning(
            NEVER_RAN,
            hint="start it: multihome watch (or systemctl start multihome-watch)",
        )
    if args.json:
        print_json(status)
        return EXIT_OK if status["running"] else EXIT_NOT_RUNNING
    state = "running" if status["running"] else "NOT running (last status below)"
    print(f"multihome watch: {state}, pid {status['pid']}")
    rows = [["UPLINK", "FAMILY", "STATE", "SINCE", "FLAPS", "RTT", "LOSS/1M", "GATEWAY", "PATH"]]
    entries = [
        (name, family, uplink)
        for name, families in status["uplinks"].items()
        for family, uplink in sorted(families.items())
    ]
    gateway = any("connections" in uplink for _, _, uplink in entries)
    if gateway:  # gateway mode: the connections conntrack holds per uplink
        rows[0] += ["CONNECTIONS", "BYTES"]
    for name, family, uplink in entries:
        since = time.strftime("%H:%M:%S", time.localtime(uplink["since"]))
        rtt = f"{uplink['last_rtt_ms']:.2f} ms" if uplink["last_rtt_ms"] is not None else "-"
        path = uplink.get("path", "")
        if path:  # past the gateway: its state, RTT and loss, or "unknown" until it answers
            path_rtt = uplink.get("path_rtt_ms")
            path += f" {uplink.get('path_state', 'unknown')}"
            if path_rtt is not None:
                path += f" {path_rtt:.2f} ms {uplink.get('path_loss', 0.0):.1%}"
        rows.append(
            [
                name,
                family.replace("ipv", "IPv"),
                uplink["state"],
                since,
                str(uplink.get("transitions", 0)),
                rtt,
                f"{uplink['loss']:.1%}",
                ", ".join(uplink["targets"]) or "-",
                path or "-",
            ]
        )
        if gateway:
            rows[-1] += [str(uplink.get("connections", "-")), str(uplink.get("bytes", "-"))]
    print("\n".join(table(rows, indent="")) if len(rows) > 1 else "no uplinks probed")
    print(_reconciles_text(status))
    if status.get("failure"):
        since = time.strftime("%H:%M:%S", time.localtime(status.get("failing_since") or 0))
        print(
            f"reconciles FAIL since {since} ({status.get('failures_in_a_row', 0)} attempts in a"
            f" row, retried with a growing delay): {status['failure']}"
        )
    return EXIT_OK if status["running"] else EXIT_NOT_RUNNING


def _reconciles_text(status: dict[str, Any]) -> str:
    """The last reconcile, and the last one that changed something (the periodic and event
    reconciles that find nothing to do come after it, and would hide it)."""

    def clock(at: float | None) -> str:
        return time.strftime("%H:%M:%S", time.localtime(at)) if at else "never"

    text = f"last reconcile: {clock(status['last_reconcile'])} ({status['last_result']})"
    if status.get("last_change") and status.get("last_change") != status["last_reconcile"]:
        text += f"; last change: {clock(status['last_change'])} ({status['last_change_result']})"
    return text + f"; {status['reconciles']} in all, {status['errors']} failed"


def _watch_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--metrics",
        metavar="ADDR:PORT",
        help="serve Prometheus metrics, e.g. 127.0.0.1:9477 (off by default)",
    )


COMMANDS = (
    Command(
        "watch",
        cmd_watch,
        "daemon: keep it right as the host changes; health checks, failover, balancing",
        "Subscribe to netlink link, address, route and rule events, and to nftables' "
        "changes of other tables (a port forward published), and re-apply the plan (only "
        "multihome's objects) within milliseconds of a change; probe each uplink's "
        "gateway (or [uplinks.X] probe targets) from its own address; with [multihome] "
        "balance = true, spread new outgoing connections over the healthy uplinks by weight. "
        "One log line per action; SIGTERM stops it; systemd Type=notify with watchdog.",
        _watch_arguments,
    ),
    Command(
        "status",
        cmd_status,
        "what multihome watch sees: uplink health, last reconcile",
        "Each uplink's state (up/down, since when, last probe RTT, loss) and the last "
        "reconcile of the multihome watch running in this namespace. Exit 0: running; "
        "3: not running (as systemctl status).",
    ),
)
