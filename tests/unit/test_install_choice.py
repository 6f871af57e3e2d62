from __future__ import annotations

from multihome.core.config import Config
from multihome.core.plan import plan
from multihome.host.install import Facts, choose

from .test_plan import ARTICLE, TWO_ISP


def test_one_stack_for_all_uplinks_gets_its_format() -> None:
    networkd = Facts({"eth0": "10-eth0.network", "eth1": "10-eth1.network"}, set(), set())
    assert choose(networkd, plan(Config(), TWO_ISP))[0] == ["networkd"]
    # networkd sets no sysctls: the ARP settings go to sysctl.d
    assert choose(networkd, plan(Config(), ARTICLE))[0] == ["networkd", "systemd-sysctl"]
    nm = Facts({}, {"eth0", "eth1"}, set())
    assert choose(nm, plan(Config(), TWO_ISP))[0] == ["networkmanager"]
    ifupdown = Facts({}, set(), {"eth0", "eth1"})
    assert choose(ifupdown, plan(Config(), ARTICLE))[0] == ["ifupdown"]


def test_a_mix_or_no_stack_gets_the_unit() -> None:
    mixed = Facts({"eth0": "10-eth0.network"}, {"eth1"}, set())
    formats, reasons = choose(mixed, plan(Config(), TWO_ISP))
    assert formats == ["systemd"]
    assert reasons == [
        "eth0: networkd",
        "eth1: networkmanager",
        "the uplinks have different managers: multihome-watch.service covers all",
    ]
    assert choose(Facts({}, set(), set()), plan(Config(), TWO_ISP))[0] == ["systemd"]
