"""The lab's pure parts: units, scenarios, report."""

from __future__ import annotations

from pathlib import Path

import pytest

from multihome.core.counters import Link
from multihome.core.model import Counters
from multihome.core.records import replace
from multihome.core.units import human_bytes, parse_rate, parse_size
from multihome.lab import scenarios
from multihome.lab.report import InterfaceResult, LabResult, PhaseResult, listing, summary, to_json


def test_units() -> None:
    assert parse_size("90KB") == 92160 and parse_size("1MB") == 1048576
    assert parse_size("4096") == 4096
    assert parse_rate("100mbit") == 100_000_000 and parse_rate("1gbit") == 10**9
    assert human_bytes(1937245638) == "1.8 GB" and human_bytes(818) == "818 B"
    for bad in ("lots", "90XB", "-1"):
        with pytest.raises(ValueError):
            parse_size(bad)
    with pytest.raises(ValueError):
        parse_rate("100")


def test_scenarios_use_documentation_addresses_only() -> None:
    import ipaddress

    allowed = [
        ipaddress.ip_network(n)
        for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
    ]
    for topology in (scenarios.seed(8), scenarios.two_isp(8), scenarios.two_isp(2, 10**8)):
        for _, _, address in topology.addresses:
            ip = ipaddress.ip_interface(address).ip
            assert any(ip in n for n in allowed), address
    with pytest.raises(ValueError):
        scenarios.seed(9)


def _result() -> LabResult:
    def phase(name: str, tx: tuple[int, int], failed: int) -> PhaseResult:
        return PhaseResult(
            name,
            (
                InterfaceResult(
                    "eth0",
                    "192.0.2.10",
                    Counters(10, tx[0], 1000, tx[0] * 1500),
                    Link("eth0", 0x11043, 1500, ("192.0.2.10/24", "2001:db8::10/64")),
                ),
                InterfaceResult("eth1", "192.0.2.11", Counters(10, tx[1], 1000, tx[1] * 1500)),
            ),
            ok=100 - failed,
            failed=failed,
            seconds=2.0,
            body_bytes=10**8,
            failed_by_address={},
        )

    return LabResult(
        "seed",
        2,
        10**8,
        92160,
        100,
        40,
        (phase("destination", (1341151, 0), 0), phase("policy", (670341, 670152), 0)),
    )


def test_report_formats() -> None:
    result = _result()
    lines = listing(result.phases[1])
    # ifconfig's flags (the low 16 bits: LOWER_UP is not among them) and addresses
    assert lines[:3] == [
        "eth0: flags=4163<UP,BROADCAST,RUNNING,MULTICAST>  mtu 1500",
        "        inet 192.0.2.10  netmask 255.255.255.0",
        "        inet6 2001:db8::10  prefixlen 64",
    ]
    assert "TX packets 670341  bytes 1005511500 (958.9 MB)" in lines[4]
    table = summary(result)
    assert table[1].split()[:3] == ["destination", "100.00%", "0.00%"]
    assert table[2].split()[:3] == ["policy", "50.01%", "49.99%"]
    assert table[-1] == "goodput policy / destination: 1.00x"  # rate-limited: no note
    cpu_bound = summary(replace(result, link_rate_bps=None))
    assert cpu_bound[-2] == "goodput policy / destination: 1.00x"
    assert cpu_bound[-1].startswith("note: without --link-rate the CPU, not the NICs, limits")
    data = to_json(result)
    assert data["phases"][1]["interfaces"]["eth1"]["tx_packets"] == 670152
    assert data["phases"][0]["goodput_bps"] == 4e8 and data["link_rate_bps"] == 10**8


