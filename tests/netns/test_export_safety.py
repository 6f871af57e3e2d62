"""`multihome export -o DIR` as root (issue 22, point 1): no writing through another user's
link, nor into a directory another user owns; one line and exit 2 when refused."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from multihome.lab import scenarios
from multihome.lab.description import Topology
from multihome.lab.topology import Network

from .helpers import multihome

Build = Callable[[Topology], Network]
NOBODY = 65534


def test_export_refuses_a_directory_another_user_owns(build: Build, tmp_path: Path) -> None:
    server = build(scenarios.seed(nics=2)).ns("server")
    out = tmp_path / "out"
    out.mkdir()
    os.chown(out, NOBODY, NOBODY)
    done = multihome(server, "export", "--format", "ip", "-o", str(out), check=False)
    assert done.returncode == 2 and "uid 65534" in done.stderr and "not by root" in done.stderr
    assert "Traceback" not in done.stderr and list(out.iterdir()) == []


def test_export_replaces_a_planted_link_instead_of_writing_through_it(
    build: Build, tmp_path: Path
) -> None:
    server = build(scenarios.seed(nics=2)).ns("server")
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "multihome.sh").symlink_to(victim)
    multihome(server, "export", "--format", "ip", "-o", str(out))
    assert victim.read_text() == "precious\n"
    assert not (out / "multihome.sh").is_symlink()
    assert (out / "multihome.sh").read_text().startswith("#!/bin/sh\n")
    assert (out / "multihome.sh").stat().st_mode & 0o777 == 0o755


def test_export_into_a_new_directory_makes_it_755_whatever_the_umask(
    build: Build, tmp_path: Path
) -> None:
    server = build(scenarios.seed(nics=2)).ns("server")
    old = os.umask(0)
    try:
        multihome(server, "export", "--format", "networkd", "-o", str(tmp_path / "new"))
    finally:
        os.umask(old)
    new = tmp_path / "new"  # (the lab's own records may be beside it, root's alone)
    modes = {p.relative_to(tmp_path): p.stat().st_mode & 0o777 for p in [new, *new.rglob("*")]}
    assert set(modes.values()) <= {0o755, 0o644} and modes[Path("new")] == 0o755
