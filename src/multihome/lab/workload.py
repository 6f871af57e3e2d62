"""The lab's built-in web server and load generator.

Server: a minimal HTTP/1.1 responder that answers every GET with one file through
sendfile(2) (the kernel copies the data; Python only parses the request line), one process
per CPU on a SO_REUSEPORT socket, so it is not the bottleneck.

Client: an asyncio load generator: a new TCP connection per request, requests spread
round-robin over the server's addresses, at most `concurrency` in flight, split over one
process per CPU. A request that does not complete within the timeout counts as failed (the
two-ISP scenario's stock routing drops replies, and the phase must end, not hang).

Both run as `python -m multihome.lab.workload server|client --netns NS ...`, entering the
namespace themselves, and speak JSON lines on stdout to the lab driver.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence

from multihome.kernel import namespace

PORT = 8080
CONNECT_TIMEOUT = 0.25  # the lab's links answer a SYN in microseconds; this means "dropped"
REQUEST_TIMEOUT = 30.0  # a full response at the slowest rate the lab allows
HEADER_LIMIT = 8192


def emit(message: dict[str, object]) -> None:
    """One JSON line on stdout in a single write: several processes share the pipe."""
    try:
        os.write(sys.stdout.fileno(), (json.dumps(message) + "\n").encode())
    except BrokenPipeError:
        os._exit(1)  # the lab driver is gone: nobody wants the rest


def _die_with_parent() -> None:
    """A forked worker must not outlive its parent (PR_SET_PDEATHSIG)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _response_header(size: int) -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nContent-Type: application/octet-stream"
        "\r\nConnection: close\r\n\r\n"
    ).encode()


# ---------------------------------------------------------------------------- server


async def _serve_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, header: bytes
) -> None:
    try:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(header)
        await writer.drain()
        with open(path, "rb") as file:
            await asyncio.get_running_loop().sendfile(writer.transport, file)
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass  # the client went away: nothing to answer
    finally:
        writer.close()


def _listen(family: socket.AddressFamily, address: str) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((address, PORT))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


async def _server_main(path: str, children: list[int]) -> None:
    size = os.path.getsize(path)
    header = _response_header(size)
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        await asyncio.start_server(
            lambda r, w: _serve_connection(r, w, path, header),
            sock=_listen(family, address),
            limit=HEADER_LIMIT,
        )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    emit({"ready": os.getpid()})
    await stop.wait()
    # Connections still open are cut: a stopped lab server has nothing worth tidying, and
    # unwinding its tasks would only print cancellations.
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    os._exit(0)


def serve(path: str, workers: int) -> None:
    """Serve in `workers` processes until SIGTERM."""
    children = []
    for _ in range(workers - 1):
        pid = os.fork()
        if pid == 0:
            _die_with_parent()
            asyncio.run(_server_main(path, []))
        children.append(pid)
    asyncio.run(_server_main(path, children))


# ---------------------------------------------------------------------------- client


async def _fetch(address: str, request: bytes, expected: int) -> int:
    """One request on a new connection; the body bytes received, or -1 on failure."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(address, PORT), CONNECT_TIMEOUT
        )
    except (OSError, TimeoutError):
        return -1
    try:
        writer.write(request)
        received = 0
        async with asyncio.timeout(REQUEST_TIMEOUT):
            while chunk := await reader.read(1 << 18):
                received += len(chunk)
        return received if received == expected else -1
    except (OSError, TimeoutError):
        return -1
    finally:
        writer.close()


async def _client_main(
    addresses: Sequence[str], requests: int, concurrency: int, offset: int, size: int
) -> dict[str, object]:
    expected = len(_response_header(size)) + size
    requests_for = [(f"[{a}]" if ":" in a else a, a) for a in addresses]
    request_bytes = {
        a: f"GET /file HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        for host, a in requests_for
    }
    ok = {a: 0 for a in addresses}
    failed = {a: 0 for a in addresses}
    body = 0
    next_index = 0
    done = 0
    last_report = time.monotonic()

    async def worker() -> None:
        nonlocal next_index, body, done, last_report
        while next_index < requests:
            index = next_index
            next_index += 1
            address = addresses[(offset + index) % len(addresses)]
            got = await _fetch(address, request_bytes[address], expected)
            if got < 0:
                failed[address] += 1
            else:
                ok[address] += 1
                body += got
            done += 1
            now = time.monotonic()
            if now - last_report >= 0.2:
                last_report = now
                emit({"progress": done})

    await asyncio.gather(*(worker() for _ in range(min(concurrency, requests))))
    return {"ok": ok, "failed": failed, "bytes": body, "done": done}


def client(
    addresses: Sequence[str], requests: int, concurrency: int, size: int, procs: int
) -> None:
    """Run the load in `procs` processes; prints progress lines and one result line."""
    shares = [requests // procs + (1 if i < requests % procs else 0) for i in range(procs)]
    pipes = []
    start = time.monotonic()
    for i, share in enumerate(shares):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            _die_with_parent()
            os.close(read_fd)
            os.dup2(write_fd, sys.stdout.fileno())
            conc = max(1, concurrency // procs + (1 if i < concurrency % procs else 0))
            result = asyncio.run(_client_main(addresses, share, conc, sum(shares[:i]), size))
            emit({"result": result})
            os._exit(0)
        os.close(write_fd)
        pipes.append((pid, os.fdopen(read_fd)))
    totals: dict[str, dict[str, int]] = {"ok": {}, "failed": {}}
    body = 0
    progress = [0] * len(pipes)
    import selectors

    selector = selectors.DefaultSelector()
    for i, (_, pipe) in enumerate(pipes):
        selector.register(pipe, selectors.EVENT_READ, i)
    open_pipes = len(pipes)
    while open_pipes:
        for key, _ in selector.select():
            line = key.fileobj.readline()  # type: ignore[union-attr]
            if not line:
                selector.unregister(key.fileobj)
                open_pipes -= 1
                continue
            message = json.loads(line)
            if "progress" in message:
                progress[key.data] = message["progress"]
                emit({"progress": sum(progress)})
            else:
                result = message["result"]
                for kind in ("ok", "failed"):
                    for address, count in result[kind].items():
                        totals[kind][address] = totals[kind].get(address, 0) + count
                body += result["bytes"]
    for pid, pipe in pipes:
        os.waitpid(pid, 0)
        pipe.close()
    seconds = time.monotonic() - start
    emit({"result": {**totals, "bytes": body, "seconds": seconds}})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="multihome.lab.workload")
    parser.add_argument("role", choices=("server", "client"))
    parser.add_argument("--netns", required=True)
    parser.add_argument("--file", help="server: the file to serve")
    parser.add_argument("--address", action="append", default=[], help="client: target")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=40)
    parser.add_argument("--size", type=int, default=92160)
    parser.add_argument("--procs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    # The lab driver owns these processes and stops them; Ctrl-C on the terminal reaches the
    # whole process group, and must only make the driver clean up.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    namespace.enter(args.netns)
    if args.role == "server":
        serve(args.file, args.procs)
    else:
        client(args.address, args.requests, args.concurrency, args.size, args.procs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
