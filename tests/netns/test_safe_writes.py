"""Kernel writes that never harm what is not multihome's, on the real kernel: a refused batch
undoes exactly what it made, also with thousands of refusals and another writer at work; a
delete never removes a foreign rule; route lookups name the table that answered."""

from __future__ import annotations

import json
import pathlib
import subprocess
from collections.abc import Callable
from typing import Any

from multihome.lab import scenarios
from multihome.lab.description import Topology
from multihome.lab.topology import Network

from .helpers import PY, ip_json, multihome

Build = Callable[[Topology], Network]


def _rules(ns: str) -> list[dict[str, Any]]:
    """Every IPv4 rule as `ip -j rule` shows it, in the kernel's order."""
    found: list[dict[str, Any]] = ip_json(ns, "-4", "rule")
    return found


def _ip(ns: str, command: str) -> None:
    subprocess.run(["ip", "-n", ns, *command.split()], check=True)


def _eth1_address(i: int) -> str:
    """eth1's i-th extra address: the odd ones of 198.18.0.0/16 (eth0 holds the even ones)."""
    return f"198.18.{i // 125}.{2 * (i % 125) + 1}"


def _with_more_addresses(build: Build, count: int) -> tuple[Network, str]:
    """The seed network with `count` more addresses on each NIC, interleaved in one /16 (two
    NICs on one switch): every address of eth1 is selected by a rule of its own."""
    net = build(scenarios.seed(nics=2))
    server = net.ns("server")
    lines = [f"addr add {_eth1_address(i)}/16 dev eth1" for i in range(count)]
    lines += [
        f"addr add 198.18.{i // 125}.{2 * (i % 125) + 2}/16 dev eth0" for i in range(count)
    ]
    subprocess.run(
        ["ip", "-n", server, "-batch", "-"], input="\n".join(lines), text=True, check=True
    )
    return net, server


# A write with other writers at work: `ip -batch` from another process, with the first file
# just before the write (after multihome read the rules and planned), with the second
# between the write and its undo. The hook is the sockets the writer opens: the first for
# the write, the second for the undo; what the kernel answers is not touched. Their receive
# buffers are small (a few dozen answers), so the write's answers cross many batches.
CONCURRENT = """
import subprocess, sys
from multihome.core.config import Config
from multihome.core.diff import diff
from multihome.core.plan import plan
from multihome.errors import KernelError
from multihome.kernel import discover, namespace, writer

namespace.enter(sys.argv[1])
batches = sys.argv[2:]


class Socket(writer.RtnlSocket):
    opened = 0

    def __init__(self) -> None:
        if Socket.opened < len(batches):
            subprocess.run(["ip", "-batch", batches[Socket.opened]], check=True)
        Socket.opened += 1
        super().__init__(receive_buffer=16384)


writer.RtnlSocket = Socket
host = discover.read_state()
changes = diff(plan(Config(), host, sets_above=10**6), host)  # rules: a rule per address
try:
    writer.apply(changes, host)
except KernelError as error:
    print("refused:", error, "|", error.hint)
    sys.exit(3)
"""


