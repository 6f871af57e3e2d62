"""Renderers against golden files (regenerate with UPDATE_GOLDEN=1 after a deliberate change,
and read the diff)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from multihome.config import Config
from multihome.plan import plan
from multihome.render import Options, registry

from .test_plan import ARTICLE, TWO_ISP

GOLDEN = Path(__file__).parent / "golden"
CASES = {"article": ARTICLE, "two-isp": TWO_ISP}
OPTIONS = Options(executable="/usr/local/bin/multihome", network_files={"eth1": "50-dhcp.network"})


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("format_name", sorted(registry()))
def test_renderer_matches_golden_files(case: str, format_name: str) -> None:
    renderer, _ = registry()[format_name]
    rendered = renderer(plan(Config(), CASES[case]), OPTIONS)
    directory = GOLDEN / case / format_name
    files = dict(rendered.files)
    files["NOTES"] = "".join(f"{note}\n" for note in rendered.notes)
    if os.environ.get("UPDATE_GOLDEN"):
        for relative, text in files.items():
            (directory / relative).parent.mkdir(parents=True, exist_ok=True)
            (directory / relative).write_text(text)
    stored = {
        str(p.relative_to(directory)): p.read_text() for p in directory.rglob("*") if p.is_file()
    }
    assert stored == files


def test_networkd_uses_the_network_file_that_manages_the_uplink() -> None:
    renderer, _ = registry()["networkd"]
    files = renderer(plan(Config(), TWO_ISP), OPTIONS).files
    assert sorted(files) == [
        "10-eth0.network.d/90-multihome.conf",
        "50-dhcp.network.d/90-multihome.conf",
    ]


def test_netplan_says_what_it_cannot_express() -> None:
    renderer, _ = registry()["netplan"]
    rendered = renderer(plan(Config(), TWO_ISP), OPTIONS)
    assert "suppress_prefixlength" in rendered.notes[0] and "(6 rules)" in rendered.notes[0]
    assert "suppress" not in rendered.files["90-multihome.yaml"]
