"""PURE: the lab's results, and how they are shown: the article's ifconfig-style listings,
the summary table, and the JSON object."""

from __future__ import annotations

from typing import Any

from multihome.core.counters import Link, ifconfig
from multihome.core.model import Counters
from multihome.core.records import field, record
from multihome.core.units import human_rate


@record(frozen=True)
class InterfaceResult:
    name: str
    address: str
    counters: Counters  # during the phase
    link: Link | None = None  # flags, MTU and addresses as read from the server at the end


@record(frozen=True)
class PhaseResult:
    name: str  # "destination" (stock routing) or "policy" (after multihome apply)
    interfaces: tuple[InterfaceResult, ...]
    ok: int
    failed: int
    seconds: float
    body_bytes: int
    failed_by_address: dict[str, int]
    ok_by_address: dict[str, int] = field(default_factory=dict)

    def by_family(self) -> dict[str, dict[str, int]]:
        """Requests that succeeded and failed per IP version ("ipv4", "ipv6"), for the
        families the phase fetched from."""
        counts: dict[str, dict[str, int]] = {}
        for kind, by_address in (("ok", self.ok_by_address), ("failed", self.failed_by_address)):
            for address, number in by_address.items():
                family = counts.setdefault("ipv6" if ":" in address else "ipv4", {})
                family["ok"] = family.get("ok", 0)
                family["failed"] = family.get("failed", 0)
                family[kind] += number
        return dict(sorted(counts.items()))

    @property
    def goodput_bps(self) -> float:
        return self.body_bytes * 8 / self.seconds if self.seconds > 0 else 0.0

    def share(self, name: str, direction: str) -> float:
        """An interface's share of the server's TX (or RX) packets in this phase."""
        total = sum(getattr(i.counters, f"{direction}_packets") for i in self.interfaces)
        mine = next(
            getattr(i.counters, f"{direction}_packets") for i in self.interfaces if i.name == name
        )
        return mine / total if total else 0.0


@record(frozen=True)
class LabResult:
    scenario: str
    nics: int
    link_rate_bps: int | None
    size: int
    requests: int
    concurrency: int
    phases: tuple[PhaseResult, ...]


def listing(phase: PhaseResult) -> list[str]:
    """The server's interfaces as ifconfig prints them (the article's Listings 2 and 3)."""
    return ifconfig(
        (i.link or Link(i.name, 0, 0, (i.address,)), i.counters) for i in phase.interfaces
    )


def summary(result: LabResult) -> list[str]:
    names = [i.name for i in result.phases[0].interfaces]
    header = ["phase"] + [f"{n} TX" for n in names] + [f"{n} RX" for n in names]
    families = sorted({f for phase in result.phases for f in phase.by_family()})
    dual = len(families) > 1  # then the requests per family too: "ok/failed"
    header += ["ok", "failed"]
    header += [f"{f.replace('ipv', 'IPv')} ok/failed" for f in families if dual]
    header += ["seconds", "goodput"]
    if result.link_rate_bps:
        header.append("of link sum")
    rows = [header]
    for phase in result.phases:
        row = [phase.name]
        row += [f"{phase.share(n, 'tx'):.2%}" for n in names]
        row += [f"{phase.share(n, 'rx'):.2%}" for n in names]
        row += [str(phase.ok), str(phase.failed)]
        counts = phase.by_family()
        for family in families if dual else ():
            got = counts.get(family, {"ok": 0, "failed": 0})
            row.append(f"{got['ok']}/{got['failed']}")
        row += [f"{phase.seconds:.1f}", human_rate(phase.goodput_bps)]
        if result.link_rate_bps:
            row.append(f"{phase.goodput_bps / (result.link_rate_bps * result.nics):.1%}")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            c.rjust(w) if k else c.ljust(w)
            for k, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    if len(result.phases) == 2 and result.phases[0].goodput_bps > 0:
        gain = result.phases[1].goodput_bps / result.phases[0].goodput_bps
        lines.append(f"goodput policy / destination: {gain:.2f}x")
        if result.link_rate_bps is None:
            lines.append(CPU_BOUND)
    return lines


# Without a rate limit, the namespaces' veths move far more than the built-in server and
# client can fill on a few cores: both phases measure the CPU, and their ratio is noise.
CPU_BOUND = (
    "note: without --link-rate the CPU, not the NICs, limits the goodput of both phases,"
    " so this ratio varies from run to run; --link-rate 100mbit measures what the routing does"
)


def to_json(result: LabResult) -> dict[str, Any]:
    return {
        "scenario": result.scenario,
        "nics": result.nics,
        "link_rate_bps": result.link_rate_bps,
        "size": result.size,
        "requests": result.requests,
        "concurrency": result.concurrency,
        "phases": [
            {
                "name": phase.name,
                "interfaces": {
                    i.name: {
                        "address": i.address,
                        "rx_packets": i.counters.rx_packets,
                        "tx_packets": i.counters.tx_packets,
                        "rx_bytes": i.counters.rx_bytes,
                        "tx_bytes": i.counters.tx_bytes,
                        "tx_share": round(phase.share(i.name, "tx"), 6),
                        "rx_share": round(phase.share(i.name, "rx"), 6),
                    }
                    for i in phase.interfaces
                },
                "requests": {"ok": phase.ok, "failed": phase.failed},
                "failed_by_address": phase.failed_by_address,
                "requests_by_family": phase.by_family(),
                "seconds": round(phase.seconds, 3),
                "goodput_bps": round(phase.goodput_bps, 1),
            }
            for phase in result.phases
        ],
    }
