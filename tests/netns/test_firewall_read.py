"""kernel/firewall.py against the real kernel: a saver that would print nothing (no legacy
x_tables of its family, and for iptables-save no iptables table in the nft ruleset) is not
started, and what the savers do print is read as before: an empty namespace, a rule made
with ip6tables-legacy, one made with iptables-nft. Checked against the tools' own output."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from multihome.core.firewall import Firewall, NatAction, Source
from multihome.kernel import firewall, namespace


def run(ns: str, *argv: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture
def ns() -> Iterator[str]:
    name = f"mhfwread{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def read(ns: str) -> Firewall:
    with namespace.inside(ns):
        return firewall.read()


def installed() -> tuple[str, ...]:
    """The tools that answer in a namespace root reads: every installed saver, then nft."""
    savers = tuple(name for name, _, _ in firewall.SAVERS if shutil.which(name))
    return (*savers, "nft")


def test_an_empty_namespace_reads_as_every_saver_answering_nothing(ns: str) -> None:
    for tool in ("iptables-save", "ip6tables-save", "iptables-legacy-save"):
        assert run(ns, tool) == "", tool  # (what skipping them stands for)
    found = read(ns)
    assert (found.nat, found.marks, found.unreadable) == ((), (), ())
    assert found.read == installed()


def test_legacy_and_nft_rules_are_still_read(ns: str) -> None:
    run(ns, "ip6tables-legacy", "-t", "mangle", "-A", "OUTPUT", "-j", "MARK", "--set-mark", "0x100")
    found = read(ns)
    assert [(m.source, m.table, m.chain, m.bits) for m in found.marks] == [
        (Source.IPTABLES_LEGACY, "mangle", "OUTPUT", 0xFFFFFFFF)
    ], found.marks
    assert "--set-xmark 0x100/0xffffffff" in run(ns, "ip6tables-legacy-save")

    run(ns, "iptables-nft", "-t", "nat", "-A", "PREROUTING", "-i", "eth0", "-p", "tcp",
        "--dport", "8080", "-j", "DNAT", "--to-destination", "198.51.100.2:80")  # fmt: skip
    found = read(ns)
    assert [(r.source, r.family, r.action, r.to, r.in_interface) for r in found.dnat()] == [
        (Source.IPTABLES_NFT, 4, NatAction.DNAT, "198.51.100.2:80", "eth0")
    ], found.nat
    assert len(found.marks) == 1
    assert found.read == installed()


def test_nftables_notifications_name_changes_of_others_tables_only(ns: str) -> None:
    """kernel/nfnetlink.py's subscription, fed by the real kernel: another's table, chain
    or rule (nft's, iptables-nft's) is a change; multihome's own table is not (its writes
    must not wake the reconcile that made them), nor are a set's elements."""
    from multihome.kernel import nfnetlink

    def heard(*commands: str) -> bool:
        with namespace.inside(ns):
            sock = nfnetlink.subscribe()
        assert sock is not None
        try:
            for command in commands:
                run(ns, *command.split())
            found = False
            while True:
                try:
                    found = nfnetlink.foreign_change(sock.recv(1 << 16)) or found
                except BlockingIOError:
                    return found
        finally:
            sock.close()

    assert not heard(
        "nft add table inet multihome",
        "nft add chain inet multihome c",
        "nft add rule inet multihome c counter",
        "nft add set inet multihome s { type ipv4_addr ; }",
    )
    assert heard("nft add table ip multihome_not")  # (the name is compared whole)
    run(ns, "nft", "add", "table", "inet", "fail2ban")
    run(ns, "nft", "add", "set", "inet", "fail2ban", "banned", "{ type ipv4_addr ; }")
    assert not heard("nft add element inet fail2ban banned { 192.0.2.7 }")
    assert heard("nft add chain inet fail2ban input")
    assert heard("nft delete table inet fail2ban")
    if shutil.which("iptables-nft"):
        assert heard("iptables-nft -t nat -A PREROUTING -p tcp --dport 8080 -j DNAT --to 198.18.0.10")
    assert not heard("nft delete table inet multihome")
