"""The doctor's verdicts from a HostState and lookups built in code (no kernel)."""

from __future__ import annotations

import ipaddress

from multihome.core.config import Config
from multihome.core.diff import diff
from multihome.core.doctor import Finding, Report, Severity, diagnose, probes
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


def test_on_link_replies_of_an_uplink_alone_on_its_subnet_name_another_owner() -> None:
    """Such an uplink has no rule 1 (main's own route is its): when its on-link replies
    leave by another NIC, apply is not the fix, the route or rule that took them is."""
    answers = {
        (dst, src): Lookup(dst, src, dev="eth0", table=254) for dst, src in probes(TWO_ISP, UPLINKS)
    }
    report = run(TWO_ISP, answers)
    found = {f.address: f for f in report.findings if f.check == "asymmetric-on-link"}
    near = found["192.0.2.42"]
    assert near.fix.startswith("find the route or rule that sends them by eth0 (table 254)")
    assert "eth1 alone holds 192.0.2.32/27" in near.fix


def test_an_address_on_two_nics_is_named_as_such() -> None:
    state = host(
        {"eth0": ["192.0.2.10/24", "192.0.2.12/24"], "eth1": ["192.0.2.11/24", "192.0.2.12/24"]},
        [("eth0", "192.0.2.1", 0)],
    )
    answers = {(dst, src): Lookup(dst, src, dev="eth0", table=254) for dst, src in probes(state, UPLINKS)}
    fixes = {
        (f.check, f.address, f.interfaces[0]): f.fix
        for f in run(state, answers).findings
        if f.check.startswith("asymmetric")
    }
    fix = fixes[("asymmetric-on-link", "192.0.2.12", "eth1")]
    assert fix.startswith("192.0.2.12 is on another interface too: no source rule")
    assert fixes[("asymmetric-on-link", "192.0.2.11", "eth1")] == "multihome apply"


def test_an_ipv6_uplink_selected_by_a_source_route_gets_its_own_advice() -> None:
    """IPv6 alone on its prefix: no rule selects the address, a route from the prefix in
    main does (plan.py); apply writes it, and where it is there, the lookup's winner is named."""
    answers = {
        (dst, src): Lookup(dst, src, dev="eth0", table=254)
        for dst, src in probes(TWO_ISP, UPLINKS)
    }
    desired = plan(Config(), TWO_ISP)
    report = diagnose(TWO_ISP, answers, desired, diff(desired, TWO_ISP), UPLINKS)
    found = {f.address: f for f in report.findings if f.check == "asymmetric-reply"}
    assert found["2001:db8:1::10"].fix == "multihome apply"
    routed = replace(TWO_ISP, routes=TWO_ISP.routes + desired.routes)
    report = diagnose(routed, answers, desired, [], UPLINKS)
    found = {f.address: f for f in report.findings if f.check == "asymmetric-reply"}
    fix = found["2001:db8:1::10"].fix
    assert fix.startswith("find the rule or route that sends them by eth0 (table 254)")
    assert "`default from 2001:db8:1::/64 via fe80::1 dev eth1 table main" in fix


def test_several_ipv6_defaults_are_answered_by_routes_from_a_prefix() -> None:
    """Two IPv6 default routes in main and no rule: before apply the doctor says apply fixes
    it; once multihome's routes from each prefix are in main (no rule selects the addresses),
    it has nothing to say, and without them again it says so again."""
    desired = plan(Config(), TWO_ISP)
    assert any(r.table == 254 and r.source is not None for r in desired.routes)

    def several(state: HostState) -> list[Finding]:
        report = diagnose(state, {}, desired, [], UPLINKS)
        return [f for f in report.findings if f.check == "several-defaults" and "IPv6" in f.summary]

    (before,) = several(TWO_ISP)
    assert before.fix == "multihome apply"
    applied = replace(TWO_ISP, routes=TWO_ISP.routes + desired.routes, rules=desired.rules)
    assert several(applied) == []
    # the routes are what counts (the `from P lookup main` rules taken away too)
    ipv4_rules = tuple(r for r in desired.rules if r.family.version == 4)
    assert several(replace(applied, rules=ipv4_rules)) == []
    ipv4_routes = tuple(r for r in desired.routes if r.source is None)
    assert several(replace(applied, routes=TWO_ISP.routes + ipv4_routes, rules=ipv4_rules)) != []


def test_single_homed() -> None:
    report = run(host({"eth0": ["192.0.2.10/24"]}, [("eth0", "192.0.2.1", 0)]))
    assert report.findings == () and "single-homed" in report.notes[0]


def test_a_long_rule_list_is_reported_with_what_the_layout_needs() -> None:
    """200 addresses on each of two NICs with their own /24s, applied with the old layout
    (two rules per address): the doctor counts them and says apply needs 3."""
    from multihome.core.model import Family, Rule

    state = host(
        {
            "eth0": [f"198.18.0.{n}/24" for n in range(1, 201)],
            "eth1": [f"198.18.1.{n}/24" for n in range(1, 201)],
        },
        [("eth0", "198.18.0.254", 100), ("eth1", "198.18.1.254", 200)],
    )
    desired = plan(Config(), state)
    per_address = tuple(
        Rule(Family.INET, priority, 100 + (a.ifname == "eth1"), ipaddress.ip_network(a.ip.ip), s, 77)
        for a in state.addresses
        for priority, s in ((1000, 0), (1002, None))
    )
    main_rule = next(r for r in desired.rules if r.src is None)
    old = replace(state, rules=(*per_address, main_rule), routes=state.routes + desired.routes)
    report = diagnose(old, {}, desired, diff(desired, old), ["eth0", "eth1"])
    (many,) = [f for f in report.findings if f.check == "many-rules"]
    assert many.summary == "801 IPv4 rules: each route lookup walks them; multihome's layout needs 3"
    assert many.fix.startswith("multihome apply")
    # the same count of someone else's rules: apply cannot fix it
    foreign = tuple(replace(r, protocol=4) for r in per_address)
    theirs = replace(old, rules=(*foreign, *desired.rules))
    (many,) = [
        f for f in diagnose(theirs, {}, desired, [], ["eth0", "eth1"]).findings if f.check == "many-rules"
    ]
    assert "803 IPv4 rules" in many.summary and many.fix.startswith("select by prefixes")
    # applied with the new layout: nothing to report
    new = replace(old, rules=desired.rules)
    assert not [f for f in diagnose(new, {}, desired, [], ["eth0", "eth1"]).findings if f.check == "many-rules"]


def test_shell_fixes_quote_interface_names() -> None:
    """A fix is pasted into a shell: an interface name with `;` or `$(...)` in it (Linux
    allows both) stays one quoted word, and its dots become slashes as sysctl wants them."""
    state = host(
        {"a;b": ["192.0.2.10/24"], "x.1": ["192.0.2.11/24"]},
        [("a;b", "192.0.2.1", 100)],
    )
    desired = plan(Config(), state)
    report = diagnose(state, {}, desired, diff(desired, state), ["a;b", "x.1"])
    (flux,) = [f for f in report.findings if f.check == "arp-flux"]
    assert "'net.ipv4.conf.a;b.arp_ignore=1'" in flux.fix
    assert "net.ipv4.conf.x/1.arp_ignore=1" in flux.fix
