"""The nft form of source selection (sourcemarks.py) under strict reverse-path filtering: a
host whose addresses of one subnet interleave over two NICs, rp_filter=1 as RHEL ships it,
answers on the second NIC's addresses (the ARP request, the datagram and the reply), from a
neighbour on the subnet and from a source beyond the gateway, because the packets to the
set's addresses carry the uplink's mark (prerouting and the ARP table) and src_valid_mark=1
lets the reverse-path check see it. Without src_valid_mark the same packets are dropped."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from typing import Any

from multihome.core.sourcemarks import THRESHOLD

from .helpers import ip_json, multihome
from .test_layout_property import Host, Subnets, built, nft_ruleset, nft_sets

ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 7007))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(100)
    s.sendto(data, peer)
"""

ASK = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 0))
s.settimeout(0.5)
for _ in range(4):  # the first may wait for ARP
    s.sendto(b"hello", (sys.argv[2], 7007))
    try:
        s.recvfrom(100)
        print("answered")
        break
    except TimeoutError:
        pass
else:
    print("no answer")
"""

FAR = "203.0.113.21"  # beyond the gateway of eth1: on its loopback


def host() -> Host:
    per = THRESHOLD + 2
    addresses = tuple((i % 2, f"198.18.100.{10 + i}/24") for i in range(2 * per))
    return Host(2, (Subnets(4, "interleaved", addresses, ("198.18.100.1", "198.18.100.1")),))


def sysctl(ns: str, *settings: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", *settings], check=True)


def ask(ns: str, source: str, address: str) -> str:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", ASK, source, address],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return out.stdout.strip()


def test_strict_rp_filter_keeps_answering_on_the_second_nic_in_the_nft_form() -> None:
    chosen = host()
    last = chosen.families[0].addresses[-1][1].split("/")[0]  # eth1's
    with built(chosen) as server:
        gw1 = server.replace("server", "gw1")
        sysctl(server, *(f"net.ipv4.conf.{n}.rp_filter=1" for n in ("all", "eth0", "eth1")))
        subprocess.run(["ip", "-n", gw1, "addr", "add", f"{FAR}/32", "dev", "lo"], check=True)
        multihome(server, "apply")
        assert [s["name"] for s in sets(server)] == ["src4_1", "src4_2"]  # the nft form
        echo = subprocess.Popen(
            ["ip", "netns", "exec", server, sys.executable, "-c", ECHO, last],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
            # a neighbour on the subnet (the ARP request is judged by rp_filter too), and a
            # source beyond the gateway, which main would route by eth0
            assert ask(gw1, "198.18.100.1", last) == "answered"
            assert ask(gw1, FAR, last) == "answered"
            # the mark is what makes it work: without src_valid_mark the check ignores it
            sysctl(server, "net.ipv4.conf.all.src_valid_mark=0")
            subprocess.run(["ip", "-n", gw1, "neigh", "flush", "dev", "lan"], check=True)
            assert ask(gw1, FAR, last) == "no answer"
            sysctl(server, "net.ipv4.conf.all.src_valid_mark=1")
            assert ask(gw1, FAR, last) == "answered"
        finally:
            echo.kill()
            echo.wait(timeout=10)


def sets(ns: str) -> list[dict[str, Any]]:
    return sorted(nft_sets(ns), key=lambda s: str(s["name"]))


def test_an_address_coming_and_going_changes_one_set_element_and_no_rule() -> None:
    """In the nft form an address added to an uplink, or removed, is one element of its set
    added or deleted (one nft transaction): the rules stay as they are, and so does the
    table (its chains keep their handles: it was not written again)."""
    chosen = host()
    with built(chosen) as server:
        multihome(server, "apply")
        rules, handles = ip_json(server, "rule"), chain_handles(server)
        new = "198.18.100.200"
        subprocess.run(["ip", "-n", server, "addr", "add", f"{new}/24", "dev", "eth1"], check=True)
        out = multihome(server, "apply").stdout
        assert "nftables sets src4_2 of multihome's tables: +1 -0 addresses" in out, out
        assert "rule" not in out and "table inet" not in out, out
        assert new in {e for s in sets(server) if s["name"] == "src4_2" for e in s["elem"]}
        assert ip_json(server, "rule") == rules and chain_handles(server) == handles
        subprocess.run(["ip", "-n", server, "addr", "del", f"{new}/24", "dev", "eth1"], check=True)
        out = multihome(server, "apply").stdout
        assert "+0 -1" in out, out
        assert new not in {e for s in sets(server) for e in s["elem"]}
        assert ip_json(server, "rule") == rules and chain_handles(server) == handles
        assert "no changes" in multihome(server, "plan", "--check").stdout


def chain_handles(ns: str) -> list[tuple[str, int]]:
    return sorted(
        (f"{c['family']} {c['name']}", c["handle"])
        for item in nft_ruleset(ns)
        if "chain" in item and (c := item["chain"])["table"] == "multihome"
    )


def test_without_nft_the_uplinks_keep_rules_and_a_note_says_why() -> None:
    """A host without nft(8) (here hidden by /dev/null bound over it, in a mount namespace
    of this command's own) plans the rules form for every uplink, and says so."""
    chosen = host()
    nft = shutil.which("nft")
    assert nft is not None
    with built(chosen) as server:
        hidden = f'mount --bind /dev/null {shlex.quote(nft)} && exec "$@"'
        out = subprocess.run(
            [
                *("unshare", "-m", "--propagation", "private", "sh", "-c", hidden, "sh"),
                *(sys.executable, "-m", "multihome", "--netns", server, "plan", "--json"),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        planned = json.loads(out)
        assert any("nft is not installed" in note for note in planned["notes"]), planned["notes"]
        assert all(not u["source_sets"] for u in planned["uplinks"])
        rules = [c for c in planned["changes"] if c["kind"] == "rule"]
        assert len(rules) == 1 + 2 * len(chosen.families[0].addresses), rules
        assert planned["nftables"] is None
