"""The IPv6 router lab's workload: short TCP connections from a LAN host to the server, at a
steady rate, each recorded with its start time, the source address it had and its outcome.

Server: an asyncio echo server on [::]. Client: `--sources each` binds every connection to the
host's global addresses in turn (every prefix used equally: the stock router fails about
half); `--sources kernel` lets the kernel choose (RFC 6724: a deprecated address is avoided),
which is what a LAN host does and how a failover shows from its view. The client prints one
JSON line {"started": wall-clock time} when it starts and one with every connection as
[seconds after the start, source, ok] when it is done.
Both run as `python -m multihome.lab.gateway6_workload server|client --netns NS ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from collections.abc import Sequence

from multihome.kernel import namespace
from multihome.lab.gateway_workload import serve

PORT = 8086
TIMEOUT = 1.0  # a connection or an echo that takes longer counts as failed
PAYLOAD = b"y" * 64


def global_addresses() -> list[str]:
    """This namespace's global IPv6 addresses that are not deprecated, as the kernel lists
    them (read through rtnetlink by the lab's own reader)."""
    from multihome.kernel import discover

    return sorted(str(a.ip.ip) for a in discover.read_state().addresses if a.ip.version == 6)


async def _connect(address: str, source: str | None) -> tuple[str, bool]:
    """One short connection: (the source address it had, whether the echo came back)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        if source is not None:
            sock.bind((source, 0))
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (address, PORT)), TIMEOUT)
            await asyncio.wait_for(loop.sock_sendall(sock, PAYLOAD), TIMEOUT)
            received = b""
            while len(received) < len(PAYLOAD):
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), TIMEOUT)
                if not chunk:
                    break
                received += chunk
            ok = received == PAYLOAD
        except (OSError, TimeoutError):
            ok = False
        try:
            chosen = str(sock.getsockname()[0])  # bound by the connect, also when it failed
        except OSError:
            chosen = source or ""
        return chosen, ok
    finally:
        sock.close()


async def _client(address: str, rate: float, seconds: float, each: bool) -> None:
    start = time.time()
    print(json.dumps({"started": start}), flush=True)
    sources = global_addresses() if each else []
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    started: list[tuple[float, asyncio.Future[tuple[str, bool]]]] = []
    for index in range(int(rate * seconds)):
        delay = t0 + index / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        source = sources[index % len(sources)] if sources else None
        started.append((time.time() - start, asyncio.ensure_future(_connect(address, source))))
    results = [(t, *(await future)) for t, future in started]
    print(json.dumps({"connections": [[round(t, 4), s, ok] for t, s, ok in results]}), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="multihome.lab.gateway6_workload")
    parser.add_argument("role", choices=("server", "client"))
    parser.add_argument("--netns", required=True)
    parser.add_argument("--address", default="")
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--sources", choices=("each", "kernel"), default="each")
    args = parser.parse_args(argv)
    namespace.enter(args.netns)
    if args.role == "server":
        asyncio.run(serve("::", PORT))
    else:
        asyncio.run(_client(args.address, args.rate, args.seconds, args.sources == "each"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
