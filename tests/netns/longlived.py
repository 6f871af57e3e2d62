"""Long-lived connections for the gateway tests, like SSH or IRC sessions: each sends a byte
every 100 ms and waits for its echo. As a server (`server PORT`): echo everything. As a
client (`client HOST PORT`): commands on stdin, `open N` opens N more connections and prints
their local ports; `report` prints {port: failed?} as JSON; `quit` ends."""

import json
import socket
import sys
import threading
import time


def echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(4096):
            conn.sendall(data)


def serve(port: int) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    sock.listen(128)
    print("ready", flush=True)
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=echo, args=(conn,), daemon=True).start()


failed: dict[int, bool] = {}


def session(sock: socket.socket, port: int) -> None:
    sock.settimeout(1.0)
    try:
        while True:
            sock.sendall(b"x")
            if sock.recv(1) != b"x":
                raise OSError("closed")
            time.sleep(0.1)  # pacing of the workload, not synchronisation
    except OSError:
        failed[port] = True


def client(host: str, port: int) -> None:
    for line in sys.stdin:
        words = line.split()
        if words[0] == "open":
            ports = []
            for _ in range(int(words[1])):
                sock = socket.create_connection((host, port), timeout=2)
                local = sock.getsockname()[1]
                failed[local] = False
                ports.append(local)
                threading.Thread(target=session, args=(sock, local), daemon=True).start()
            print(json.dumps(ports), flush=True)
        elif words[0] == "report":
            print(json.dumps(failed), flush=True)
        else:
            return


if sys.argv[1] == "server":
    serve(int(sys.argv[2]))
else:
    client(sys.argv[2], int(sys.argv[3]))
