from __future__ import annotations

from multihome.core.config import Config
from multihome.core.diff import diff
from multihome.core.plan import plan
from multihome.render import ip

from .test_plan import ARTICLE


def test_article_recipe_exact_for_this_host() -> None:
    assert ip.commands(diff(plan(Config(), ARTICLE), ARTICLE)) == [
        "ip -4 route add 192.0.2.0/24 dev eth0 table 100 proto 77 scope link src 192.0.2.10",
        "ip -4 route add default via 192.0.2.1 dev eth0 table 100 proto 77",
        "ip -4 route add 192.0.2.0/24 dev eth1 table 101 proto 77 scope link src 192.0.2.11",
        "ip -4 route add default via 192.0.2.1 dev eth1 table 101 proto 77",
        "ip -4 rule add pref 1000 from 192.0.2.10/32 lookup 100 suppress_prefixlength 0 proto 77",
        "ip -4 rule add pref 1000 from 192.0.2.11/32 lookup 101 suppress_prefixlength 0 proto 77",
        "ip -4 rule add pref 1001 from all lookup main suppress_prefixlength 0 proto 77",
        "ip -4 rule add pref 1002 from 192.0.2.10/32 lookup 100 proto 77",
        "ip -4 rule add pref 1002 from 192.0.2.11/32 lookup 101 proto 77",
        "sysctl -w net.ipv4.conf.eth0.arp_ignore=1",
        "sysctl -w net.ipv4.conf.eth0.arp_announce=2",
        "sysctl -w net.ipv4.conf.eth1.arp_ignore=1",
        "sysctl -w net.ipv4.conf.eth1.arp_announce=2",
    ]
