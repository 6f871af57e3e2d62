"""The Prometheus text of `multihome watch --metrics`."""

from __future__ import annotations

from multihome.core.model import Counters
from multihome.watch.metrics import metrics_text


def test_rtt_is_printed_as_a_short_decimal() -> None:
    status = {
        "uplinks": {"eth0": {"ipv4": {"state": "up", "last_rtt_ms": 0.18, "probes_lost": 0}}},
        "reconciles": 3,
        "errors": 0,
    }
    assert 0.18 / 1000 == 0.00017999999999999998  # what used to be printed
    lines = metrics_text(status, {"eth0": Counters(1, 2, 3, 4)}).splitlines()
    assert 'multihome_probe_rtt_seconds{uplink="eth0",family="ipv4"} 0.00018' in lines
    assert 'multihome_interface_tx_bytes_total{interface="eth0"} 4' in lines


def test_a_metrics_address_out_of_range_is_a_clean_error() -> None:
    import pytest

    from multihome.errors import MultihomeError
    from multihome.watch.metrics import parse_address

    for address in ("0.0.0.0:70000", "127.0.0.1:x", "127.0.0.1", "[::1]:0"):
        with pytest.raises(MultihomeError, match="port must be a number"):
            parse_address(address)
    assert parse_address(":9477") == ("127.0.0.1", 9477)  # loopback unless asked
    assert parse_address("[::1]:9477") == ("::1", 9477)


def test_connections_past_the_bound_are_closed_at_once_and_idle_ones_time_out() -> None:
    import socket
    import time
    import urllib.request

    from multihome.watch.metrics import serve

    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = serve(f"127.0.0.1:{port}", lambda: "up 1\n", connections=2, read_timeout=0.5)
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    time.sleep(0.1)
    extra = socket.create_connection(("127.0.0.1", port))
    extra.settimeout(2)
    start = time.monotonic()
    assert extra.recv(100) == b""  # closed by the server, not left waiting
    assert time.monotonic() - start < 0.4
    time.sleep(0.8)  # the idle ones' read timeout has passed: their slots are free
    assert [s.recv(100) for s in idle] == [b"", b""]
    assert urllib.request.urlopen(url, timeout=2).read() == b"up 1\n"
    for sock in [*idle, extra]:
        sock.close()


def test_loss_path_and_transitions_per_uplink() -> None:
    entry = {
        "state": "down",
        "last_rtt_ms": 1.5,
        "probes_lost": 9,
        "loss": 0.25,
        "transitions": 3,
        "path_state": "down",
        "path_rtt_ms": 12.0,
        "path_loss": 0.5,
    }
    unknown = {**entry, "state": "up", "transitions": 0, "path_state": "unknown"}
    unknown["path_rtt_ms"] = None
    status = {"uplinks": {"eth0": {"ipv4": entry}, "eth1": {"ipv6": unknown}}, "reconciles": 1}
    lines = metrics_text({**status, "errors": 0}, {}).splitlines()
    eth0, eth1 = 'uplink="eth0",family="ipv4"', 'uplink="eth1",family="ipv6"'
    assert f"multihome_uplink_transitions_total{{{eth0}}} 3" in lines
    assert f"multihome_uplink_transitions_total{{{eth1}}} 0" in lines
    assert f"multihome_probe_loss_ratio{{{eth0}}} 0.25" in lines
    assert f"multihome_path_up{{{eth0}}} 0" in lines
    assert f"multihome_path_rtt_seconds{{{eth0}}} 0.012" in lines
    assert f"multihome_path_loss_ratio{{{eth0}}} 0.5" in lines
    # a second hop that never answered is not reported as up or down
    assert not any(line.startswith("multihome_path_") and eth1 in line for line in lines)


def test_a_connection_that_drips_bytes_is_ended_at_its_deadline() -> None:
    """A byte now and then never trips the per-read timeout; the deadline ends it all the
    same, so 16 such peers cannot keep every scrape out."""
    import socket
    import time
    import urllib.request

    from multihome.watch.metrics import serve

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = serve(f"127.0.0.1:{port}", lambda: "up 1\n", connections=1, read_timeout=0.5, deadline=1.0)
    drip = socket.create_connection(("127.0.0.1", port))
    drip.settimeout(3)
    start = time.monotonic()
    ended = False
    while time.monotonic() - start < 3 and not ended:
        try:
            drip.send(b"G")
            time.sleep(0.2)  # well inside the per-read timeout
        except OSError:
            ended = True
    if not ended:
        drip.settimeout(0.5)
        ended = drip.recv(100) == b""
    assert ended and time.monotonic() - start < 2.5
    drip.close()
    assert urllib.request.urlopen(url, timeout=2).read() == b"up 1\n"  # its slot is free
