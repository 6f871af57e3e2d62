"""The codec against what the kernel really sends: a namespace with multihome's kinds of rules
and routes and foreign ones with every kind of selector, dumped through multihome's
transport, decodes as `ip -j` shows the same namespace.

MULTIHOME_RECORD_CAPTURES=1 also writes the capture to tests/unit/kernel_captures.json,
which the unit tests check without root."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from ..unit.kernel_captures import (
    CAPTURE,
    SETUP,
    check_addresses,
    check_routes,
    check_rules,
    record,
)


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"mht{os.getpid() % 10000}cap"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_what_the_kernel_sends_decodes_as_ip_shows_it(netns: str) -> None:
    for line in SETUP:
        subprocess.run(["ip", "-n", netns, *line.split()], check=True)
    capture = record(netns)
    assert len(capture["rule"]) >= len([s for s in SETUP if " rule add " in f" {s}"])
    check_rules(capture)
    check_routes(capture)
    check_addresses(capture)
    if os.environ.get("MULTIHOME_RECORD_CAPTURES") == "1":
        with open(CAPTURE, "w", encoding="utf-8") as file:
            json.dump(capture, file, indent=1)
            file.write("\n")
