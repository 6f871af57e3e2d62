"""The batched transport against the real kernel: only the last request of a batch asks for
an ack, and still every refusal is reported at its own position."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess

import pytest

from multihome.core.model import Family, Rule
from multihome.kernel import namespace, netlink


@pytest.fixture
def netns() -> object:
    name = f"mht{os.getpid() % 10000}nlb"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _rule(i: int) -> Rule:
    src = ipaddress.IPv4Network((0xC6120000 + i, 32))  # 198.18.0.0/15, LAN range
    return Rule(Family.INET, 1000, 100, src, 0, 77)


def test_refusals_are_reported_where_they_happen(netns: str) -> None:
    rules = [_rule(i) for i in range(3000)]  # more than one batch of requests
    duplicates = {0, 1, 1500, 2047, 2999}  # first, second, middle, the end of a batch, last
    with namespace.inside(netns):
        rtnl = netlink.RtnlSocket()
    try:
        assert rtnl.transact(
            [netlink.encode_rule(netlink.RTM_NEWRULE, rules[i]) for i in duplicates]
        ) == [None] * len(duplicates)
        verdicts = rtnl.transact([netlink.encode_rule(netlink.RTM_NEWRULE, r) for r in rules])
        refused = {i for i, v in enumerate(verdicts) if v is not None}
        assert refused == duplicates
        assert all(v is not None and v.errno == 17 for i, v in enumerate(verdicts) if i in refused)
        # the socket is in step afterwards: the next transaction gets its own answers
        verdicts = rtnl.transact([netlink.encode_rule(netlink.RTM_DELRULE, r) for r in rules])
        assert verdicts == [None] * len(rules)
    finally:
        rtnl.close()
    listed = json.loads(
        subprocess.run(
            ["ip", "-n", netns, "-j", "rule"], capture_output=True, text=True, check=True
        ).stdout
    )
    assert [r["priority"] for r in listed] == [0, 32766, 32767]
