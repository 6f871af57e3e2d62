"""Renderers against golden files (regenerate with UPDATE_GOLDEN=1 after a deliberate change,
and read the diff)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from multihome.core.config import Config, parse
from multihome.core.plan import plan
from multihome.render import Options, registry

from .test_plan import ARTICLE, TWO_ISP

GOLDEN = Path(__file__).parent / "golden"
BALANCE = parse("[multihome]\nbalance = true\n[uplinks.eth0]\nweight = 3\n[uplinks.eth1]\n", "m")
CASES = {
    "article": (ARTICLE, Config()),
    "two-isp": (TWO_ISP, Config()),
    # balancing: a namespace-wide sysctl beside the ARP ones, and table 199 with its rule
    "article-balance": (ARTICLE, parse("[multihome]\nbalance = true\n", "m")),
    "two-isp-balance": (TWO_ISP, BALANCE),
}
OPTIONS = Options(executable="/usr/local/bin/multihome", network_files={"eth1": "50-dhcp.network"})


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("format_name", sorted(registry()))
def test_renderer_matches_golden_files(case: str, format_name: str) -> None:
    renderer, _ = registry()[format_name]
    state, config = CASES[case]
    rendered = renderer(plan(config, state), OPTIONS)
    directory = GOLDEN / case / format_name
    files = dict(rendered.files)
    files["NOTES"] = "".join(f"{note}\n" for note in rendered.notes)
    if os.environ.get("UPDATE_GOLDEN"):
        for relative, text in files.items():
            (directory / relative).parent.mkdir(parents=True, exist_ok=True)
            (directory / relative).write_text(text)
    stored = {
        str(p.relative_to(directory)): p.read_text() for p in directory.rglob("*") if p.is_file()
    }
    assert stored == files


@pytest.mark.parametrize("format_name", sorted(registry()))
def test_balancing_route_and_rule_go_together_or_are_left_to_watch(format_name: str) -> None:
    """Each format writes the balancing route wherever it writes its rule; a format that
    writes neither says that multihome-watch.service does."""
    renderer, _ = registry()[format_name]
    rendered = renderer(plan(BALANCE, TWO_ISP), OPTIONS)
    text = "".join(rendered.files.values())
    rule = any(marker in text for marker in ("lookup 199", "Table=199", "table 199"))
    route = any(marker in text for marker in ("table 199 ", "nexthop", "table=199"))
    if format_name == "systemd":  # runs `multihome apply`, which builds both
        assert not rule and not route
        return
    assert rule == route, text
    if not rule:
        assert any("multihome-watch.service" in note for note in rendered.notes)


def test_networkd_uses_the_network_file_that_manages_the_uplink() -> None:
    renderer, _ = registry()["networkd"]
    files = renderer(plan(Config(), TWO_ISP), OPTIONS).files
    assert sorted(files) == [
        "10-eth0.network.d/90-multihome.conf",
        "50-dhcp.network.d/90-multihome.conf",
    ]


def test_netplan_says_what_it_cannot_express() -> None:
    renderer, _ = registry()["netplan"]
    rendered = renderer(plan(Config(), TWO_ISP), OPTIONS)
    assert "suppress_prefixlength" in rendered.notes[0] and "(1 rules)" in rendered.notes[0]
    assert "source prefix" in rendered.notes[1] and "(2 routes)" in rendered.notes[1]
    assert "from 2001:db8" not in rendered.files["90-multihome.yaml"]
    assert "suppress" not in rendered.files["90-multihome.yaml"]


@pytest.mark.parametrize("place", ["/root/multihome/.venv", "/tmp/clone/.venv", "/home/ann/v"])
def test_systemd_units_say_when_their_sandbox_hides_the_program(place: str) -> None:
    renderer, _ = registry()["systemd"]
    hidden = Options(executable=f"{place}/bin/multihome")
    notes = renderer(plan(Config(), TWO_ISP), hidden).notes
    assert any("their sandbox hides" in n and place in n for n in notes), notes
    # where the sandbox sees it, nothing is said
    assert not any("sandbox" in n for n in renderer(plan(Config(), TWO_ISP), OPTIONS).notes)


def test_the_watch_unit_may_write_the_ra_daemons_configuration_where_configured() -> None:
    renderer, _ = registry()["systemd"]
    options = Options(executable="/usr/bin/multihome", writable=("/etc/dnsmasq.d",))
    watch = renderer(plan(Config(), TWO_ISP), options).files["multihome-watch.service"]
    assert "ReadWritePaths=-/etc/dnsmasq.d\n" in watch and "ProtectSystem=strict" in watch
    plain = renderer(plan(Config(), TWO_ISP), OPTIONS).files["multihome-watch.service"]
    assert "dnsmasq" not in plain


def test_networkmanager_refuses_a_name_nmcli_would_read_as_an_option() -> None:
    """nmcli takes a device by its bare name; `-ask` would have it prompt, another `-...` be
    taken for an option: the format refuses such an uplink, naming it (the others take any
    name the kernel does)."""
    from multihome.errors import MultihomeError

    from .hosts import host

    state = host(
        {"-ask": ["192.0.2.10/27"], "eth1": ["192.0.2.42/27"]},
        [("-ask", "192.0.2.1", 100), ("eth1", "192.0.2.33", 200)],
    )
    desired = plan(Config(), state)
    assert {u.name for u in desired.uplinks} == {"-ask", "eth1"}
    with pytest.raises(MultihomeError, match="nmcli would read the interface name '-ask'"):
        registry()["networkmanager"][0](desired, OPTIONS)
    helped = host(
        {"he": ["192.0.2.10/27"], "eth1": ["192.0.2.42/27"]},
        [("he", "192.0.2.1", 100), ("eth1", "192.0.2.33", 200)],
    )
    with pytest.raises(MultihomeError, match="'he' as an option or a request for help"):
        registry()["networkmanager"][0](plan(Config(), helped), OPTIONS)
    assert registry()["systemd"][0](desired, OPTIONS).files
