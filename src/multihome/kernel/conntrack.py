"""The only module that writes conntrack: delete one uplink's connections, and mark the
port-forwarded connections that were open before inbound pinning began.

It runs conntrack(8) with a filter (`--mark V/M`; or the original destination and the
reply's source), so only the entries meant are touched -- never the whole table: port forwards
and sessions on the other uplinks live on. The kernel applies the filter: nothing here reads
the table. (The uplinks' connection and byte counts come from counters in multihome's
nftables table.)
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network

from multihome.errors import MultihomeError
from multihome.kernel import tools

TIMEOUT = 30
_FLOWS = re.compile(r"(\d+) flow entries")
_UPDATED = re.compile(r"(\d+) flow entries have been updated")


def _conntrack() -> str:
    return tools.require(
        "conntrack",
        "gateway mode (flush_on_down)",
        hint="apt-get install conntrack (or dnf install conntrack-tools)",
    )


def flush(mark: int, mask: int) -> int:
    """Delete the IPv4 connections that carry `mark` inside `mask`; how many went."""
    # conntrack prints every entry it deletes (120,000 lines, 20 MB, for a busy uplink):
    # only the count on stderr is read
    args = ["-D", "-f", "ipv4", "--mark", f"{mark:#x}/{mask:#x}"]
    result = tools.run(_conntrack(), args, TIMEOUT, stdout=False)
    # conntrack exits 1 when nothing matched; the count is on stderr either way.
    found = _FLOWS.search(result.stderr)
    if result.returncode not in (0, 1) or (result.returncode == 1 and found is None):
        raise MultihomeError(f"conntrack -D failed: {result.stderr.strip()}")
    return int(found.group(1)) if found else 0


def remark(destination: IPv4Network, target: IPv4Address, mark: int, mask: int) -> int:
    """Give the IPv4 connections whose original destination is in `destination` (an
    uplink's addresses) and whose replies come from `target` (a port forward's DNAT
    address: so they were destination-NATed there) the mark `mark` inside `mask` (the other
    bits stay); how many changed. The connections a port forward brought in before inbound
    pinning began: their replies are then routed by the mark, like the new ones'."""
    args = [
        "-U",
        "-f",
        "ipv4",
        "--orig-dst",
        str(destination.network_address),
        "--mask-dst",
        str(destination.netmask),
        "--reply-src",
        str(target),
        "--mark",
        f"{mark:#x}/{mask:#x}",
    ]
    result = tools.run(_conntrack(), args, TIMEOUT, stdout=False)
    # exit 1 with "0 flow entries have been updated" when nothing matched; entries that
    # already carry the mark are not counted (conntrack skips an update that changes nothing)
    found = _UPDATED.search(result.stderr)
    if result.returncode not in (0, 1) or found is None:
        raise MultihomeError(f"conntrack -U failed: {result.stderr.strip()}")
    return int(found.group(1))
