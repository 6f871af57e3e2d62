"""What `multihome install` persisted is recognised after a reboot (issue 28, 1): the stack
brings the layout back under its own protocol (networkd's rules, NetworkManager's rules and
routes: `proto static`); plan, diff and the doctor take it for multihome's, apply adds
nothing, remove leaves it whole (the stack is its one owner), and the install manifest's
record of it is checked like the rest of the manifest."""

from __future__ import annotations

import json
from ipaddress import ip_network
from pathlib import Path

import pytest

from multihome.core.config import Config
from multihome.core.diff import diff
from multihome.core.model import Action, Desired, HostState, Route, Rule, layout_key
from multihome.core.plan import plan
from multihome.core.records import replace
from multihome.errors import MultihomeError
from multihome.host import install
from multihome.render import Options, netplan, networkd, networkmanager, systemd

from .test_plan import TWO_ISP

STATIC = 4  # RTPROT_STATIC: what networkd and NetworkManager give their rules


def installed_config(desired: Desired) -> Config:
    keys = frozenset(layout_key(o) for o in networkd.render(desired, Options()).persisted)
    return replace(Config(), ownership=replace(Config().ownership, installed=keys))


def booted(desired: Desired, rules_protocol: int = STATIC) -> HostState:
    """The host after a reboot with networkd's drop-ins: the rules under networkd's
    protocol, the routes under multihome's (networkd's drop-ins say Protocol=77)."""
    balance = desired.ownership.balance_table  # the watch's rule: its own protocol
    rules = tuple(
        r if r.table == balance else replace(r, protocol=rules_protocol) for r in desired.rules
    )
    return replace(TWO_ISP, rules=TWO_ISP.rules + rules, routes=TWO_ISP.routes + desired.routes)


def test_without_the_manifest_the_stacks_rules_are_someone_elses() -> None:
    desired = plan(Config(), TWO_ISP)
    host = booted(desired)
    replanned = plan(Config(), host)
    # the old behaviour: every rule added again beside networkd's
    added = [c.obj for c in diff(replanned, host) if c.action is Action.ADD]
    assert added and all(isinstance(o, Rule) for o in added)


def test_a_booted_install_is_the_plan_apply_adds_nothing_remove_keeps_it() -> None:
    desired = plan(Config(), TWO_ISP)
    config = installed_config(desired)
    host = booted(desired)
    replanned = plan(config, host)
    assert [u.table for u in replanned.uplinks] == [u.table for u in desired.uplinks]
    assert diff(replanned, host) == []
    # remove: the layout stays whole (no rule is left pointing at an emptied table)
    assert diff(Desired(config.ownership), host) == []


def test_remove_takes_what_is_not_installed_and_apply_s_copies() -> None:
    desired = plan(replace(Config(), balance=True), TWO_ISP)
    config = installed_config(desired)
    host = booted(desired)
    # an apply before the reboot left copies of the rules under multihome's protocol
    copies = tuple(r for r in desired.rules if r.table != config.ownership.balance_table)
    host = replace(host, rules=host.rules + copies)
    gone = diff(Desired(config.ownership), host)
    assert all(c.action is Action.DELETE for c in gone)
    deleted = {c.obj for c in gone}
    objects: list[Rule | Route] = [*desired.rules, *desired.routes]
    balancing: set[Rule | Route | object] = {o for o in objects if o.table == 199}
    assert balancing and balancing <= deleted  # the watch's: not in the stack's files
    assert set(copies) <= deleted  # apply's copies beside networkd's own
    kept_rules = [r for r in host.rules if r not in deleted and r.priority in range(1000, 1004)]
    assert {r.protocol for r in kept_rules} == {STATIC}
    assert deleted == set(copies) | balancing  # nothing of the stack's


def test_each_stack_records_what_it_carries() -> None:
    desired = plan(Config(), TWO_ISP)
    objects: list[Rule | Route] = [*desired.rules, *desired.routes]
    whole = {layout_key(o) for o in objects}
    for renderer in (networkd.render, networkmanager.render):
        assert {layout_key(o) for o in renderer(desired, Options()).persisted} == whole
    # netplan: no suppress_prefixlength (those rules are multihome.service's)
    carried = netplan.render(desired, Options()).persisted
    assert all(isinstance(o, Route) or o.suppress_prefixlen is None for o in carried)
    assert any(isinstance(o, Rule) for o in carried)
    assert systemd.render(desired, Options()).persisted == ()  # apply's own objects


def test_the_manifest_s_layout_is_checked(tmp_path: Path) -> None:
    manifest = tmp_path / install.MANIFEST
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"files": [], "layout": ["rule -4 pref 1000 proto 0"]}))
    assert install.installed_layout(str(tmp_path)) == {"rule -4 pref 1000 proto 0"}
    for bad in (["rm -rf /"], [7], "rule -4", ["rule -4 \n"]):
        manifest.write_text(json.dumps({"files": [], "layout": bad}))
        with pytest.raises(MultihomeError, match="damaged"):
            install.installed_layout(str(tmp_path))
    manifest.write_text(json.dumps({"files": [], "directories": ["../etc"]}))
    with pytest.raises(MultihomeError, match="damaged"):
        install.installed_layout(str(tmp_path))


def test_uninstall_never_takes_the_kernels_own_objects_whatever_a_manifest_lists() -> None:
    from multihome.core.model import Family
    from multihome.host.install import _could_be_ours

    main_rule = Rule(Family.INET, 32766, 254, protocol=2)
    assert not _could_be_ours(main_rule)
    suppress = Rule(Family.INET, 1001, 254, suppress_prefixlen=0, protocol=4)
    assert _could_be_ours(suppress)  # multihome's rule 2 looks up main
    default = Route(Family.INET, 254, ip_network("0.0.0.0/0"), "eth0", protocol=3)
    assert not _could_be_ours(default)
    # in main, only an IPv6 route from a prefix (the layout of an uplink alone on it)
    six = Route(Family.INET6, 254, ip_network("::/0"), "eth0", protocol=4)
    assert not _could_be_ours(six)
    sourced = replace(six, source=ip_network("2001:db8::/64"))
    assert _could_be_ours(sourced)  # a stack's copy (proto static)
    assert _could_be_ours(replace(sourced, protocol=77))  # the ip or ifupdown script's
    for foreign in (3, 186):  # the same arguments, written by an admin or by BIRD
        assert not _could_be_ours(replace(sourced, protocol=foreign))
