from __future__ import annotations

import ipaddress

import pytest

from multihome.core.config import RpFilter, parse
from multihome.errors import ConfigError
from multihome.host.configfile import load

FULL = """\
[multihome]
table_range = [200, 219]
priority = 5000

[sysctls]
arp = false
rp_filter = "loose"

[uplinks.eth0]
gateway = "192.0.2.1"
table = 201

[uplinks."eth1.100"]
gateway6 = "fe80::1"
weight = 3
ipv4 = false
"""


def test_full_config() -> None:
    config = parse(FULL, "m.toml")
    assert config.ownership.table_min == 200 and config.ownership.table_max == 219
    assert config.ownership.priorities == (5000, 5001, 5002, 5003)
    assert config.manage_arp is False and config.rp_filter is RpFilter.LOOSE
    eth0, vlan = config.uplinks
    assert eth0.gateway4 == ipaddress.ip_address("192.0.2.1") and eth0.table == 201
    assert vlan.name == "eth1.100" and vlan.weight == 3 and vlan.ipv4 is False
    assert vlan.gateway6 == ipaddress.ip_address("fe80::1")


def test_empty_config_means_defaults_and_detection() -> None:
    config = parse("", "m.toml")
    assert config.uplinks == () and config.ownership.priorities == (1000, 1001, 1002, 1003)


@pytest.mark.parametrize(
    ("text", "located", "fragment"),
    [
        (
            '[uplinks.eth0]\ngatway = "192.0.2.1"\n',
            "m.toml:2: uplinks.eth0.gatway",
            "did you mean 'gateway'",
        ),
        (
            '[uplinks.eth0]\ngateway = "192.0.2.300"\n',
            "m.toml:2: uplinks.eth0.gateway",
            "not an IPv4 address",
        ),
        (
            '[uplinks.eth0]\ngateway = "2001:db8::1"\n',
            "m.toml:2: uplinks.eth0.gateway",
            "not an IPv4 address",
        ),
        ("[uplinks.eth0]\n\ntable = 253\n", "m.toml:3: uplinks.eth0.table", "reserved"),
        ("[uplinks.eth0]\ntable = 255\n", "m.toml:2: uplinks.eth0.table", "reserved"),
        (
            "[uplinks.eth0]\ntable = 500\n",
            "m.toml:2: uplinks.eth0.table",
            "outside multihome's table range",
        ),
        (
            "[uplinks.eth0]\ntable = 100\n[uplinks.eth1]\ntable = 100\n",
            "m.toml:4: uplinks.eth1.table",
            "already used by uplink eth0",
        ),
        ("[uplinks.eth0]\n[uplinks.eth0]\n", "m.toml:2", "twice"),
        ("[multihome]\npriority = 40000\n", "m.toml:2: multihome.priority", "out of range"),
        ("[multihome]\ntable_range = [250, 260]\n", "m.toml:2: multihome.table_range", "253-255"),
        ('[multihome]\nipv4 = "yes"\n', "m.toml:2: multihome.ipv4", "true or false"),
        ('[sysctls]\nrp_filter = "off"\n', "m.toml:2: sysctls.rp_filter", "'keep' or 'loose'"),
        ("[uplink.eth0]\n", "m.toml:1: uplink", "did you mean 'uplinks'"),
        ("[uplinks.eth0]\nweight = 0\n", "m.toml:2: uplinks.eth0.weight", "out of range"),
        ('[uplinks."a b"]\n', "m.toml:1", "not a valid interface name"),
        ("x = = 1\n", "m.toml:1", "not valid TOML"),
    ],
)
def test_invalid_configs_name_file_line_and_key(text: str, located: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(text, "m.toml")
    assert str(caught.value).startswith(located), str(caught.value)
    assert fragment in str(caught.value) + caught.value.hint


def test_load_missing_default_file_is_autodetect(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multihome.core.config as config_module

    monkeypatch.setattr(config_module, "DEFAULT_PATH", f"{tmp_path}/none.toml")
    assert load(None).uplinks == ()
    with pytest.raises(ConfigError, match="no such file"):
        load(f"{tmp_path}/explicit.toml")


def test_reliability_is_at_most_the_number_of_targets() -> None:
    two = '[uplinks.eth0]\nprobe = ["192.0.2.1", "192.0.2.2"]\n'
    assert parse(two + "reliability = 2\n").uplinks[0].reliability == 2
    assert parse(two).uplinks[0].reliability is None  # a majority, decided by watch
    with pytest.raises(ConfigError, match="3 targets must answer, but the uplink has 2"):
        parse(two + "reliability = 3\n")


def test_the_mark_band_and_pinning_keys() -> None:
    default = parse("", "m.toml")
    assert default.mark_mask == 0x0F000000 and default.pin_inbound is True
    config = parse("[multihome]\nmark_mask = 0x00F00000\npin_inbound = false\n", "m.toml")
    assert config.mark_mask == 0x00F00000 and config.pin_inbound is False
    # [gateway] mark_mask, where it was set before [multihome] had the key, still sets it
    older = parse('[gateway]\nlan = ["lan0"]\nmark_mask = 0x000F0000\n', "m.toml")
    assert older.mark_mask == 0x000F0000
    same = '[multihome]\nmark_mask = 0x000F0000\n[gateway]\nlan = ["lan0"]\nmark_mask = 0x000F0000\n'
    assert parse(same, "m.toml").mark_mask == 0x000F0000


@pytest.mark.parametrize(
    ("text", "located", "fragment"),
    [
        (
            '[multihome]\nmark_mask = 0x0F000000\n[gateway]\nlan = ["lan0"]\nmark_mask = 0x00F00000\n',
            "m.toml:2: multihome.mark_mask",
            "differs from [gateway] mark_mask 0x00F00000 (line 5)",
        ),
        ("[multihome]\nmark_mask = 0x01000000\n", "m.toml:2: multihome.mark_mask", "room for 1"),
        ("[multihome]\nmark_mask = 0\n", "m.toml:2: multihome.mark_mask", "out of range"),
        ('[multihome]\npin_inbound = "no"\n', "m.toml:2: multihome.pin_inbound", "true or false"),
    ],
)
def test_mark_band_errors_name_file_line_and_key(text: str, located: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(text, "m.toml")
    assert str(caught.value).startswith(located), str(caught.value)
    assert fragment in str(caught.value)
