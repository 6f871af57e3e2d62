"""The firewall parser, on real `iptables-save`, `ip6tables-save`, `iptables-legacy-save` and
`nft -j list ruleset` output (captured from iptables 1.8.9 (nf_tables) and nft 1.0.6 with
Docker's, a hand-made port forward's, kube-proxy's and Calico-like rules)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from multihome.core import firewall
from multihome.core.firewall import NatAction, Source

HERE = Path(__file__).parent / "firewall"


def text(name: str) -> str:
    return (HERE / name).read_text()


def test_iptables_nft_nat_rules() -> None:
    nat, _ = firewall.parse_save(text("iptables-nft.txt"), Source.IPTABLES_NFT, 4)
    dnat = [r for r in nat if r.action is NatAction.DNAT]
    docker = next(r for r in dnat if r.chain == "DOCKER")
    assert (docker.table, docker.in_interface, docker.in_negated) == ("nat", "docker0", True)
    assert docker.to == "172.17.0.2:80" and docker.address == ipaddress.ip_address("172.17.0.2")
    assert docker.matches_in("eth0") and not docker.matches_in("docker0")
    assert docker.where == "iptables-nft, table nat, chain DOCKER"
    handmade = next(r for r in dnat if r.chain == "PREROUTING")
    assert handmade.in_interface == "eth1" and not handmade.in_negated
    assert handmade.matches_in("eth1") and not handmade.matches_in("eth0")
    assert '"hand made: ssh fwd"' in handmade.text  # the comment survives the quoting
    kinds = sorted(r.action.value for r in nat)
    assert kinds == ["DNAT", "DNAT", "MASQUERADE", "SNAT"]
    snat = next(r for r in nat if r.action is NatAction.SNAT)
    assert snat.to == "192.0.2.10" and snat.address == ipaddress.ip_address("192.0.2.10")


def test_iptables_mark_users_and_their_bits() -> None:
    _, marks = firewall.parse_save(text("iptables-nft.txt"), Source.IPTABLES_NFT, 4)
    bits = [(m.table, m.chain, m.bits) for m in marks]
    assert bits == [
        ("mangle", "PREROUTING", 0x0F000000),  # CONNMARK --set-xmark 0x1000000/0xf000000
        ("mangle", "PREROUTING", 0x02000000),  # -m connmark --mark 0x2000000/0x2000000
        ("mangle", "FORWARD", 0x4000),  # --or-mark 0x4000, saved as --set-xmark 0x4000/0x4000
        ("mangle", "FORWARD", 0x4000),  # --and-mark 0xffffbfff: --set-xmark 0x0/0x4000
        ("mangle", "FORWARD", 0xFFFFFFFF),  # --set-mark 0x51820: every bit
        ("mangle", "FORWARD", 0x8000),
        ("mangle", "FORWARD", 0x4000),  # -m mark ! --mark 0x4000/0x4000
        ("mangle", "FORWARD", 0xFFFFFFFF),  # CONNMARK --save-mark, every bit
        ("mangle", "FORWARD", 0xFF),  # --restore-mark --nfmask 0xff --ctmask 0xff
        ("filter", "FORWARD", 0xFFFFFFFF),  # -m mark --mark 0x8000: an exact value
    ]
    found = firewall.Firewall(marks=tuple(marks)).mark_users(0x0F000000)
    assert found[0] == (
        "iptables-nft table mangle chain PREROUTING (`-A PREROUTING -j CONNMARK --set-xmark"
        " 0x1000000/0xf000000`) uses mark bits 0x0f000000"
    )
    assert not firewall.Firewall(marks=tuple(m for m in marks if m.bits != 0xFFFFFFFF)).mark_users(
        0x00F00000
    )


def test_ip6tables_and_legacy() -> None:
    nat6, _ = firewall.parse_save(text("ip6tables-nft.txt"), Source.IPTABLES_NFT, 6)
    assert nat6[0].family == 6 and nat6[0].address == ipaddress.ip_address("2001:db8:1::2")
    nat, marks = firewall.parse_save(text("iptables-legacy.txt"), Source.IPTABLES_LEGACY, 4)
    assert nat[0].where == "iptables-legacy, table nat, chain PREROUTING"
    assert marks[0].bits == 0xFFFF0000  # Calico's band: overlaps 0x0F000000


def test_native_nft_rules_and_iptables_nft_tables_left_to_iptables_save() -> None:
    ruleset = json.loads(text("nft-native.json"))
    found = firewall.read(
        [(Source.IPTABLES_NFT, 4, "*nat\n*mangle\n")], ruleset, ("iptables-save", "nft")
    )
    kube = [r for r in found.dnat() if r.table == "ip kube-proxy"]
    assert len(kube) == 1  # the output hook's DNAT sees local sockets only
    assert (kube[0].in_interface, kube[0].in_negated, kube[0].to) == ("cni0", True, "10.244.0.5:80")
    assert kube[0].where == "nft, table ip kube-proxy, chain nat-prerouting"
    assert not [r for r in found.nat if r.table == "nat"]  # the xt DNAT: iptables-save's
    users = found.mark_users(0xFFFFFFFF)
    assert "table ip kube-proxy chain mark-for-masquerade uses mark bits 0x00004000" in users
    assert "table ip kube-proxy chain filter-forward uses mark bits 0x00008000" in users
    assert found.mark_users(0x0F000000) == [
        "table inet calico chain pre uses mark bits 0x0f000000"
    ]
    assert [r.action for r in found.nat if r.table == "inet calico"] == [NatAction.SNAT]


def test_the_nft_listing_of_iptables_nft_rules_is_opaque() -> None:
    """Why iptables-save is read at all: nft shows Docker's DNAT as an `xt` expression."""
    nat, _ = firewall.parse_nft(json.loads(text("nft-of-iptables.json")))
    assert not [r for r in nat if r.action is NatAction.DNAT]


