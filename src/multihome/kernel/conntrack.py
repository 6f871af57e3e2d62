"""The only module that writes conntrack: delete one uplink's connections, and count them.

It runs conntrack(8) with a mark filter (`--mark V/M`), so only the entries multihome marked
for that uplink are touched -- never the whole table: port forwards and sessions on the other
uplinks live on.
"""

from __future__ import annotations

import re
import subprocess

from multihome.core.records import record
from multihome.errors import MultihomeError
from multihome.kernel import tools

TIMEOUT = 30
_BYTES = re.compile(r"\bbytes=(\d+)")
_FLOWS = re.compile(r"(\d+) flow entries")


def _conntrack() -> str:
    return tools.require(
        "conntrack",
        "gateway mode (flush_on_down and connection counts)",
        hint="apt-get install conntrack (or dnf install conntrack-tools)",
    )


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return tools.run(_conntrack(), args, TIMEOUT)


def flush(mark: int, mask: int) -> int:
    """Delete the IPv4 connections that carry `mark` inside `mask`; how many went."""
    result = _run(["-D", "-f", "ipv4", "--mark", f"{mark:#x}/{mask:#x}"])
    # conntrack exits 1 when nothing matched; the count is on stderr either way.
    found = _FLOWS.search(result.stderr)
    if result.returncode not in (0, 1) or (result.returncode == 1 and found is None):
        raise MultihomeError(f"conntrack -D failed: {result.stderr.strip()}")
    return int(found.group(1)) if found else 0


@record(frozen=True)
class Usage:
    connections: int
    bytes: int  # both directions; 0 unless nf_conntrack_acct is on


_MARK = re.compile(r"\bmark=(\d+)")


def count_by_mark(listing: str, mask: int) -> dict[int, Usage]:
    """PURE: `conntrack -L` output -> {mark & mask: its connections and bytes}."""
    found: dict[int, tuple[int, int]] = {}
    for line in listing.splitlines():
        mark = _MARK.search(line)
        if mark is None:
            continue
        key = int(mark.group(1)) & mask
        connections, total = found.get(key, (0, 0))
        found[key] = (connections + 1, total + sum(int(b) for b in _BYTES.findall(line)))
    return {key: Usage(c, b) for key, (c, b) in found.items()}


def usage_by_mark(mask: int) -> dict[int, Usage]:
    """Every uplink's connections and bytes from one `conntrack -L` (one walk of the table
    for all uplinks)."""
    result = _run(["-L", "-f", "ipv4"])
    if result.returncode != 0:
        raise MultihomeError(f"conntrack -L failed: {result.stderr.strip()}")
    return count_by_mark(result.stdout, mask)
