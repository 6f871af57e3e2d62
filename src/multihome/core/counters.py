"""Per-interface traffic counters as the article measured them: shares of all packets, rates
over an interval, and the ifconfig-style listing (also the lab's report)."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable, Iterator

from multihome.core.model import Counters
from multihome.core.records import record
from multihome.core.units import human_bytes

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:  # discover imports this module on every command's path
    from typing import Any


def rows(counters: dict[str, Counters], seconds: float | None) -> list[dict[str, Any]]:
    """One row per interface: totals (or, with `seconds`, rates) and its share of the packets."""
    tx = sum(c.tx_packets for c in counters.values())
    rx = sum(c.rx_packets for c in counters.values())
    result = []
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
        result.append(row)
    return result


def sample(
    read: Callable[[], dict[str, Counters]], interval: float, count: int = 0
) -> Iterator[tuple[dict[str, Counters], float]]:
    """Every `interval` seconds, what each interface moved since the last sample and the time
    that took; `count` samples, or forever with 0."""
    previous, then = read(), time.monotonic()
    taken = 0
    while not count or taken < count:
        time.sleep(interval)
        current, now = read(), time.monotonic()
        yield {n: c - previous[n] for n, c in current.items() if n in previous}, now - then
        previous, then = current, now
        taken += 1


# ifconfig's names for the interface flags (<net/if.h>), lowest bit first; it shows the low
# 16 bits (SIOCGIFFLAGS), so netlink's LOWER_UP and DORMANT do not appear.
IFF_NAMES = (
    "UP", "BROADCAST", "DEBUG", "LOOPBACK", "POINTOPOINT", "NOTRAILERS", "RUNNING", "NOARP",
    "PROMISC", "ALLMULTI", "MASTER", "SLAVE", "MULTICAST", "PORTSEL", "AUTOMEDIA", "DYNAMIC",
)  # fmt: skip


@record(frozen=True)
class Link:
    """What ifconfig shows of an interface besides its counters."""

    name: str
    flags: int  # the kernel's IFF_* bits
    mtu: int
    addresses: tuple[str, ...] = ()  # global ones, with prefix: "192.0.2.10/24"


def ifconfig(links: Iterable[tuple[Link, Counters]]) -> list[str]:
    """Interfaces as ifconfig lists them (the article's Listings 2 and 3): the lab's report and
    `multihome counters --format ifconfig`."""
    lines = []
    for link, c in links:
        flags = link.flags & 0xFFFF
        names = ",".join(n for bit, n in enumerate(IFF_NAMES) if flags & (1 << bit))
        lines.append(f"{link.name}: flags={flags}<{names}>  mtu {link.mtu}")
        for text in link.addresses:
            address = ipaddress.ip_interface(text)
            if address.version == 4:
                lines.append(f"        inet {address.ip}  netmask {address.netmask}")
            else:
                lines.append(f"        inet6 {address.ip}  prefixlen {address.network.prefixlen}")
        lines += [*ifconfig_counters(c), ""]
    return lines


def ifconfig_counters(c: Counters) -> list[str]:
    """An interface's counters in ifconfig's words."""
    return [
        f"        RX packets {c.rx_packets}  bytes {c.rx_bytes} ({human_bytes(c.rx_bytes)})",
        f"        TX packets {c.tx_packets}  bytes {c.tx_bytes} ({human_bytes(c.tx_bytes)})",
    ]
