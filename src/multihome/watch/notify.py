"""systemd's notify protocol (Type=notify): READY=1 once, WATCHDOG=1 at half the interval."""

from __future__ import annotations

import os
import socket


class Notify:
    def __init__(self) -> None:
        address = os.environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = os.environ.get("WATCHDOG_USEC", "")
        self.watchdog = int(usec) / 1e6 / 2 if usec.isdigit() else None
        self.next_ping = 0.0

    def send(self, message: str) -> None:
        if not self.address:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), self.address)

    def tick(self, now: float) -> None:
        if self.watchdog and now >= self.next_ping:
            self.send("WATCHDOG=1")
            self.next_ping = now + self.watchdog
