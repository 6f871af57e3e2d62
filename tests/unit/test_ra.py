"""The RA daemon's drop-in (host/ra.py) in a directory of the test's: written atomically,
replaced and removed only while it holds what multihome writes, never through a link, never
in a directory others may write."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from multihome.core import delegation
from multihome.errors import MultihomeError
from multihome.host import ra

B = [ipaddress.ip_network("2001:db8:b:1::/64")]


def test_written_replaced_and_removed(tmp_path: Path) -> None:
    path = tmp_path / delegation.DROP_IN
    drop_in = ra.RaDropIn(str(tmp_path))
    assert drop_in.update([]) is False and not path.exists()
    assert drop_in.update(B) is True
    assert path.read_text() == delegation.dnsmasq_drop_in(B)
    assert path.stat().st_mode & 0o777 == 0o644
    assert drop_in.update(B) is False  # unchanged: no restart
    assert drop_in.update([]) is True and not path.exists()


def test_a_drop_in_a_killed_watch_left_is_removed(tmp_path: Path) -> None:
    path = tmp_path / delegation.DROP_IN
    path.write_text(delegation.dnsmasq_drop_in(B))
    assert ra.RaDropIn(str(tmp_path)).update([]) is True
    assert not path.exists()


def test_another_file_or_a_link_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / delegation.DROP_IN
    path.write_text("dhcp-range=2001:db8:b:1::,ra-only,64\n")
    with pytest.raises(MultihomeError, match="not multihome's"):
        ra.RaDropIn(str(tmp_path)).update(B)
    assert path.read_text() == "dhcp-range=2001:db8:b:1::,ra-only,64\n"
    path.unlink()
    target = tmp_path / "elsewhere"
    target.write_text("keep\n")
    os.symlink(target, path)
    with pytest.raises(MultihomeError):
        ra.RaDropIn(str(tmp_path)).update(B)
    assert target.read_text() == "keep\n" and path.is_symlink()


def test_a_directory_others_may_write_is_refused(tmp_path: Path) -> None:
    open_dir = tmp_path / "d"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    with pytest.raises(MultihomeError):
        ra.RaDropIn(str(open_dir)).update(B)
    assert not (open_dir / delegation.DROP_IN).exists()


def test_restart_reports_a_failing_command() -> None:
    assert ra.restart(("true",)) is None
    assert "exited 1" in (ra.restart(("false",)) or "")
    assert ra.restart(("/nonexistent/restart",)) is not None


RADVD = """\
interface lan0 {
    AdvSendAdvert on;
    prefix 2001:db8:a:1::/64 {
        AdvOnLink on;
    };
    prefix 2001:db8:b:1::/64 {
        AdvPreferredLifetime 3600;
    };
};
"""


def test_radvd_gets_one_marked_line_per_dead_prefix_and_loses_exactly_those() -> None:
    changed = delegation.radvd_deprecating(RADVD, B)
    added = [line for line in changed.splitlines() if line not in RADVD.splitlines()]
    assert added == [f"        AdvPreferredLifetime 0; {delegation.RADVD_MARK}"]
    # last in the block (the last of a repeated option wins), after the user's own
    assert changed.index("AdvPreferredLifetime 3600") < changed.index("AdvPreferredLifetime 0")
    assert delegation.announced_deprecated("radvd", changed) == set(B)
    assert delegation.announced_deprecated("radvd", RADVD) == set()
    assert delegation.radvd_restored(changed) == RADVD
    assert delegation.radvd_deprecating(changed, B) == changed  # not twice


def test_radvd_config_written_in_place_with_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "radvd.conf"
    path.write_text(RADVD)
    path.chmod(0o640)
    edit = ra.RadvdConfig(str(path))
    assert edit.update(B) is True and edit.written is not None
    assert path.stat().st_mode & 0o777 == 0o640
    assert edit.update(B) is False
    assert edit.update([]) is True and path.read_text() == RADVD and edit.written is None
    one_line = RADVD.replace("{\n        AdvPreferredLifetime 3600;\n    };", "{ AdvOnLink on; };")
    path.write_text(one_line)
    with pytest.raises(MultihomeError, match="not deprecated"):
        edit.update(B)
    assert path.read_text() == one_line
