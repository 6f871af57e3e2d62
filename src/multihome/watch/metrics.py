"""Prometheus metrics of the daemon: the text exposition format, and a small HTTP endpoint."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Callable
from typing import Any

from multihome.core.model import Counters
from multihome.errors import MultihomeError


def label(value: object) -> str:
    """A label value as the exposition format quotes it: backslash, double quote and line
    feed escaped, so a name cannot end its label or forge a line."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def metrics_text(status: dict[str, Any], counters: dict[str, Counters]) -> str:
    """The status (as `Status` holds it: uplink -> "ipv4"/"ipv6" -> probe figures) and the
    interface counters, in Prometheus' words."""
    probed = [
        (f"uplink={label(name)},family={label(family)}", u)
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
        # gateway mode's connections are the uplink's (forwarded IPv4, kept with its probes):
        # the counters of multihome's nftables table (from 0 again when it is rewritten)
        "# TYPE multihome_uplink_connections_total counter",
        *(
            f'multihome_uplink_connections_total{{uplink={label(n)}}} {u["connections"]}'
            for n, u in gateway
            if "connections" in u
        ),
        "# TYPE multihome_uplink_connection_bytes_total counter",
        *(
            f'multihome_uplink_connection_bytes_total{{uplink={label(n)}}} {u["bytes"]}'
            for n, u in gateway
            if "bytes" in u
        ),
        "# TYPE multihome_reconciles_total counter",
        f"multihome_reconciles_total {status['reconciles']}",
        "# TYPE multihome_reconcile_errors_total counter",
        f"multihome_reconcile_errors_total {status['errors']}",
        # 1 while reconciles fail (retried with a growing delay), and how many in a row
        "# TYPE multihome_reconcile_failing gauge",
        f"multihome_reconcile_failing {int(bool(status.get('failure')))}",
        "# TYPE multihome_reconcile_failures_in_a_row gauge",
        f"multihome_reconcile_failures_in_a_row {status.get('failures_in_a_row', 0)}",
    ]
    for kind in ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes"):
        lines.append(f"# TYPE multihome_interface_{kind}_total counter")
        lines += [
            f"multihome_interface_{kind}_total{{interface={label(n)}}} {getattr(c, kind)}"
            for n, c in sorted(counters.items())
            if n != "lo"
        ]
    return "\n".join(lines) + "\n"


# A scraper needs one connection at a time; a few more leave room for a second Prometheus
# and a curl. Every connection costs the daemon a descriptor and a thread: past this bound
# a new one is closed at once, so no peer can take the descriptors a reconcile needs.
MAX_CONNECTIONS = 16
READ_TIMEOUT = 5.0  # seconds a connection may take per read of its request (slowloris)
# seconds a connection may last in all: a peer that sends a byte now and then never trips
# the per-read timeout, and would keep its slot (16 such peers: no scrape gets through)
REQUEST_DEADLINE = 10.0
MAX_PORT = 65535


def parse_address(address: str) -> tuple[str, int]:
    """HOST:PORT, [IPV6]:PORT or :PORT (loopback) as (host, port); raises MultihomeError
    with the address named."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 1 <= int(port) <= MAX_PORT:
        raise MultihomeError(
            f"--metrics {address}: the port must be a number from 1 to {MAX_PORT}",
            hint="e.g. --metrics 127.0.0.1:9477",
        )
    return host, int(port)


def _shut(request: Any) -> None:
    """End a connection that outlived its deadline (its handler then sees the end)."""
    import socket

    with contextlib.suppress(OSError):
        request.shutdown(socket.SHUT_RDWR)


def serve(
    address: str,
    text: Callable[[], str],
    connections: int = MAX_CONNECTIONS,
    read_timeout: float = READ_TIMEOUT,
    deadline: float = REQUEST_DEADLINE,
) -> str:
    """Serve GET /metrics on ADDR:PORT from a daemon thread, at most `connections` at a
    time, each read of a request bounded by `read_timeout` and each connection by
    `deadline`; returns the URL."""
    import socket

    host, port = parse_address(address)
    slots = threading.BoundedSemaphore(connections)

    class Handler(http.server.BaseHTTPRequestHandler):
        timeout = read_timeout  # the socket's: each read of the request ends in time

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

    class Server(http.server.ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        request_queue_size = 64

        def process_request(self, request: Any, client_address: Any) -> None:
            if not slots.acquire(blocking=False):  # full: closed at once, costs nothing
                self.shutdown_request(request)
                return
            try:
                super().process_request(request, client_address)
            except BaseException:
                slots.release()
                raise

        def process_request_thread(self, request: Any, client_address: Any) -> None:
            # past the deadline the socket is shut down: the handler's next read ends
            cut = threading.Timer(deadline, _shut, (request,))
            cut.daemon = True
            cut.start()
            try:
                super().process_request_thread(request, client_address)
            finally:
                cut.cancel()
                slots.release()

        def handle_error(self, request: Any, client_address: Any) -> None:
            # a peer that hangs up or stalls mid-request ends its own connection; it is
            # no fault of the daemon's and not worth a traceback in its log
            return None

    try:
        server = Server((host, port), Handler)
    except (OSError, ValueError, OverflowError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise MultihomeError(f"cannot serve metrics on {address}: {reason}") from None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/metrics"
