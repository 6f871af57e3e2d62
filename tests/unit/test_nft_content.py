"""The content digest of multihome's nftables table: what drift is judged on."""

from __future__ import annotations

import copy
from typing import Any

from multihome.kernel.nftables import content


def _ruleset() -> dict[str, Any]:
    return {
        "nftables": [
            {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
            {"table": {"family": "inet", "name": "multihome", "handle": 5}},
            {
                "set": {
                    "family": "inet",
                    "name": "pairs1",
                    "table": "multihome",
                    "type": ["ipv4_addr", "ipv4_addr"],
                    "handle": 2,
                    "flags": ["timeout", "dynamic"],
                    "elem": [{"elem": {"val": {"concat": ["198.18.0.10", "203.0.113.1"]}}}],
                }
            },
            {
                "rule": {
                    "family": "inet",
                    "table": "multihome",
                    "chain": "nat",
                    "handle": 9,
                    "expr": [
                        {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "eth1"}},
                        {"counter": {"packets": 3, "bytes": 180}},
                        {"masquerade": None},
                    ],
                }
            },
            {"table": {"family": "ip", "name": "nat", "handle": 1}},
            {"rule": {"family": "ip", "table": "nat", "chain": "POSTROUTING", "expr": []}},
        ]
    }


def test_the_same_content_gives_the_same_digest_whatever_the_packet_path_did() -> None:
    base = _ruleset()
    later = copy.deepcopy(base)
    items = later["nftables"]
    items[1]["table"]["handle"] = 50  # a replace renumbers
    items[2]["set"]["elem"] = []  # the packet path fills dynamic sets
    items[3]["rule"]["expr"][1]["counter"] = {"packets": 900, "bytes": 54000}
    items[5]["rule"]["expr"] = [{"accept": None}]  # another table's business
    assert content(later) == content(base)


def test_an_edited_rule_changes_the_digest() -> None:
    base = _ruleset()
    edited = copy.deepcopy(base)
    edited["nftables"][3]["rule"]["expr"][2] = {"accept": None}
    assert content(edited) != content(base)
    added = copy.deepcopy(base)
    added["nftables"][2]["set"]["flags"] = ["timeout"]
    assert content(added) != content(base)
