"""Every file multihome writes or deletes as root stays under its root, passes no link, goes
into no directory another user could change, gets its mode whatever the umask, and is
removed only when it is what multihome wrote (issue 22, point 1)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from multihome.core.config import Config
from multihome.core.plan import plan
from multihome.errors import MultihomeError, StateError
from multihome.host import files, install, state
from multihome.render import Options

from .test_plan import ARTICLE

DESIRED = plan(Config(), ARTICLE)
OPTIONS = Options(executable="/usr/local/bin/multihome")
NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


def tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): (os.readlink(p) if p.is_symlink() else p.read_text())
        for p in sorted(root.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Path]:
    """Files outside the root that a hostile manifest or link aims at."""
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "victim").write_text("precious\n")
    (directory / "victim.multihome-backup").write_text("attacker's\n")
    before = tree(directory)
    yield directory
    assert tree(directory) == before  # nothing outside the root was touched


def a_manifest(root: Path, entries: list[dict[str, object]]) -> None:
    path = root / install.MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"files": entries}))


@pytest.mark.parametrize(
    "entry",
    [
        {"path": "{outside}/victim", "backup": None},
        {"path": "../outside/victim", "backup": None},
        {"path": "etc/../../outside/victim", "backup": None},
        {"path": "etc/x.conf", "backup": "{outside}/victim.multihome-backup"},
        {"path": "etc/x.conf", "backup": "../outside/victim.multihome-backup"},
        {"path": "etc/x.conf", "backup": None, "content": "sha256:../../x"},
        {"path": ["etc/x.conf"], "backup": None},
        {"path": "", "backup": None},
    ],
)
def test_a_hostile_manifest_is_refused_and_nothing_outside_the_root_is_touched(
    tmp_path: Path, outside: Path, entry: dict[str, object]
) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/x.conf").write_text("theirs\n")
    spelled = {k: v.format(outside=outside) if isinstance(v, str) else v for k, v in entry.items()}
    a_manifest(root, [spelled])
    with pytest.raises(MultihomeError) as raised:
        install.uninstall(str(root))
    assert "manifest" in raised.value.message and "damaged" in raised.value.message
    assert (root / "etc/x.conf").read_text() == "theirs\n"


def test_uninstall_does_not_follow_a_link_planted_in_the_root(
    tmp_path: Path, outside: Path
) -> None:
    """A directory of the root replaced by a link to another place: the manifest's entry
    (valid, and with the content of the victim) resolves through the link, so it is refused."""
    root = tmp_path / "root"
    root.mkdir()
    install.install(DESIRED, ARTICLE, str(root), "systemd", OPTIONS)
    victim = f"sha256:{files.digest(b'precious' + bytes([10]))}"
    entries = json.loads((root / install.MANIFEST).read_text())["files"]
    entries.append({"path": "etc/evil/victim", "backup": None, "content": victim})
    a_manifest(root, entries)
    (root / "etc/evil").symlink_to(outside)
    with pytest.raises(MultihomeError) as raised:
        install.uninstall(str(root))
    assert "symbolic link" in raised.value.message


def test_install_does_not_write_through_a_link_planted_in_the_root(
    tmp_path: Path, outside: Path
) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/sysctl.d").symlink_to(outside)
    with pytest.raises(MultihomeError) as raised:
        install.install(DESIRED, ARTICLE, str(root), "systemd", OPTIONS)
    assert "symbolic link" in raised.value.message and "sysctl.d" in raised.value.message


def test_a_link_at_a_files_place_is_replaced_not_written_through(
    tmp_path: Path, outside: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "multihome.sh").symlink_to(outside / "victim")
    files.write_tree(str(out), {"multihome.sh": "#!/bin/sh\n"})
    assert not (out / "multihome.sh").is_symlink()
    assert (out / "multihome.sh").read_text() == "#!/bin/sh\n"


@needs_root
@pytest.mark.parametrize("where", ["root", "sub"])
def test_a_directory_another_user_owns_is_refused_with_its_owner_named(
    tmp_path: Path, where: str
) -> None:
    root = tmp_path / "root"
    (root / "etc/systemd").mkdir(parents=True)
    os.chown(root if where == "root" else root / "etc", NOBODY, NOBODY)
    for attempt in (
        lambda: install.install(DESIRED, ARTICLE, str(root), "systemd", OPTIONS),
        lambda: files.write_tree(str(root), {"etc/systemd/x": "y"}),
    ):
        with pytest.raises(files.UnsafePath) as raised:
            attempt()
        assert "uid 65534" in raised.value.message and "not by root" in raised.value.message
    assert tree(root) == {}
    if where == "root":
        with pytest.raises(files.UnsafePath):
            install.uninstall(str(root))


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o775])
def test_a_directory_others_may_write_is_refused(tmp_path: Path, mode: int) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.chmod(root / "etc", mode)  # like /tmp, or a group's directory
    with pytest.raises(files.UnsafePath) as raised:
        files.write_tree(str(root), {"etc/multihome/x": "y"})
    assert f"mode {mode:o}" in raised.value.message and "etc" in raised.value.message
    assert tree(root) == {}


def test_a_root_made_with_mktemp_is_fine(tmp_path: Path) -> None:
    import tempfile

    root = tempfile.mkdtemp(dir=tmp_path)  # mode 700, owned by the user running it
    files.write_tree(root, {"etc/x": "y"})
    assert Path(root, "etc/x").read_text() == "y"


def test_directories_and_files_get_their_modes_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        files.write_tree(str(tmp_path / "out"), {"a/b/c.conf": "x", "a/run.sh": "#!/bin/sh\n"})
    finally:
        os.umask(old)
    modes = {str(p.relative_to(tmp_path)): p.stat().st_mode & 0o7777 for p in tmp_path.rglob("*")}
    assert modes == {
        "out": 0o755,
        "out/a": 0o755,
        "out/a/b": 0o755,
        "out/a/b/c.conf": 0o644,
        "out/a/run.sh": 0o755,
    }


def test_uninstall_keeps_an_enable_link_it_did_not_write(tmp_path: Path) -> None:
    root = tmp_path / "root"
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True)
    (wants / "multihome.service").symlink_to("/lib/systemd/system/multihome.service")
    before = tree(root)
    install.install(DESIRED, ARTICLE, str(root), "systemd", OPTIONS)
    assert os.readlink(wants / "multihome.service") == "/lib/systemd/system/multihome.service"
    install.uninstall(str(root))
    assert tree(root) == before


def test_uninstall_keeps_a_file_changed_since_install(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    install.install(DESIRED, ARTICLE, str(root), "systemd", OPTIONS)
    unit = root / "etc/systemd/system/multihome.service"
    unit.write_text("# edited by the admin\n")
    done = install.uninstall(str(root))
    assert unit.read_text() == "# edited by the admin\n"
    assert any("multihome.service" in kept for kept in done.kept)
    assert not (root / "etc/sysctl.d/90-multihome.conf").exists()  # the others went


def test_install_does_not_replace_a_file_changed_since_it_wrote_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    install.install(DESIRED, ARTICLE, str(root), "systemd", OPTIONS)
    unit = root / "etc/systemd/system/multihome.service"
    unit.write_text("# edited by the admin\n")
    with pytest.raises(MultihomeError) as raised:
        install.install(DESIRED, ARTICLE, str(root), "systemd", OPTIONS)
    assert "changed since multihome installed it" in raised.value.message
    assert unit.read_text() == "# edited by the admin\n"


def test_the_state_lock_does_not_follow_a_link(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, outside: Path
) -> None:
    monkeypatch.setenv("MULTIHOME_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "state").mkdir()
    Path(state.file_path(7, "lock")).symlink_to(outside / "victim")
    with pytest.raises(StateError), state.lock(7):
        pass


def test_a_link_on_the_way_to_the_root_is_refused(tmp_path: Path, outside: Path) -> None:
    (tmp_path / "via").symlink_to(outside)
    with pytest.raises(files.UnsafePath) as raised:
        files.write_tree(str(tmp_path / "via/out"), {"x": "y"})
    assert "symbolic link" in raised.value.message and "via" in raised.value.message


def test_a_directory_above_the_root_others_may_write_is_refused_unless_sticky(
    tmp_path: Path,
) -> None:
    above = tmp_path / "above"
    (above / "root").mkdir(parents=True)
    above.chmod(0o777)  # anyone could rename root and put their own in its place
    with pytest.raises(files.UnsafePath, match="mode 777"):
        files.write_tree(str(above / "root"), {"x": "y"})
    above.chmod(0o1777)  # like /tmp: only root may rename root's directory
    files.write_tree(str(above / "root"), {"x": "y"})
