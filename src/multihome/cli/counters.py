"""`multihome counters`: per-interface traffic and each interface's share, once or live."""

from __future__ import annotations

import argparse
import sys
import time

from multihome.cli import Command
from multihome.cli.output import EXIT_OK, print_json, table
from multihome.errors import MultihomeError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from typing import Any

    from multihome.core.model import Counters


def _table(rows: list[dict[str, Any]], rates: bool) -> list[str]:
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
    cells = [header]
    for row in rows:
        cells.append(
            [
                row["interface"],
                *(f"{row[k]:,}" for k in keys),
                f"{row['tx_share']:.1%}",
                f"{row['rx_share']:.1%}",
            ]
        )
    return table(cells, indent="")


def cmd_counters(args: argparse.Namespace) -> int:
    import json

    from multihome.core import counters
    from multihome.kernel import discover

    def read() -> dict[str, Counters]:
        return {n: c for n, c in discover.read_counters().items() if n != "lo"}

    if args.watch is None:
        if args.count:
            raise MultihomeError(
                "--count goes with --watch",
                hint=f"multihome counters --watch 1 --count {args.count}",
            )
        if args.format == "ifconfig" and not args.json:
            print("\n".join(counters.ifconfig(discover.read_links())))
            return EXIT_OK
        current = read()
        rows = counters.rows(current, None)
        if args.json:
            print_json({"interfaces": rows})
        else:
            print("\n".join(_table(rows, rates=False)))
        return EXIT_OK
    if args.watch <= 0:
        raise MultihomeError("--watch takes a positive number of seconds")
    if args.count < 0:
        raise MultihomeError("--count takes a positive number of intervals")
    if args.format == "ifconfig":
        raise MultihomeError("--format ifconfig lists totals; --watch shows rates as a table")
    live = sys.stdout.isatty() and not args.json
    printed = 0
    for delta, seconds in counters.sample(read, args.watch, args.count):
        rows = counters.rows(delta, seconds)
        if not live:
            print(
                json.dumps(
                    {"time": round(time.time(), 3), "interval": args.watch, "interfaces": rows}
                ),
                flush=True,
            )
            continue
        lines = _table(rows, rates=True)
        if printed:
            sys.stdout.write(f"\x1b[{printed}F\x1b[J")  # back to the table's first line
        print("\n".join(lines), flush=True)
        printed = len(lines)
    return EXIT_OK


def _arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--watch", type=float, metavar="SECONDS", help="rates every SECONDS seconds")
    cmd.add_argument("--count", type=int, default=0, help="with --watch: stop after N intervals")
    cmd.add_argument(
        "--format",
        choices=("table", "ifconfig"),
        default="table",
        help="table (default) or ifconfig-style listing",
    )


COMMANDS = (
    Command(
        "counters",
        cmd_counters,
        "per-interface traffic and each interface's share",
        "Per interface RX/TX packets and bytes and its share of all TX and RX packets (how "
        "the problem was first measured). --watch SECONDS shows rates per interval, "
        "refreshed in place on a terminal, one JSON object per interval otherwise.",
        _arguments,
    ),
)
