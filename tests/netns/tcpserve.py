"""A tiny TCP server for the netns tests: sends SIZE bytes to every connection, IPv4 and IPv6."""

import socket
import sys
import threading

port, size = int(sys.argv[1]), int(sys.argv[2])
payload = b"x" * size


def serve(family: socket.AddressFamily, address: str) -> None:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((address, port))
    sock.listen(64)
    ready.release()
    while True:
        conn, _ = sock.accept()
        conn.sendall(payload)
        conn.close()


ready = threading.Semaphore(0)
for args in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
    threading.Thread(target=serve, args=args, daemon=True).start()
ready.acquire()
ready.acquire()
print("ready", flush=True)
threading.Event().wait()
