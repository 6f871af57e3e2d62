"""The transport against the real kernel: every request is answered at its own position,
and however many requests a write makes, their answers never overflow the socket."""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import socket
import subprocess
from collections.abc import Iterator

import pytest

from multihome.core.model import Family, Rule
from multihome.kernel import codec, namespace
from multihome.kernel.objects import rule_request
from multihome.kernel.transport import RtnlSocket


@pytest.fixture
def netns() -> Iterator[str]:
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
    rules = [_rule(i) for i in range(3000)]  # many batches of requests
    duplicates = {0, 1, 1500, 2047, 2999}  # first, second, middle, anywhere, last
    with namespace.inside(netns):
        rtnl = RtnlSocket()
    with rtnl:
        added = rtnl.transact([rule_request(codec.RTM_NEWRULE, rules[i]) for i in duplicates])
        assert added == [None] * len(duplicates)
        verdicts = rtnl.transact([rule_request(codec.RTM_NEWRULE, r) for r in rules])
        refused = {i for i, v in enumerate(verdicts) if v is not None}
        assert refused == duplicates
        assert all(v is not None and v.errno == errno.EEXIST for v in verdicts if v)
        # the socket is in step afterwards: the next transaction gets its own answers
        verdicts = rtnl.transact([rule_request(codec.RTM_DELRULE, r) for r in rules])
        assert verdicts == [None] * len(rules)
    listed = json.loads(
        subprocess.run(
            ["ip", "-n", netns, "-j", "rule"], capture_output=True, text=True, check=True
        ).stdout
    )
    assert [r["priority"] for r in listed] == [0, 32766, 32767]


SMALL = 4096  # SO_RCVBUF asked for; the kernel doubles it: room for a handful of answers


def test_thousands_of_refusals_do_not_overflow_a_small_receive_buffer(netns: str) -> None:
    # 3,000 deletes of rules that do not exist: the kernel refuses each one (ENOENT), and
    # every refusal is a message queued on the socket, acked or not.
    requests = [rule_request(codec.RTM_DELRULE, _rule(i)) for i in range(3000)]
    with namespace.inside(netns):
        raw = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        rtnl = RtnlSocket(receive_buffer=SMALL)
    # As the transport before sent them: as many requests in one datagram as fit 96 KiB,
    # acked or not, the answers read after the send. The socket overflows: answers are lost.
    try:
        raw.bind((0, 0))
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        raw.send(b"".join(requests[: 96 * 1024 // len(requests[0])]))
        with pytest.raises(OSError) as lost:
            while True:
                raw.recv(1 << 16, socket.MSG_DONTWAIT)
        assert lost.value.errno == errno.ENOBUFS
    finally:
        raw.close()
    # The transport now: every answer arrives, each at its own request's position.
    with rtnl:
        assert rtnl.batch_requests < 10
        verdicts = rtnl.transact(requests)
    assert len(verdicts) == len(requests)
    assert all(v is not None and v.errno == errno.ENOENT for v in verdicts)
