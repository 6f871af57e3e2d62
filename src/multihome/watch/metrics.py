"""Prometheus metrics of the daemon: the text exposition format, and a small HTTP endpoint."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable
from typing import Any

from multihome.core.model import Counters
from multihome.errors import MultihomeError


def metrics_text(status: dict[str, Any], counters: dict[str, Counters]) -> str:
    """The status (as `Status` holds it: uplink -> "ipv4"/"ipv6" -> probe figures) and the
    interface counters, in Prometheus' words."""
    probed = [
        (f'uplink="{name}",family="{family}"', u)
        for name, families in status["uplinks"].items()
        for family, u in sorted(families.items())
    ]
    gateway = [(name, f["ipv4"]) for name, f in status["uplinks"].items() if "ipv4" in f]
    lines = [
        "# TYPE multihome_uplink_up gauge",
        *(f"multihome_uplink_up{{{labels}}} {int(u['state'] == 'up')}" for labels, u in probed),
        "# TYPE multihome_probe_rtt_seconds gauge",
        *(
            # six significant digits: 0.00018 s, not 0.18 / 1000 = 0.00017999999999999998
            f"multihome_probe_rtt_seconds{{{labels}}} {u['last_rtt_ms'] / 1000:.6g}"
            for labels, u in probed
            if u["last_rtt_ms"] is not None
        ),
        "# TYPE multihome_probes_lost_total counter",
        *(f"multihome_probes_lost_total{{{labels}}} {u['probes_lost']}" for labels, u in probed),
        # the gateway probes' loss over the last minute, and the probes past the gateway
        "# TYPE multihome_probe_loss_ratio gauge",
        *(
            f"multihome_probe_loss_ratio{{{labels}}} {u.get('loss', 0.0):.6g}"
            for labels, u in probed
        ),
        "# TYPE multihome_path_up gauge",
        *(
            f"multihome_path_up{{{labels}}} {int(u['path_state'] == 'up')}"
            for labels, u in probed
            if u.get("path_state", "unknown") != "unknown"
        ),
        "# TYPE multihome_path_rtt_seconds gauge",
        *(
            f"multihome_path_rtt_seconds{{{labels}}} {u['path_rtt_ms'] / 1000:.6g}"
            for labels, u in probed
            if u.get("path_rtt_ms") is not None
        ),
        "# TYPE multihome_path_loss_ratio gauge",
        *(
            f"multihome_path_loss_ratio{{{labels}}} {u['path_loss']:.6g}"
            for labels, u in probed
            if u.get("path_state", "unknown") != "unknown"
        ),
        # up -> down and down -> up, since the daemon started: the flapping alert's input
        "# TYPE multihome_uplink_transitions_total counter",
        *(
            f"multihome_uplink_transitions_total{{{labels}}} {u.get('transitions', 0)}"
            for labels, u in probed
        ),
        # gateway mode's connections are the uplink's (forwarded IPv4, kept with its probes)
        "# TYPE multihome_uplink_connections gauge",
        *(
            f'multihome_uplink_connections{{uplink="{n}"}} {u["connections"]}'
            for n, u in gateway
            if "connections" in u
        ),
        "# TYPE multihome_uplink_connection_bytes gauge",
        *(
            f'multihome_uplink_connection_bytes{{uplink="{n}"}} {u["bytes"]}'
            for n, u in gateway
            if "bytes" in u
        ),
        "# TYPE multihome_reconciles_total counter",
        f"multihome_reconciles_total {status['reconciles']}",
        "# TYPE multihome_reconcile_errors_total counter",
        f"multihome_reconcile_errors_total {status['errors']}",
    ]
    for kind in ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes"):
        lines.append(f"# TYPE multihome_interface_{kind}_total counter")
        lines += [
            f'multihome_interface_{kind}_total{{interface="{n}"}} {getattr(c, kind)}'
            for n, c in sorted(counters.items())
            if n != "lo"
        ]
    return "\n".join(lines) + "\n"


def serve(address: str, text: Callable[[], str]) -> str:
    """Serve GET /metrics on ADDR:PORT from a daemon thread; returns the URL."""
    host, _, port = address.rpartition(":")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/metrics":
                self.send_error(404)
                return
            body = text().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None  # one line per action in the log, not per scrape

    try:
        server = http.server.ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
    except (OSError, ValueError) as error:
        raise MultihomeError(f"cannot serve metrics on {address}: {error}") from None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://{host or '127.0.0.1'}:{port}/metrics"
