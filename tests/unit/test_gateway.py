"""Gateway mode without a kernel: the [gateway] config, the plan (fwmark rules, balancing
route, sysctls), the nftables table it renders, and the overlap check against other software's
marks."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from multihome.core import gateway
from multihome.core.config import Sticky, parse
from multihome.core.model import Family, Ownership, Rule, layout_key
from multihome.core.plan import plan
from multihome.errors import ConfigError
from multihome.kernel import codec, objects
from tests.unit.hosts import host

OWN = Ownership()

ROUTER = """\
[gateway]
lan = ["lan0"]
"""


def router(forwarding: str = "1", extra: dict[str, str] | None = None) -> Any:
    return host(
        {"eth0": ["192.0.2.10/27"], "eth1": ["192.0.2.42/27"], "lan0": ["198.18.0.1/24"]},
        defaults=[("eth0", "192.0.2.1", 100), ("eth1", "192.0.2.33", 200)],
        sysctls={"net/ipv4/ip_forward": forwarding, **(extra or {})},
    )


def test_gateway_defaults() -> None:
    config = parse(ROUTER, "m.toml")
    assert config.gateway is not None
    assert config.gateway.lan == ("lan0",)
    assert config.gateway.masquerade is True and config.gateway.flush_on_down is True
    assert config.gateway.sticky is Sticky.FLOW and config.mark_mask == 0x0F000000


@pytest.mark.parametrize(
    ("text", "located", "fragment"),
    [
        ('[gateway]\nlan = ["lan0"]\nsticki = "flow"\n', "m.toml:3: gateway.sticki", "did you mean 'sticky'"),
        ('[gateway]\nlan = ["lan0"]\nsticky = "host_pair"\n', "m.toml:3: gateway.sticky", "did you mean 'host-pair'"),
        ('[gateway]\nlan = "lan0"\n', "m.toml:2: gateway.lan", "list of interface names"),
        ('[gateway]\nlan = ["lan0"]\nmark_mask = 0x01000000\n', "m.toml:3: gateway.mark_mask", "room for 1 uplink"),
        ('[gateway]\nlan = ["lan0"]\nmark_mask = 0x05000000\n', "m.toml:3: gateway.mark_mask", "room for 0 uplink"),
        ('[gateway]\nlan = ["lan0"]\nmasquerade = "yes"\n', "m.toml:3: gateway.masquerade", "true or false"),
        ('[uplinks.eth0]\n[gateway]\nlan = ["eth0"]\n', "m.toml:3: gateway.lan", "is an uplink"),
        ('[gatway]\nlan = ["lan0"]\n', "m.toml:1: gatway", "did you mean 'gateway'"),
    ],
)
def test_gateway_config_errors(text: str, located: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(text, "m.toml")
    assert str(caught.value).startswith(located), str(caught.value)
    assert fragment in str(caught.value)


def test_an_empty_lan_list_is_an_error_when_planning() -> None:
    with pytest.raises(ConfigError, match=r"m\.toml:2: gateway\.lan: names no LAN interface"):
        plan(parse("[gateway]\nlan = []\n", "m.toml"), router())
    with pytest.raises(ConfigError, match=r"m\.toml:1: gateway\.lan: names no LAN interface"):
        plan(parse("[gateway]\nmasquerade = true\n", "m.toml"), router())


def test_forwarding_off_is_an_error_with_the_fix() -> None:
    with pytest.raises(ConfigError) as caught:
        plan(parse(ROUTER, "m.toml"), router(forwarding="0"))
    assert "net.ipv4.ip_forward=0" in str(caught.value)
    assert "sysctl -w net.ipv4.ip_forward=1" in caught.value.hint


def test_missing_lan_interface_is_located() -> None:
    with pytest.raises(ConfigError, match=r"m\.toml:2: gateway\.lan: no interface named 'lan9'"):
        plan(parse('[gateway]\nlan = ["lan9"]\n', "m.toml"), router())


def test_plan_gateway_layout() -> None:
    desired = plan(parse(ROUTER, "m.toml"), router())
    # the LAN interface is not detected as an uplink
    assert [u.name for u in desired.uplinks] == ["eth0", "eth1"]
    fwmark = [r for r in desired.rules if r.fwmark is not None]
    assert [(r.priority, r.table, r.fwmark, r.fwmask) for r in fwmark] == [
        (1002, 100, 0x01000000, 0x0F000000),
        (1002, 101, 0x02000000, 0x0F000000),
    ]
    main = next(r for r in desired.rules if r.table == 254)
    assert all(r.priority > main.priority for r in fwmark)  # main's specific routes win
    balancing = [r for r in desired.routes if r.table == 199]
    assert len(balancing) == 1 and len(balancing[0].nexthops) == 2
    assert any(r.priority == 1003 and r.table == 199 for r in desired.rules)
    sysctls = {s.path: s.value for s in desired.sysctls}
    assert sysctls["net/ipv4/conf/all/src_valid_mark"] == "1"
    assert sysctls["net/ipv4/fib_multipath_hash_policy"] == "1"
    assert desired.gateway is not None
    assert desired.gateway.marks == (("eth0", 0x01000000), ("eth1", 0x02000000))
    assert "fwmark 0x1000000/0xf000000" in fwmark[0].ip_args()


def test_host_pair_uses_the_layer3_hash_and_a_set_per_uplink() -> None:
    desired = plan(parse(ROUTER + 'sticky = "host-pair"\n', "m.toml"), router())
    sysctls = {s.path: s.value for s in desired.sysctls}
    assert sysctls["net/ipv4/fib_multipath_hash_policy"] == "0"
    assert desired.gateway is not None and desired.gateway.host_pair
    text = gateway.table_text(desired.gateway)
    assert "\tset pairs2 {\n\t\ttype ipv4_addr . ipv4_addr\n\t\tflags dynamic,timeout\n\t\ttimeout 1h" in text
    assert 'ip saddr . ip daddr @pairs2 meta mark set meta mark & 0xf0ffffff | 0x02000000' in text
    assert 'oifname "eth0" update @pairs1 { ip saddr . ip daddr }' in text
    assert gateway.pair_set(desired.gateway, "eth1") == "pairs2"
    assert gateway.shape(desired.gateway) == {
        "set pairs1": 0,
        "set pairs2": 0,
        "chain prerouting": 6,
        "chain output": 2,
        "chain postrouting": 4,
        "chain nat": 2,
    }
    flow = plan(parse(ROUTER, "m.toml"), router()).gateway
    assert flow is not None and "set pairs" not in gateway.table_text(flow)


def test_down_uplink_leaves_the_multipath_route_but_keeps_its_mark() -> None:
    desired = plan(parse(ROUTER, "m.toml"), router(), down=frozenset({"eth1"}))
    balancing = next(r for r in desired.routes if r.table == 199)
    assert balancing.dev == "eth0" and not balancing.nexthops
    assert desired.gateway is not None and desired.gateway.mark_of("eth1") == 0x02000000
    assert any(r.fwmark == 0x02000000 for r in desired.rules)


def test_table_text_writes_only_inside_the_mask() -> None:
    desired = plan(parse(ROUTER + "mark_mask = 0x00F00000\n", "m.toml"), router())
    assert desired.gateway is not None
    text = gateway.table_text(desired.gateway)
    assert "meta mark set meta mark & 0xff0fffff | 0x00100000" in text
    assert "ct mark set ct mark & 0xff0fffff | 0x00200000" in text
    assert 'iifname "lan0" oifname "eth1" masquerade' in text
    assert "priority mangle" in text and "flush" not in text
    script = gateway.replace_script(desired.gateway)
    assert script.startswith("table inet multihome\ndelete table inet multihome\n")
    assert gateway.replace_script(None) == "table inet multihome\ndelete table inet multihome\n"
    no_nat = plan(parse(ROUTER + "masquerade = false\n", "m.toml"), router()).gateway
    assert no_nat is not None and "masquerade" not in gateway.table_text(no_nat)
    assert gateway.digest(no_nat) != gateway.digest(desired.gateway)


def _nft_rule(table: str, expr: list[Any]) -> dict[str, Any]:
    return {"rule": {"family": "ip", "table": table, "chain": "c", "expr": expr}}


MARK = {"meta": {"key": "mark"}}


@pytest.mark.parametrize(
    ("expr", "mask", "overlaps"),
    [
        # kube-proxy: meta mark set meta mark | 0x4000
        ([{"mangle": {"key": MARK, "value": {"|": [MARK, 0x4000]}}}], 0x0F000000, False),
        ([{"mangle": {"key": MARK, "value": {"|": [MARK, 0x4000]}}}], 0x0000F000, True),
        # mwan3-style match: meta mark & 0x3f00 == 0x100
        ([{"match": {"op": "==", "left": {"&": [MARK, 0x3F00]}, "right": 0x100}}], 0x0F000000, False),
        ([{"match": {"op": "==", "left": {"&": [MARK, 0x3F00]}, "right": 0x100}}], 0x0F00, True),
        # an exact value: wg-quick's 51820
        ([{"match": {"op": "==", "left": MARK, "right": 51820}}], 0x0F000000, False),
        # meta mark set 0x1: overwrites every bit, ours too
        ([{"mangle": {"key": MARK, "value": 1}}], 0x0F000000, True),
        ([{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth0"}}], 0x0F000000, False),
    ],
)
def test_nft_mark_users(expr: list[Any], mask: int, overlaps: bool) -> None:
    ruleset = {"nftables": [_nft_rule("other", expr), _nft_rule("multihome", expr)]}
    found = gateway.nft_mark_users(ruleset, mask)
    assert bool(found) is overlaps
    assert all("multihome" not in line for line in found)  # our own table is not a user


def test_rule_mark_users_and_refusal_names_the_rule() -> None:
    foreign = [
        Rule(Family.INET, 100, 200, None, None, 4, fwmark=0x01000000, fwmask=0x0F000000),
        Rule(Family.INET, 101, 201, None, None, 4, fwmark=51820, fwmask=0xFFFFFFFF),
        Rule(Family.INET, 1002, 100, None, None, 77, fwmark=0x01000000, fwmask=0x0F000000),
    ]
    found = gateway.rule_mark_users(foreign, 0x0F000000, OWN)
    assert found == ["rule `ip -4 rule pref 100 from all fwmark 0x1000000/0xf000000 lookup 200 proto 4`"]
    # after a reboot the network stack brings back what `multihome install` persisted under
    # its own protocol (networkd: static): multihome's own layout, not another mark user
    installed = Rule(Family.INET, 1002, 100, None, None, 4, fwmark=0x01000000, fwmask=0x0F000000)
    own = Ownership(installed=frozenset({layout_key(installed)}))
    assert gateway.rule_mark_users([installed], 0x0F000000, own) == []
    assert gateway.rule_mark_users([installed], 0x0F000000, OWN) != []


def test_fwmark_rule_round_trips_through_the_codec() -> None:
    rule = Rule(Family.INET, 1002, 100, None, None, 77, fwmark=0x02000000, fwmask=0x0F000000)
    message = objects.rule_request(codec.RTM_NEWRULE, rule)
    assert objects.rule_of(codec.decode_rule(message, 16, len(message))) == rule
    source = Rule(Family.INET, 1000, 100, ipaddress.ip_network("192.0.2.10/32"), 0, 77)
    message = objects.rule_request(codec.RTM_NEWRULE, source)
    assert objects.rule_of(codec.decode_rule(message, 16, len(message))) == source


def test_metrics_show_connections_and_bytes_per_uplink() -> None:
    from multihome.watch.metrics import metrics_text

    uplink = {"state": "up", "last_rtt_ms": 1.0, "probes_lost": 0}
    status = {
        "uplinks": {
            "eth0": {"ipv4": {**uplink, "connections": 7, "bytes": 1234}},
            "eth1": {"ipv4": uplink},
        },
        "reconciles": 1,
        "errors": 0,
    }
    text = metrics_text(status, {})
    assert 'multihome_uplink_connections_total{uplink="eth0"} 7' in text
    assert 'multihome_uplink_connection_bytes_total{uplink="eth0"} 1234' in text
    # eth1's status has no counts: it has no sample of either metric (not a 0)
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    for metric in ("multihome_uplink_connections_total", "multihome_uplink_connection_bytes_total"):
        assert [line.split("{")[1].split("}")[0] for line in samples if line.startswith(metric + "{")] == ['uplink="eth0"']


def test_doctor_forwarding_checks() -> None:
    from multihome.core import gateway_doctor

    state = router()
    numgen_snat = _nft_rule(
        "rrsnat",
        [{"snat": {"addr": {"map": {"key": {"numgen": {"mode": "inc", "mod": 2}}, "data": {"set": [[0, "192.0.2.10"], [1, "192.0.2.42"]]}}}}}],
    )
    single_snat = _nft_rule("fixed", [{"snat": {"addr": "192.0.2.10"}}])
    flowtable = {"flowtable": {"family": "inet", "table": "f", "name": "ft", "dev": ["eth0", "eth1"]}}
    mangle = _nft_rule("mangler", [{"mangle": {"key": MARK, "value": {"|": [MARK, 0x01000000]}}}])
    ruleset = {"nftables": [numgen_snat, single_snat, flowtable, mangle]}
    found = {f.check: f for f in gateway_doctor.findings(state, ruleset, 0x0F000000, False, OWN)}
    assert set(found) == {"snat-several-addresses", "mark-overlap", "flowtable"}
    assert "table ip rrsnat" in found["snat-several-addresses"].summary
    assert found["mark-overlap"].severity.value == "warning"  # no [gateway]: a warning only
    # not forwarding: none of this applies
    assert gateway_doctor.findings(router(forwarding="0"), ruleset, 0x0F000000, False, OWN) == []
    assert not gateway_doctor.findings(state, {"nftables": []}, 0x0F000000, True, OWN)


def test_doctor_port_forward_replies_by_the_route_the_kernel_gives() -> None:
    """forwarding-one-uplink comes from the lookup a forwarded reply gets, with the mark the
    kernel would restore on it: a finding only when it leaves by another uplink."""
    from multihome.core import firewall, gateway_doctor
    from multihome.core.model import Lookup

    state = router()
    save = (
        "*nat\n-A PREROUTING -i eth1 -p tcp -m tcp --dport 8080 -j DNAT"
        " --to-destination 198.18.0.10:8080\n-A PREROUTING -i eth0 -p tcp -m tcp --dport 22"
        " -j DNAT --to-destination 192.0.2.20:22\nCOMMIT\n"
    )
    found = firewall.read([(firewall.Source.IPTABLES_NFT, 4, save)], None)
    probes = gateway_doctor.reply_probes(state, ["eth0", "eth1"], found, None)
    # the DNAT to eth0's own subnet is not a port forward to a local bridge
    assert [(p.uplink, p.device, str(p.src), p.mark) for p in probes] == [
        ("eth1", "lan0", "198.18.0.10", 0)
    ]
    probe = probes[0]
    gw0 = ipaddress.ip_address("192.0.2.1")
    leaks = {probe.key: Lookup(probe.dst, probe.src, "eth0", gw0, 254, iif="lan0")}
    (finding,) = gateway_doctor.findings(
        state, None, 0x0F000000, False, OWN, found, (probes, leaks)
    )
    assert finding.check == "forwarding-one-uplink"
    assert finding.summary == "replies to port forwards on eth1 leave by eth0"
    assert any("iptables-nft, table nat, chain PREROUTING" in e for e in finding.evidence)
    assert any("iif lan0 mark 0x0 -> " in e and "dev eth0" in e for e in finding.evidence)
    assert "multihome apply" in finding.fix
    gw1 = ipaddress.ip_address("192.0.2.33")
    right = {probe.key: Lookup(probe.dst, probe.src, "eth1", gw1, 101, iif="lan0")}
    assert gateway_doctor.findings(state, None, 0x0F000000, False, OWN, found, (probes, right)) == []
    # with multihome's table live, the lookup carries eth1's mark
    live = plan(parse("", "m.toml"), state, firewall=found).gateway
    assert live is not None
    (marked,) = gateway_doctor.reply_probes(state, ["eth0", "eth1"], found, live)
    assert marked.mark == 0x02000000


def test_pinning_is_planned_from_the_firewall() -> None:
    """Host mode pins inbound forwarded connections where a DNAT leads to a local
    interface that is not an uplink; the reasons name the rule; nothing else changes."""
    from multihome.core import firewall

    state = router()
    docker = (
        "*nat\n:DOCKER - [0:0]\n-A DOCKER ! -i lan0 -p tcp -m tcp --dport 8080 -j DNAT"
        " --to-destination 198.18.0.2:80\nCOMMIT\n"
    )
    found = firewall.read([(firewall.Source.IPTABLES_NFT, 4, docker)], None)
    desired = plan(parse("", "m.toml"), state, firewall=found)
    assert desired.pinning == (
        "eth0, eth1: DNAT to lan0 found (iptables-nft, table nat, chain DOCKER)",
    )
    layout = desired.gateway
    assert layout is not None and layout.pin_forwarded and layout.lan == ()
    assert layout.marks == (("eth0", 0x01000000), ("eth1", 0x02000000))
    fwmarks = [(r.fwmark, r.fwmask, r.table, r.priority) for r in desired.rules if r.fwmark]
    assert fwmarks == [(0x01000000, 0x0F000000, 100, 1002), (0x02000000, 0x0F000000, 101, 1002)]
    assert gateway.SRC_VALID_MARK in {s.path for s in desired.sysctls}
    text = gateway.table_text(layout)
    assert "chain forward {" in text and "hook forward priority mangle" in text
    assert "chain output" not in text and "masquerade" not in text and "chain nat" not in text
    assert 'iifname "eth1" ct mark set ct mark & 0xf0ffffff | 0x02000000' in text
    # without the firewall, without forwarding, with pin_inbound = false: no pinning
    without = plan(parse("", "m.toml"), state)
    assert without.gateway is None and not without.pinning
    assert plan(parse("", "m.toml"), router(forwarding="0"), firewall=found).gateway is None
    off = plan(parse("[multihome]\npin_inbound = false\n", "m.toml"), state, firewall=found)
    assert off.gateway is None and not off.pinning
    assert [r for r in off.rules if r.fwmark] == []
    # a firewall that could not be read (not root): nothing planned, and a note says why
    unread = plan(parse("", "m.toml"), state, firewall=firewall.read([], None, (), ["iptables-save"]))
    assert unread.gateway is None and (
        "inbound pinning: iptables-save could not be read (run as root to see its port forwards)"
        in unread.notes
    )
    # gateway mode's table pins inbound connections itself: no second layout
    gw = plan(parse(ROUTER, "m.toml"), state, firewall=found)
    assert gw.gateway is not None and not gw.gateway.pin_forwarded and not gw.pinning


def test_pinning_left_out_on_a_mark_overlap_with_a_note() -> None:
    from multihome.core import firewall

    state = router()
    save = (
        "*nat\n-A PREROUTING -i eth1 -j DNAT --to-destination 198.18.0.10\nCOMMIT\n"
        "*mangle\n-A PREROUTING -j CONNMARK --set-xmark 0x2000000/0x3000000\nCOMMIT\n"
    )
    found = firewall.read([(firewall.Source.IPTABLES_NFT, 4, save)], None)
    desired = plan(parse("", "m.toml"), state, firewall=found)
    assert desired.gateway is None and not desired.pinning
    assert not [r for r in desired.rules if r.fwmark]
    (note,) = [n for n in desired.notes if "pinning" in n]
    assert "inbound pinning left out" in note and "CONNMARK --set-xmark 0x2000000/0x3000000" in note
    assert "[multihome] mark_mask" in note
    moved = plan(parse("[multihome]\nmark_mask = 0x00F00000\n", "m.toml"), state, firewall=found)
    assert moved.gateway is not None and moved.pinning == (
        "eth1: DNAT to lan0 found (iptables-nft, table nat, chain PREROUTING)",
    )
    assert moved.gateway.marks == (("eth1", 0x00200000),)


def test_persistence_carries_gateway_mode(tmp_path: Any) -> None:
    import os

    from multihome.host import install
    from multihome.render import Options, registry

    state = router()
    desired = plan(parse(ROUTER, "m.toml"), state)
    renderers = registry()
    networkd = renderers["networkd"][0](desired, Options()).files
    assert "FirewallMark=0x1000000/0xf000000" in networkd["10-eth0.network.d/90-multihome.conf"]
    assert "FirewallMark=0x2000000/0xf000000" in networkd["10-eth1.network.d/90-multihome.conf"]
    assert networkd["multihome.nft"].splitlines()[1:3] == [
        "table inet multihome",
        "delete table inet multihome",
    ]
    unit = networkd["multihome-nftables.service"]
    assert "ExecStart=/usr/sbin/nft -f /etc/multihome/multihome.nft" in unit
    # a restart or reload of nftables.service (`flush ruleset`) loads the table again
    assert "PartOf=nftables.service\nReloadPropagatedFrom=nftables.service\n" in unit
    assert "WantedBy=multi-user.target nftables.service\n" in unit
    nm = renderers["networkmanager"][0](desired, Options()).files["multihome-nmcli.sh"]
    assert "priority 1002 from 0.0.0.0/0 fwmark 0x1000000/0xf000000 table 100" in nm
    script = renderers["ip"][0](desired, Options()).files["multihome.sh"]
    assert "ip -4 rule add pref 1002 from all fwmark 0x2000000/0xf000000 lookup 101 proto 77" in script
    assert "nft -f - <<'EOF'\ntable inet multihome\ndelete table inet multihome\n" in script
    ifupdown = renderers["ifupdown"][0](desired, Options())
    assert "multihome.nft" in ifupdown.files and any("balancing (table 199" in n for n in ifupdown.notes)

    root = str(tmp_path)
    done = install.install(desired, state, root, "networkd", Options())
    assert os.path.isfile(os.path.join(root, "etc/multihome/multihome.nft"))
    link = os.path.join(root, "etc/systemd/system/multi-user.target.wants/multihome-nftables.service")
    assert os.readlink(link) == "../multihome-nftables.service"
    assert link in done.written
    again = os.path.join(root, "etc/systemd/system/nftables.service.wants/multihome-nftables.service")
    assert os.readlink(again) == "../multihome-nftables.service" and again in done.written
    install.uninstall(root)
    assert not os.path.exists(os.path.join(root, "etc/multihome/multihome.nft"))
    assert not os.path.lexists(link) and not os.path.lexists(again)


def test_only_multihomes_own_fwmark_rules_are_owned() -> None:
    from multihome.core.model import Ownership

    own = Ownership()
    ours = Rule(Family.INET, 1002, 100, None, None, 77, fwmark=0x01000000, fwmask=0x0F000000)
    assert own.owns_rule(ours)
    # proto 77 but not of gateway mode's form: an exact mark, or outside the fwmark priority
    assert not own.owns_rule(Rule(Family.INET, 1001, 150, None, None, 77, fwmark=1, fwmask=0xFFFFFFFF))
    assert not own.owns_rule(Rule(Family.INET, 1001, 150, None, None, 77, fwmark=0x01000000, fwmask=0x0F000000))


def test_gateway_lab_report(tmp_path: Any) -> None:
    import json as json_module

    from multihome.lab import gateway_run

    rr = gateway_run.PhaseResult(
        "round-robin-snat", {"eth0": 900, "eth1": 100}, {"eth0": 0, "eth1": 0}, 50, 50, 5, 5
    )
    failover = gateway_run.PhaseResult(
        "failover", {"eth0": 600, "eth1": 400}, {"eth0": 70, "eth1": 20}, 95, 5, 8, 2,
        failure_at=3.0, return_at=6.0, detection_s=1.5, long_on_dead=2,
        events=["isp1 upstream down at 3.0 s, detected in 1.50 s"],
    )
    assert rr.failed_share == 55 / 110 and failover.shares() == {"eth0": 0.6, "eth1": 0.4}
    lines = gateway_run.summary([rr, failover])
    assert lines[0].split() == ["phase", "eth0", "TX", "eth1", "TX", "eth0", "conns", "eth1", "conns", "ok", "failed", "failed", "%"]
    assert lines[1].split() == ["round-robin-snat", "90.00%", "10.00%", "-", "-", "55", "55", "50.0%"]
    assert lines[2].split()[3:5] == ["77.78%", "22.22%"]
    listing = "\n".join(gateway_run.listing(failover))
    assert "70 connections tracked" in listing and "sessions on the dead uplink: 2" in listing
    data = json_module.loads(json_module.dumps(gateway_run.to_json(gateway_run.GatewayOptions(), [rr, failover])))
    assert data["phases"][1]["detection_s"] == 1.5 and data["phases"][0]["failed_share"] == 0.5
    gateway_run.write_png([rr, failover], str(tmp_path / "gw.png"))
    assert (tmp_path / "gw.png").stat().st_size > 1000


def test_gateway_mode_plans_the_table_for_a_single_detected_uplink() -> None:
    # H1: one of two WANs lost its default route (link down): the table and the masquerade
    # on the WAN that still works stay; a router with one WAN gets them too
    one = host(
        {"eth0": ["192.0.2.10/27"], "eth1": ["192.0.2.42/27"], "lan0": ["198.18.0.1/24"]},
        defaults=[("eth0", "192.0.2.1", 100)],
        sysctls={"net/ipv4/ip_forward": "1"},
    )
    desired = plan(parse(ROUTER, "m.toml"), one)
    assert desired.gateway is not None and desired.gateway.masquerade
    assert [name for name, _ in desired.gateway.marks] == ["eth0"]
    assert 'oifname "eth0" masquerade' in gateway.table_text(desired.gateway)
    assert not any("single-homed" in n for n in desired.notes)
    # without [gateway] a single uplink is still left alone
    assert plan(parse("", "m.toml"), one).uplinks == ()


def test_netplan_leaves_the_masked_fwmark_rules_out_and_carries_the_table() -> None:
    from multihome.render import Options, registry

    desired = plan(parse(ROUTER, "m.toml"), router())
    rendered = registry()["netplan"][0](desired, Options())
    yaml = rendered.files["90-multihome.yaml"]
    assert "None" not in yaml and "from: 192.0.2.10" in yaml
    assert rendered.files["multihome.nft"].splitlines()[1] == "table inet multihome"
    assert "ExecStart=/usr/sbin/nft" in rendered.files["multihome-nftables.service"]
    assert any("`mark` takes no mask" in n and "(2 rules)" in n for n in rendered.notes)


def test_the_gateway_lab_says_why_a_command_failed() -> None:
    import sys

    from multihome.errors import MultihomeError
    from multihome.lab import gateway_run

    code = "import os, sys; sys.exit('refused: ' + os.environ['WHY'])"
    with pytest.raises(MultihomeError, match=r"failed: refused: the cause"):
        gateway_run.run_checked([sys.executable, "-c", code], env={"WHY": "the cause"})


CONNTRACK_L = """\
tcp      6 431999 ESTABLISHED src=198.18.0.10 dst=203.0.113.100 sport=40000 dport=9000 packets=3 bytes=180 src=203.0.113.100 dst=192.0.2.10 sport=9000 dport=40000 packets=2 bytes=120 [ASSURED] mark=16777216 use=1
tcp      6 431999 ESTABLISHED src=198.18.0.10 dst=203.0.113.100 sport=40001 dport=9000 packets=1 bytes=60 src=203.0.113.100 dst=192.0.2.42 sport=9000 dport=40001 packets=1 bytes=60 [ASSURED] mark=33554688 use=1
udp      17 29 src=198.18.0.10 dst=203.0.113.100 sport=5353 dport=53 [UNREPLIED] src=203.0.113.100 dst=192.0.2.10 sport=53 dport=5353 mark=16777216 use=1
tcp      6 10 TIME_WAIT src=192.0.2.10 dst=192.0.2.1 sport=1 dport=2 src=192.0.2.1 dst=192.0.2.10 sport=2 dport=1 [ASSURED] mark=0 use=1
"""


def test_the_uplinks_usage_comes_from_the_tables_counters() -> None:
    from multihome.watch.gateway_usage import usage

    layout = plan(parse(ROUTER, "m.toml"), router()).gateway
    assert layout is not None
    text = gateway.table_text(layout)
    assert 'counter name "conns1"' in text and 'counter name "bytes2"' in text
    figures = {"conns1": (7, 420), "bytes1": (90, 12000), "conns2": (1, 60)}
    assert usage(layout, figures) == {
        "eth0": {"connections": 7, "bytes": 12000},
        "eth1": {"connections": 1, "bytes": 0},
    }


def test_the_worker_logs_a_counting_failure_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from multihome.kernel import tools
    from multihome.watch.gateway_usage import Worker

    monkeypatch.setattr(tools, "SBIN", ())
    monkeypatch.setenv("PATH", "/nonexistent")  # nft(8) is not there
    layout = plan(parse(ROUTER, "m.toml"), router()).gateway
    logged: list[str] = []
    worker = Worker(logged.append)
    worker.use(layout)
    for _ in range(4):
        worker.sample()
        assert worker.usage() == {}
    assert len(logged) == 1 and "nft" in logged[0], logged


def test_interface_names_are_quoted_for_nft_and_a_quote_is_refused() -> None:
    odd = host(
        {"wan$1": ["192.0.2.10/27"], "eth1": ["192.0.2.42/27"], "lan{0}": ["198.18.0.1/24"]},
        defaults=[("wan$1", "192.0.2.1", 100), ("eth1", "192.0.2.33", 200)],
        sysctls={"net/ipv4/ip_forward": "1"},
    )
    desired = plan(parse('[gateway]\nlan = ["lan{0}"]\n', "m.toml"), odd)
    assert desired.gateway is not None
    text = gateway.table_text(desired.gateway)
    assert 'iifname "lan{0}" oifname "wan$1" masquerade' in text
    assert "wan$1" not in text.replace('"wan$1"', "")  # never unquoted
    quoted = host(
        {'wan"1': ["192.0.2.10/27"], "eth1": ["192.0.2.42/27"], "lan0": ["198.18.0.1/24"]},
        defaults=[('wan"1', "192.0.2.1", 100), ("eth1", "192.0.2.33", 200)],
        sysctls={"net/ipv4/ip_forward": "1"},
    )
    with pytest.raises(ConfigError, match=r"interface 'wan\"1' has a name nftables cannot quote"):
        plan(parse(ROUTER, "m.toml"), quoted)