def test_report_counts_requests_per_family_when_dual_stack() -> None:
    result = _result()
    counters = Counters(10, 10, 1000, 15000)
    interfaces = (
        InterfaceResult("eth0", "192.0.2.10", counters),
        InterfaceResult("eth1", "192.0.2.42", counters),
    )
    stock = PhaseResult(
        "destination",
        interfaces,
        ok=60,
        failed=60,
        seconds=2.0,
        body_bytes=10**6,
        failed_by_address={"192.0.2.42": 30, "2001:db8:1::10": 30},
        ok_by_address={"192.0.2.10": 30, "192.0.2.42": 0, "2001:db8::10": 30, "2001:db8:1::10": 0},
    )
    assert stock.by_family() == {"ipv4": {"ok": 30, "failed": 30}, "ipv6": {"ok": 30, "failed": 30}}
    dual = LabResult("two-isp", 2, None, 92160, 120, 40, (stock,))
    header, row = summary(dual)
    assert header.split()[-6:] == ["IPv4", "ok/failed", "IPv6", "ok/failed", "seconds", "goodput"]
    assert row.split()[5:9] == ["60", "60", "30/30", "30/30"]
    assert to_json(dual)["phases"][0]["requests_by_family"]["ipv6"] == {"ok": 30, "failed": 30}
    # a single family: no extra columns
    assert "ok/failed" not in summary(result)[0]


def test_lab_without_root_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from multihome import cli

    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert cli.main(["lab", "--requests", "10"]) == 2
    err = capsys.readouterr().err
    assert "the lab creates network namespaces and needs root" in err
    assert "hint: run it as root" in err


def test_gratuitous_arp_frame() -> None:
    import ipaddress

    from multihome.kernel.announce import frame

    mac = bytes.fromhex("020000000001")
    data = frame(mac, ipaddress.IPv4Address("192.0.2.11"))
    assert data[:6] == b"\xff" * 6 and data[6:12] == mac and data[12:14] == b"\x08\x06"
    assert data[14:22] == bytes.fromhex("0001080006040001")  # Ethernet/IPv4, request
    assert data[22:28] == mac and data[28:32] == data[38:42] == bytes([192, 0, 2, 11])


def test_damaged_lab_records_are_reported_with_their_namespaces(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from multihome.lab import topology

    monkeypatch.setenv("MULTIHOME_STATE_DIR", str(tmp_path))
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "good.json").write_text('{"pid": 1, "namespaces": ["mhg-a"]}')
    (lab / "cut.json").write_text('{"pid": 12, "namespaces": ["mhc-server", "mhc-router"], "in')
    (lab / "junk.json").write_text("\x00\x01")
    assert [r.name for r in topology.lab_networks()] == ["good"]
    assert topology.damaged_records() == [
        (str(lab / "cut.json"), ("mhc-server", "mhc-router")),
        (str(lab / "junk.json"), ()),
    ]


def test_fail_option_parses_an_uplink_and_its_seconds() -> None:
    import pytest

    from multihome.errors import MultihomeError
    from multihome.lab.failover import FailOptions, FailResult, listing, parse_fail

    assert parse_fail("eth1@10s", 2) == ("eth1", 10.0, None)
    assert parse_fail("eth0@2.5-8s", 2) == ("eth0", 2.5, 8.0)
    for wrong in ("eth2@10s", "eth1", "eth1@1s", "eth1@10s-5s", "wan@10s"):
        with pytest.raises(MultihomeError):
            parse_fail(wrong, 2)
    options = FailOptions(at=1.0, back=2.0)
    result = FailResult(
        options,
        mbits=[{"eth0": 5.0, "eth1": 5.0}, {"eth0": 10.0, "eth1": 0.0}, {"eth0": 6, "eth1": 4}],
        failed=[0, 3, 0],
        started=[10, 10, 10],
        left_after=0.7,
        rejoined_after=0.5,
        long_on_dead=2,
        long_failed_on_dead=2,
    )
    text = "\n".join(listing(result))
    assert "1-2" in text and "3  <- eth1's ISP dies" in text and "<- eth1's ISP is back" in text
    assert "left the balancing route after 0.70 s" in text and "rejoined after 0.50 s" in text
    assert "new connections lost: 3 of 30" in text
