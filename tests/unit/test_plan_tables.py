"""An uplink's table across a link flap: the balancing table is never taken for its own."""

from __future__ import annotations

import ipaddress

from multihome.core.config import parse
from multihome.core.model import Family, NextHop, Route
from multihome.core.plan import plan
from tests.unit.hosts import host


def test_after_a_flap_an_uplink_keeps_a_table_of_its_own() -> None:
    """eth1's link went down and up: the kernel deleted its table's routes, and the only
    route of multihome's that still names it is the balancing table's multipath route."""
    gw0, gw1 = ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.33")
    balancing = Route(
        Family.INET,
        199,
        ipaddress.ip_network("0.0.0.0/0"),
        protocol=77,
        nexthops=(NextHop("eth0", gw0), NextHop("eth1", gw1)),
    )
    eth0_default = Route(
        Family.INET, 100, ipaddress.ip_network("0.0.0.0/0"), dev="eth0", gateway=gw0, protocol=77
    )
    state = host(
        {"eth0": ["192.0.2.10/27"], "eth1": ["192.0.2.42/27"], "lan0": ["198.18.0.1/24"]},
        defaults=[("eth0", "192.0.2.1", 100), ("eth1", "192.0.2.33", 200)],
        routes=(balancing, eth0_default),
        sysctls={"net/ipv4/ip_forward": "1"},
    )
    desired = plan(parse('[gateway]\nlan = ["lan0"]\n', "m.toml"), state)
    tables = {u.name: u.table for u in desired.uplinks}
    assert tables == {"eth0": 100, "eth1": 101}