@pytest.mark.parametrize(
    ("line", "bits"),
    [
        ("-A X -j MARK --set-xmark 0x4000/0xffffffff", 0xFFFFFFFF),
        ("-A X -j CONNMARK --set-mark 0x1/0x3", 0x3),
        ("-A X -j CONNMARK --restore-mark --mask 0xff00", 0xFF00),
        ("-A X -m connmark ! --mark 0x1/0x1 -j RETURN", 0x1),
        ("-A X -j ACCEPT", 0),
    ],
)
def test_mark_bits(line: str, bits: int) -> None:
    _, marks = firewall.parse_save(f"*mangle\n{line}\nCOMMIT\n", Source.IPTABLES_NFT, 4)
    assert (marks[0].bits if marks else 0) == bits


@pytest.mark.parametrize(
    "text",
    ["*nat\n-A \nCOMMIT\n", '*nat\n-A X -m comment --comment "unbalanced -j DNAT\n', "-A\n"],
)
def test_odd_save_lines_are_read_without_a_traceback(text: str) -> None:
    firewall.parse_save(text, Source.IPTABLES_NFT, 4)


def test_odd_nft_json_is_read_without_a_traceback() -> None:
    odd = {"nftables": [
        {"rule": {"family": "ip", "table": "t", "chain": "c", "expr": [
            {"match": {"op": "==", "left": {"meta": "iifname"}, "right": "eth0"}},
            {"dnat": {"addr": {"map": {}}}},
            {"mangle": {"key": {"meta": {"key": "mark"}}, "value": "x"}},
        ]}},
        {"rule": {"expr": "not a list"}},
        {"chain": "not a dict"},
        "not an object",
    ]}  # fmt: skip
    nat, marks = firewall.parse_nft(odd)
    assert [(r.action, r.to, r.in_interface) for r in nat] == [(NatAction.DNAT, "", None)]
    assert nat[0].address is None and marks[0].bits == firewall.ALL


def test_a_comment_can_neither_forge_nor_hide_a_rule() -> None:
    """Other software's comments are text: a line break in one does not start a rule (a
    forged DNAT would turn pinning on), and a comment `-j` or `-i eth1` is not an option."""
    text = (
        "*nat\n"
        '-A PREROUTING -m comment --comment "x\r-A PREROUTING -j DNAT --to-destination'
        ' 10.9.9.9\ny" -j ACCEPT\n'
        "-A PREROUTING -i eth0 -m comment --comment -j -j DNAT --to-destination 198.19.0.2:80\n"
        "COMMIT\n*mangle\n"
        '-A PREROUTING -m comment --comment "a\u2028b" -j MARK --set-xmark 0x1000000/0xf000000\n'
        "COMMIT\n"
    )
    nat, marks = firewall.parse_save(text, firewall.Source.IPTABLES_NFT, 4)
    assert [(r.action, r.to, r.in_interface) for r in nat] == [
        (firewall.NatAction.DNAT, "198.19.0.2:80", "eth0")
    ]
    assert [m.bits for m in marks] == [0x0F000000]  # the MARK rule is seen whole
    assert "\u2028" not in marks[0].describe(0x0F000000)


def test_text_of_other_software_is_shown_without_control_characters() -> None:
    shown = firewall.printable("t\x1b[2K\rmultihome: doctor: no problems found\u2028")
    assert shown.isprintable() and "\\x1b" in shown and "\\r" in shown
