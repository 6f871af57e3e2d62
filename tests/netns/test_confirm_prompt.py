"""`apply --confirm` as a person meets it: the prompt on a terminal takes the answers it
names (`no` reverts at once), and the refusal while a change waits names the command with the
user's own --netns and -c."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from multihome.lab import scenarios
from multihome.lab.description import Topology
from multihome.lab.topology import Network

from .helpers import PY, multihome, snapshot

Build = Callable[[Topology], Network]


class Terminal:
    """`multihome --netns NS ARGS...` with a pseudo-terminal as its stdin and stdout."""

    def __init__(self, ns: str, *args: str) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [PY, "-m", "multihome", "--netns", ns, *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=dict(os.environ),
        )
        os.close(slave)
        self.seen = ""

    def read_until(self, text: str, seconds: float = 30.0) -> str:
        deadline = time.monotonic() + seconds
        while text not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} not shown; the terminal shows:\n{self.seen}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    self.seen += os.read(self.master, 4096).decode()
                except OSError:  # the process is gone and the terminal closed
                    break
        assert text in self.seen, self.seen
        return self.seen

    def type(self, line: str) -> None:
        os.write(self.master, (line + "\n").encode())

    def close(self) -> int:
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            os.close(self.master)


def test_no_at_the_prompt_reverts_at_once_and_yes_keeps(build: Build) -> None:
    net = build(scenarios.seed(nics=2))
    server = net.ns("server")
    before = snapshot(server)
    terminal = Terminal(server, "apply", "--confirm", "60")
    try:
        terminal.read_until("Type 'yes' to keep it, 'no' to revert it now (60 s): ")
        assert snapshot(server) != before
        terminal.type("maybe")
        terminal.read_until("Please type 'yes' or 'no': ")
        start = time.monotonic()
        terminal.type("no")
        terminal.read_until("reverted: the routing is as it was before")
        assert terminal.close() == 0
    finally:
        if terminal.proc.poll() is None:
            terminal.close()
    assert time.monotonic() - start < 10  # not at the 60 s deadline
    assert snapshot(server) == before
    assert multihome(server, "confirm").stdout.strip() == "nothing awaits confirmation"

    terminal = Terminal(server, "apply", "--confirm", "60")
    try:
        terminal.read_until("(60 s): ")
        applied = snapshot(server)
        terminal.type("y")
        terminal.read_until("confirmed: the change is kept")
        assert terminal.close() == 0
    finally:
        if terminal.proc.poll() is None:
            terminal.close()
    assert snapshot(server) == applied != before


def test_refusal_while_waiting_names_the_users_netns_and_config(
    build: Build, tmp_path: Path
) -> None:
    net = build(scenarios.seed(nics=2))
    server = net.ns("server")
    config = tmp_path / "multihome.toml"
    config.write_text("[sysctls]\narp = true\n")
    config.chmod(0o600)
    multihome(server, "-c", str(config), "apply", "--confirm", "60")
    try:
        refused = multihome(server, "-c", str(config), "apply", check=False)
        assert refused.returncode == 2
        assert (
            f"hint: run `multihome --netns {server} -c {config} confirm` to keep it"
            in refused.stderr
        )
    finally:
        assert multihome(server, "confirm").stdout.strip() == "confirmed: the change is kept"
