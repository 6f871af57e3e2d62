"""The gateway lab's workload: short connections at a steady rate, mixed with long-lived
sessions that send a byte every 100 ms and wait for its echo (like the SSH and IRC sessions
the article's readers lost to round-robin SNAT).

Server: an asyncio echo server. Client: opens the long-lived sessions, prints one JSON line
{"started": wall-clock time, "long_ports": [...]}, then opens short connections (send 64
bytes, or --size, read them back, close) at `rate` per second for `seconds`, and prints one
JSON line with every short connection's start time and outcome and every session's failure
time (or null).
Both run as `python -m multihome.lab.gateway_workload server|client --netns NS ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence

from multihome.kernel import namespace

PORT = 8081
TIMEOUT = 1.0  # a short connection or an echo that takes longer counts as failed
PAYLOAD = b"x" * 64


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(4096):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def serve(host: str = "0.0.0.0", port: int = PORT) -> None:
    """An echo server on `host`:`port`; says {"ready": true} once it listens (the lab's
    IPv6 workload serves on "::" through it too)."""
    server = await asyncio.start_server(_echo, host, port, backlog=1024, reuse_address=True)
    print(json.dumps({"ready": True}), flush=True)
    async with server:
        await server.serve_forever()


async def _short(address: str, payload: bytes = PAYLOAD) -> bool:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, PORT), TIMEOUT)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(payload)
        await writer.drain()
        data = await asyncio.wait_for(reader.readexactly(len(payload)), TIMEOUT)
        return data == payload
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return False
    finally:
        writer.close()


async def _session(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stop: asyncio.Event
) -> float | None:
    """Ping-pong one byte every 100 ms until `stop`; the wall-clock time it failed, or None."""
    try:
        while not stop.is_set():
            writer.write(b"p")
            await writer.drain()
            if await asyncio.wait_for(reader.readexactly(1), TIMEOUT) != b"p":
                return time.time()
            await asyncio.sleep(0.1)  # the session's pace
        return None
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return time.time()
    finally:
        writer.close()


async def _client(
    address: str, sessions: int, rate: float, seconds: float, size: int = len(PAYLOAD)
) -> None:
    stop = asyncio.Event()
    payload = b"x" * size
    opened = []
    ports = []
    failed_at_open = 0
    for _ in range(sessions):
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(address, PORT), TIMEOUT)
        except (OSError, TimeoutError):
            failed_at_open += 1
            continue
        ports.append(writer.get_extra_info("sockname")[1])
        opened.append(asyncio.ensure_future(_session(reader, writer, stop)))
    start = time.time()
    print(json.dumps({"started": start, "long_ports": ports}), flush=True)
    shorts: list[tuple[float, asyncio.Future[bool]]] = []
    total = int(rate * seconds)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for index in range(total):
        delay = t0 + index / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)  # a steady rate of new connections
        shorts.append((time.time(), asyncio.ensure_future(_short(address, payload))))
    results = [(t, await future) for t, future in shorts]
    stop.set()
    failures = await asyncio.gather(*opened)
    print(
        json.dumps(
            {
                "short": [[round(t - start, 4), ok] for t, ok in results],
                "long": [
                    {"port": p, "failed_at": None if f is None else round(f - start, 4)}
                    for p, f in zip(ports, failures, strict=True)
                ],
                "long_failed_at_open": failed_at_open,
            }
        ),
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="multihome.lab.gateway_workload")
    parser.add_argument("role", choices=("server", "client"))
    parser.add_argument("--netns", required=True)
    parser.add_argument("--address", default="")
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=9.0)
    parser.add_argument("--size", type=int, default=len(PAYLOAD), help="bytes each way")
    args = parser.parse_args(argv)
    namespace.enter(args.netns)
    if args.role == "server":
        asyncio.run(serve())
    else:
        asyncio.run(_client(args.address, args.sessions, args.rate, args.seconds, args.size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
