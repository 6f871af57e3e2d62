"""Interface names: which ones multihome refuses where they enter, and how each language
quotes the others (the real parsers read them back in tests/netns/test_hostile_names.py)."""

from __future__ import annotations

import pytest

from multihome.core import gateway, names
from multihome.core.config import parse
from multihome.errors import ConfigError
from multihome.watch import metrics


@pytest.mark.parametrize(
    "name", ["eth0", "&a", "*x", "up*", "#x", "a=b", "a'b", 'a"b', "-x", "é", "x" * 15]
)
def test_a_name_the_kernel_allows_is_usable(name: str) -> None:
    assert names.problem(name) is None


@pytest.mark.parametrize(
    "name",
    [
        "",
        "x" * 16,
        "é" * 8,
        "a/b",
        "a:b",
        "a b",
        "a\tb",
        ".",
        "..",
        "all",
        "default",
        "%iface%",
        "a\x01",
        "a\x7f",
        "a\udcff",
        "a\ufffd",
        "\u0120",
    ],
)
def test_a_name_no_file_could_hold_is_refused(name: str) -> None:
    assert names.problem(name) is not None


def test_a_config_naming_an_impossible_interface_is_refused_with_file_and_line() -> None:
    text = '[multihome]\nipv6 = false\n\n[uplinks."a\\u0001b"]\ngateway = "192.0.2.1"\n'
    with pytest.raises(ConfigError) as raised:
        parse(text, "/etc/multihome.toml")
    assert raised.value.line == 4 and "control character" in raised.value.message
    with pytest.raises(ConfigError, match="not a valid interface name"):
        parse('[gateway]\nlan = ["%iface%"]\n', "/etc/multihome.toml")


def test_a_name_read_from_the_kernel_that_is_not_utf8_is_a_problem() -> None:
    assert "not UTF-8" in (names.problem(b"a\xff".decode(errors="replace")) or "")
    assert names.problem("up*") is None


def test_nft_reads_a_trailing_star_as_the_name_not_a_wildcard() -> None:
    assert gateway.quote("up*") == '"up\\*"'
    assert gateway.quote("a*b") == '"a*b"'  # only a trailing star is a wildcard
    assert gateway.quote("&a") == '"&a"'


def test_prometheus_label_values_are_escaped() -> None:
    assert metrics.label('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    text = metrics.metrics_text(
        {
            "uplinks": {
                'x"} 1\nfake 2': {"ipv4": {"state": "up", "last_rtt_ms": None, "probes_lost": 0}}
            },
            "reconciles": 0,
            "errors": 0,
        },
        {},
    )
    assert "\nfake 2" not in text
    assert 'multihome_uplink_up{uplink="x\\"} 1\\nfake 2",family="ipv4"} 1' in text
