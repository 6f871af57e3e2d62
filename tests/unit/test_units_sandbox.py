"""The systemd units' sandbox (issue 22, point 5): every permission has its reason written
beside it, systemd itself accepts the units, and `systemd-analyze security` rates them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from multihome.core.model import Desired, Ownership
from multihome.render import Options, systemd

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
UNITS = ("multihome.service", "multihome-watch.service")


def units(tmp_path: Path) -> dict[str, Path]:
    """The units as exported, running a command that exists (so verify checks the rest)."""
    executable = shutil.which("true") or "/bin/true"
    rendered = systemd.render(Desired(Ownership()), Options(executable=executable)).files
    written = {}
    for name in UNITS:
        (tmp_path / name).write_text(rendered[name])
        written[name] = tmp_path / name
    return written


def test_each_permission_of_the_sandbox_says_why() -> None:
    """Each group of settings opens with a comment: its reason."""
    reason = ""
    for line in systemd.SANDBOX.strip().splitlines():
        if line.startswith("#"):
            reason = line
        elif re.match(r"^[A-Z]\w+=", line):
            assert reason, f"no reason given for {line}"
        else:
            reason = ""  # a blank line ends a group
    assert "\nProtectKernelTunables=" not in systemd.SANDBOX  # apply writes /proc/sys/net
    assert "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW\n" in systemd.SANDBOX
    assert "LimitNOFILE=" in systemd.SANDBOX


@needs_analyze
def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    for path in units(tmp_path).values():
        done = subprocess.run(
            [str(ANALYZE), "verify", "--man=no", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0 and path.name not in done.stderr, done.stderr


@needs_analyze
def test_systemd_analyze_security_rates_the_units_ok(tmp_path: Path) -> None:
    """9.6 (UNSAFE) without the sandbox; 2.9 (OK) with it, on systemd 252."""
    for name in units(tmp_path):
        done = subprocess.run(
            [str(ANALYZE), "security", "--offline=true", name],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        score = re.search(r"Overall exposure level for \S+: ([\d.]+)", done.stdout)
        assert score is not None, done.stdout + done.stderr
        assert float(score.group(1)) <= 3.5, done.stdout


@needs_analyze
def test_an_executable_path_with_a_space_or_percent_runs_exactly_that_file(
    tmp_path: Path,
) -> None:
    """systemd reads `%x` as a specifier and splits at spaces: the path is quoted for it."""
    odd = tmp_path / "my dir %i"
    odd.mkdir()
    executable = odd / "multihome"
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    text = systemd.render(Desired(Ownership()), Options(executable=str(executable))).files
    (tmp_path / "multihome.service").write_text(text["multihome.service"])
    done = subprocess.run(
        [str(ANALYZE), "verify", "--man=no", str(tmp_path / "multihome.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "not executable" not in done.stderr, done.stderr
    assert f'ExecStart="{odd}/multihome" apply'.replace("%", "%%") in text["multihome.service"]
