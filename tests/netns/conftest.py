"""Fixtures for tests against the real kernel, in throwaway network namespaces.

Every test builds its own network with a unique name prefix and removes it in `finally`,
also when the test fails. Without root the tests are skipped locally, but under CI (CI=true)
that is an error: these tests must run there.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from multihome.lab.description import Topology
from multihome.lab.topology import Network

_counter = 0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/netns" in str(item.path):
            item.add_marker(pytest.mark.netns)


@pytest.fixture(autouse=True)
def _need_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the netns tests need root, and CI must run them")
        pytest.skip("needs root (network namespaces)")


@pytest.fixture
def build(
    monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]
) -> Iterator[Callable[[Topology], Network]]:
    """Build a topology; everything built is removed at the end of the test."""
    global _counter
    # Each test gets its own state directory, so state files never leak between tests.
    monkeypatch.setenv("MULTIHOME_STATE_DIR", str(tmp_path))
    # (and so its own record of lab networks: removing dead runs' networks, as every network
    # built does first, then only ever sees what the tests made)
    networks: list[Network] = []

    def make(topology: Topology) -> Network:
        global _counter
        _counter += 1
        network = Network(topology, prefix=f"mht{os.getpid() % 10000}x{_counter}-")
        network.__enter__()
        networks.append(network)
        return network

    try:
        yield make
    finally:
        for network in networks:
            network.destroy()
