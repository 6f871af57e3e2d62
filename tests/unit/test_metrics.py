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
