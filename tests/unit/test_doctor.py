"""The doctor's verdicts from a HostState and lookups built in code (no kernel)."""

from __future__ import annotations

import ipaddress

from multihome.core.config import Config
from multihome.core.diff import diff
from multihome.core.doctor import Report, Severity, diagnose, probes
from multihome.core.model import HostState, IPAddress, Lookup
from multihome.core.plan import plan
from multihome.core.records import replace

from .hosts import host
from .test_plan import ARTICLE, TWO_ISP

UPLINKS = ("eth0", "eth1")


def ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


def lookups_via(
    dev_of: dict[str, str], gateway: str | None = None
) -> dict[tuple[IPAddress, IPAddress], Lookup]:
    """Answer every probe of ARTICLE as the kernel would: by the given src -> dev map."""
    return {
        (dst, src): Lookup(
            dst, src, dev=dev_of[str(src)], gateway=ip(gateway) if gateway else None, table=254
        )
        for dst, src in probes(ARTICLE, UPLINKS)
    }


def run(
    state: HostState = ARTICLE,
    lookups: dict[tuple[IPAddress, IPAddress], Lookup] | None = None,
) -> Report:
    desired = plan(Config(), state)
    return diagnose(state, lookups or {}, desired, diff(desired, state), UPLINKS)


def test_probes_are_off_link_and_on_link_per_address() -> None:
    wanted = probes(ARTICLE, UPLINKS)
    assert (ip("203.0.113.254"), ip("192.0.2.11")) in wanted
    assert (ip("192.0.2.1"), ip("192.0.2.11")) in wanted
    assert (ip("192.0.2.1"), ip("192.0.2.10")) in wanted


def test_article_stock_routing() -> None:
    report = run(lookups=lookups_via({"192.0.2.10": "eth0", "192.0.2.11": "eth0"}, "192.0.2.1"))
    assert report.errors == 2
    found = {(f.check, f.address) for f in report.findings}
    assert found == {
        ("asymmetric-reply", "192.0.2.11"),
        ("asymmetric-on-link", "192.0.2.11"),
        ("arp-flux", None),
    }


def test_policy_routing_in_place_is_clean() -> None:
    desired = plan(Config(), ARTICLE)
    fixed = replace(
        ARTICLE,
        rules=desired.rules,
        routes=ARTICLE.routes + desired.routes,
        sysctls={**ARTICLE.sysctls, **{s.path: s.value for s in desired.sysctls}},
    )
    answers = lookups_via({"192.0.2.10": "eth0", "192.0.2.11": "eth1"})
    report = diagnose(fixed, answers, desired, [], UPLINKS)
    assert report.findings == ()


def test_rp_filter_uses_the_max_of_all_and_the_interface() -> None:
    state = replace(TWO_ISP, sysctls={**TWO_ISP.sysctls, "net/ipv4/conf/all/rp_filter": "1"})
    answers = {
        (dst, src): Lookup(dst, src, dev="eth0", gateway=ip("192.0.2.1"), table=254)
        for dst, src in probes(state, UPLINKS)
    }
    report = run(state, answers)
    drops = [f for f in report.findings if f.check == "rp-filter-drop"]
    assert [(f.address, f.severity) for f in drops] == [("192.0.2.42", Severity.ERROR)]
    assert "rp_filter=1 on eth1" in drops[0].evidence[0]


def test_single_homed() -> None:
    report = run(host({"eth0": ["192.0.2.10/24"]}, [("eth0", "192.0.2.1", 0)]))
    assert report.findings == () and "single-homed" in report.notes[0]