def test_a_mass_refusal_with_other_writers_undoes_exactly_what_it_made(
    build: Build, tmp_path: pathlib.Path
) -> None:
    _, server = _with_more_addresses(build, 1000)
    # ahead of multihome's rules, at its priorities and sources: foreign proto-77 rules
    _ip(server, "rule add pref 1000 from 198.18.0.1 ipproto tcp lookup 150 proto 77")
    _ip(server, "rule add pref 999 from 198.18.0.2 lookup 150 proto 77")
    pristine = _rules(server)
    # Just before the write: a proto-77 rule with a tos for each of 600 of the addresses, in
    # the table multihome planned for eth1 (101). The kernel takes each for a duplicate of
    # multihome's off-link rule (it compares a rule's tos only when the new rule has one):
    # 600 refusals in one write, more answers than a socket's default buffer holds.
    before_write = tmp_path / "before-write"
    before_write.write_text(
        "\n".join(
            f"rule add pref 1002 from {_eth1_address(i)} tos 0x10 lookup 101 proto 77"
            for i in range(600)
        )
    )
    # Between the write and its undo: rules at multihome's priorities, sources and table,
    # which an undo that reads the kernel again, or a delete that names less than the whole
    # rule, would take for multihome's.
    others = [
        "rule add pref 1002 from 198.18.3.250 ipproto udp dport 53 lookup 101 proto 77",
        "rule add pref 1000 from 198.18.3.249 iif lo lookup 101 suppress_prefixlength 0 proto 77",
        "rule add pref 1000 from 203.0.113.7 lookup 150 proto 77",
    ]
    before_undo = tmp_path / "before-undo"
    before_undo.write_text("\n".join(others))
    result = subprocess.run(
        [PY, "-c", CONCURRENT, server, str(before_write), str(before_undo)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 3, result.stdout + result.stderr
    # each .1 is selected with the unused .0 beside it (198.18.X.0/31), whose rule no tos
    # rule takes for a duplicate: 595 of the 600 are refused, the first at 198.18.0.3
    first = "ip -4 rule add pref 1002 from 198.18.0.3/32 lookup 101 proto 77"
    assert f"the kernel refused `{first}` (request " in result.stdout, result.stdout
    assert ", and 594 more were refused): File exists; all " in result.stdout
    assert "changes already made were undone | nothing was changed" in result.stdout
    after = _rules(server)
    # what was there is there, byte for byte and in its order; the other writers' rules too
    assert [r for r in after if r in pristine] == pristine
    added = [r for r in after if r not in pristine]
    assert len(added) == 600 + len(others)
    assert sum(r.get("tos") == "0x10" for r in added) == 600
    assert {(r["priority"], r["src"]) for r in added if "tos" not in r} == {
        (1002, "198.18.3.250"),
        (1000, "198.18.3.249"),
        (1000, "203.0.113.7"),
    }


def test_a_delete_never_removes_a_foreign_rule_ahead_of_multihomes(build: Build) -> None:
    net = build(scenarios.seed(nics=2))
    server = net.ns("server")
    multihome(server, "apply")
    mine = next(r for r in _rules(server) if r.get("src") == "192.0.2.11" and r["priority"] == 1002)
    table = mine["table"]
    # A foreign proto-77 rule that differs from multihome's only by a selector, ahead of it:
    # multihome's rule deleted by hand, the foreign one added, multihome's put back by apply
    # (behind it, in the table its routes keep). A delete of multihome's rule would take the
    # foreign one, so remove refuses.
    _ip(server, f"rule del pref 1002 from 192.0.2.11 lookup {table} proto 77")
    ahead = f"pref 1002 from 192.0.2.11 ipproto tcp lookup {table} proto 77"
    _ip(server, f"rule add {ahead}")
    multihome(server, "apply")
    assert [r["priority"] for r in _rules(server) if r.get("src") == "192.0.2.11"].count(1002) == 2
    before = _rules(server)
    result = multihome(server, "remove", check=False)
    assert result.returncode != 0
    assert "cannot delete rule `pref 1002 from 192.0.2.11/32 lookup" in result.stderr
    assert "and selectors multihome does not write" in result.stderr
    assert "nothing was changed" in result.stderr
    assert _rules(server) == before
    # Behind it (added after), the same rule is safe: remove deletes only multihome's.
    _ip(server, f"rule del {ahead}")
    _ip(server, f"rule add {ahead}")
    foreign = [r for r in _rules(server) if r.get("ipproto") == "tcp"]
    multihome(server, "remove")
    assert [r for r in _rules(server) if r.get("protocol") in ("77", "multihome")] == foreign
    # and `show` prints a foreign inverted rule with its `not`
    _ip(server, "rule add pref 500 not from 192.0.2.10 lookup main")
    assert "pref 500 not from 192.0.2.10/32 lookup main" in multihome(server, "show").stdout


def test_the_doctor_names_the_table_a_foreign_rule_sends_lookups_to(build: Build) -> None:
    net = build(scenarios.seed(nics=2))
    server = net.ns("server")
    multihome(server, "apply")
    # table 50 routes by eth0; a foreign rule ahead of multihome's sends eth1's replies there
    _ip(server, "route add 192.0.2.0/24 dev eth0 table 50")
    _ip(server, "route add default via 192.0.2.1 dev eth0 table 50")
    _ip(server, "rule add pref 500 from 192.0.2.11 lookup 50")
    result = multihome(server, "doctor", "--json", check=False)
    findings = json.loads(result.stdout)["findings"]
    reply = next(
        f for f in findings if f["check"] == "asymmetric-reply" and f["address"] == "192.0.2.11"
    )
    assert "table 50" in reply["evidence"][0], reply
    assert "rule `pref 500 from 192.0.2.11/32 lookup 50 proto 0` comes before" in reply["fix"]
