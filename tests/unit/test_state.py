"""multihome's per-namespace files, without root: atomic writes, errors as StateError."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from multihome.core.model import Family, Route, Rule
from multihome.errors import StateError
from multihome.host import files, state
from multihome.kernel import namespace
from multihome.watch import status


@pytest.fixture
def state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("MULTIHOME_STATE_DIR", str(tmp_path))
    return tmp_path


def test_concurrent_status_writers_never_clash(state_dir: Path) -> None:
    """Each write has its own temporary file: no writer renames another's half-written one."""
    errors: list[BaseException] = []

    def writer(number: int) -> None:
        try:
            for round_ in range(150):
                status.write_status(7, {"pid": number, "uplinks": {"x" * 2000: round_}})
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert json.loads((state_dir / "netns-7.watch.json").read_text())["pid"] in range(4)
    assert sorted(os.listdir(state_dir)) == ["netns-7.watch.json"]  # no temporary files left


def test_files_carry_the_cookie_and_another_namespaces_file_is_removed(state_dir: Path) -> None:
    state.write_json(7, "pending", {"pid": 1})
    assert state.read_json(7, "pending") == {"pid": 1, "netns_cookie": namespace.cookie()}
    path = state_dir / "netns-7.pending"
    path.write_text(json.dumps({"pid": 1, "netns_cookie": 12345}))
    if namespace.cookie() is not None:  # Linux 5.14+
        assert state.read_json(7, "pending") is None
        assert not path.exists()


def test_atomic_write_leaves_the_old_file_when_it_fails(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("old")
    with pytest.raises(UnicodeEncodeError):
        files.atomic_write(str(target), "new\udcff")  # not encodable: fails mid-write
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["f"]


def test_atomic_write_skips_a_temporary_name_a_dead_process_left(tmp_path: Path) -> None:
    # a temporary file left by a crash (same pid, reused) is not written to, and stays
    stale = tmp_path / f".multihome-{os.getpid()}-000000000000"
    stale.write_text("someone else's")
    files.atomic_write(str(tmp_path / "f"), "new", 0o640)
    assert (tmp_path / "f").read_text() == "new"
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o640
    assert stale.read_text() == "someone else's"
    assert sorted(os.listdir(tmp_path)) == sorted(["f", stale.name])


@pytest.mark.parametrize("operation", ["save", "lock", "write_json"])
def test_an_unusable_state_directory_is_a_state_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, operation: str
) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    monkeypatch.setenv("MULTIHOME_STATE_DIR", str(blocked / "multihome"))
    with pytest.raises(StateError) as raised:
        if operation == "save":
            state.save(7, state.Record(sysctl_originals={"a": "0"}), [], [])
        elif operation == "lock":
            with state.lock(7):
                pass
        else:
            state.write_json(7, "watch.json", {})
    assert "not-a-directory" in raised.value.message and raised.value.hint


@pytest.mark.parametrize("text", ["[]", "3", '"x"', '{"sysctl_originals": []}'])
def test_a_record_of_another_shape_is_a_damaged_file(state_dir: Path, text: str) -> None:
    (state_dir / "netns-7.json").write_text(text)
    with pytest.raises(StateError, match=r"cannot read the state file .*netns-7\.json") as caught:
        state.load(7)
    assert "move it away" in caught.value.hint


@pytest.mark.parametrize(
    "data", [{"pid": os.getpid()}, {"pid": "abc", "deadline": 1.0}, {"deadline": None}]
)
def test_a_damaged_pending_file_reads_as_nothing_pending(
    state_dir: Path, data: dict[str, object]
) -> None:
    from multihome.host import confirm

    netns_id = namespace.identity()
    state.write_json(netns_id, confirm.PENDING, data)
    assert confirm.pending(netns_id) is None
    assert state.read_json(netns_id, confirm.PENDING) is None  # discarded


def _rule(source: str, table: int = 100) -> Rule:
    return Rule(Family.INET, 1000, table, ipaddress.ip_network(source), 0, 77)


def test_the_listing_of_each_save_is_the_objects_of_that_save(state_dir: Path) -> None:
    """The lines of the last save are reused for the same objects only: a rule that changed
    (its table), one that went and one that came are listed as they are now; the file is
    json.dumps(..., indent=1) of the record, as before."""
    route = Route(
        Family.INET, 100, ipaddress.ip_network("198.18.0.0/20"), dev="wan\u00e9", protocol=77
    )
    first = [_rule("198.18.0.1/32"), _rule("198.18.0.2/32"), _rule("198.18.0.3/32")]
    state.save(7, state.Record(), first, [route])
    text = (state_dir / "netns-7.json").read_text()
    assert text == json.dumps(json.loads(text), indent=1) and "wan\\u00e9" in text
    assert json.loads(text)["routes"] == ["-4 198.18.0.0/20 dev wan\u00e9 table 100 proto 77"]
    state.save(7, state.Record(), [], [route])
    text = (state_dir / "netns-7.json").read_text()
    assert text == json.dumps(json.loads(text), indent=1) and '"rules": []' in text
    state.save(7, state.Record(), first, [route])
    later = [first[0], _rule("198.18.0.2/32", table=101), _rule("198.18.0.4/32")]
    state.save(7, state.Record(sysctl_originals={"net/ipv4/conf/eth0/rp_filter": "1"}), later, [])
    text = (state_dir / "netns-7.json").read_text()
    data = json.loads(text)
    assert text == json.dumps(data, indent=1)
    assert (
        data["rules"]
        == [f"-4 {r.ip_args()}" for r in later]
        == [
            "-4 pref 1000 from 198.18.0.1/32 lookup 100 suppress_prefixlength 0 proto 77",
            "-4 pref 1000 from 198.18.0.2/32 lookup 101 suppress_prefixlength 0 proto 77",
            "-4 pref 1000 from 198.18.0.4/32 lookup 100 suppress_prefixlength 0 proto 77",
        ]
    )
    assert data["routes"] == [] and data["sysctl_originals"] == {
        "net/ipv4/conf/eth0/rp_filter": "1"
    }


def test_a_record_read_back_is_the_files_also_after_another_writer(state_dir: Path) -> None:
    """load reads the file as it is now: after its own save what it wrote; another writer's
    file of the same length, or a damaged one, as that writer left it."""
    rules = [_rule("198.18.0.1/32")]
    saved = state.Record(sysctl_originals={"net/ipv4/conf/eth0/rp_filter": "1"})
    state.save(7, saved, rules, [])
    saved.sysctl_originals.clear()  # the caller's record, changed after the save
    first = state.load(7)
    assert first.sysctl_originals == {"net/ipv4/conf/eth0/rp_filter": "1"}
    first.sysctl_originals["net/ipv4/conf/eth0/rp_filter"] = "changed by the caller"
    assert state.load(7).sysctl_originals == {"net/ipv4/conf/eth0/rp_filter": "1"}
    path = state_dir / "netns-7.json"
    text = path.read_text()
    other = text.replace('rp_filter": "1"', 'rp_filter": "0"').replace('": false', '": true ')
    assert len(other) == len(text) and other != text
    files.atomic_write(str(path), other)
    again = state.load(7)
    assert again.sysctl_originals == {"net/ipv4/conf/eth0/rp_filter": "0"} and again.nft_table
    path.write_text(text[:-1])
    with pytest.raises(StateError, match="cannot read the state file"):
        state.load(7)
    path.write_text(text)
    assert state.load(7).sysctl_originals == {"net/ipv4/conf/eth0/rp_filter": "1"}


def test_a_listed_object_gone_is_never_taken_for_a_new_one(state_dir: Path) -> None:
    """Each save lists the objects it is given, also when the ones of the last save were
    freed and new ones made in their place."""
    for n in range(20):
        state.save(7, state.Record(), [_rule(f"198.18.1.{n}/32", table=100 + n)], [])
        line = json.loads((state_dir / "netns-7.json").read_text())["rules"]
        assert line == [
            f"-4 pref 1000 from 198.18.1.{n}/32 lookup {100 + n} suppress_prefixlength 0 proto 77"
        ]


def test_a_lifetime_lock_names_its_live_holder_and_frees_itself_when_it_dies(
    state_dir: Path,
) -> None:
    """The watch lock and the guardian's: a process that holds it is found by the lock, not
    by a pid in a file; when it dies (SIGKILL), nobody holds it, whatever the file says."""
    import signal
    import subprocess
    import sys

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from multihome.host import state;"
            " held = state.take(7, state.WATCH_LOCK); print(held is not None, flush=True);"
            " time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "MULTIHOME_STATE_DIR": str(state_dir)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "True"
        assert state.holder(7, state.WATCH_LOCK) == holder.pid
        assert state.take(7, state.WATCH_LOCK) is None  # a second owner is refused
        assert state.holder(7, state.GUARDIAN_LOCK) is None  # another kind is free
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert state.holder(7, state.WATCH_LOCK) is None  # the pid is still in the file
    assert str(holder.pid) in (state_dir / "netns-7.watch.lock").read_text()
    held = state.wait_free(7, state.WATCH_LOCK, 1.0)
    assert held is not None and state.holder(7, state.WATCH_LOCK) == os.getpid()
    held.release()
    assert state.holder(7, state.WATCH_LOCK) is None


def test_the_lock_file_is_not_followed_when_a_link_stands_in_its_place(
    state_dir: Path, tmp_path: Path
) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("precious\n")
    (state_dir / "netns-7.watch.lock").symlink_to(target)
    with pytest.raises(StateError):
        state.take(7, state.WATCH_LOCK)
    assert target.read_text() == "precious\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_no_other_user_can_hold_or_forge_a_lock(state_dir: Path) -> None:
    """flock needs no write permission: a lock file others could open would let any user
    hold every apply, remove and watch off, and write the pid root then signals."""
    state_dir.chmod(0o755)
    old = state_dir / "netns-7.watch.lock"
    old.write_text("1 0 watch\n")
    old.chmod(0o644)  # as an older version left it
    held = state.take(7, state.WATCH_LOCK, "watch")
    assert held is not None
    try:
        for suffix in (state.WATCH_LOCK, state.GUARDIAN_LOCK, "lock"):
            with state.lock(7, suffix=suffix) if suffix == "lock" else _taken(suffix):
                path = state_dir / f"netns-7.{suffix}"
                assert path.stat().st_mode & 0o777 == 0o600, suffix
                child = os.fork()
                if child == 0:  # an ordinary user tries to open it to lock it
                    os.setgid(65534)
                    os.setuid(65534)
                    try:
                        os.open(path, os.O_RDONLY)
                    except PermissionError:
                        os._exit(0)
                    os._exit(1)
                assert os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 0, suffix
    finally:
        held.release()


def _taken(suffix: str) -> contextlib.AbstractContextManager[None]:
    @contextlib.contextmanager
    def hold() -> Iterator[None]:
        held = state.take(7, suffix) if suffix != state.WATCH_LOCK else None
        try:
            yield
        finally:
            if held is not None:
                held.release()

    return hold()


def test_a_fifo_or_link_in_place_of_a_state_file_neither_hangs_nor_is_followed(
    state_dir: Path,
) -> None:
    target = state_dir / "elsewhere.json"
    target.write_text('{"sysctl_originals": {"a": "1"}}')
    os.mkfifo(state_dir / "netns-7.json")
    os.mkfifo(state_dir / "netns-7.watch.json")
    with pytest.raises(StateError, match="not a regular file"):
        state.load(7)
    assert state.read_json(7, "watch.json") is None
    os.unlink(state_dir / "netns-7.json")
    os.symlink(target, state_dir / "netns-7.json")
    with pytest.raises(StateError, match="cannot read the state file"):
        state.load(7)


@pytest.mark.parametrize(
    "danger", ["others-write", "group-write", "another-owner", "a-link", "dot-dot"]
)
def test_a_state_directory_another_user_could_change_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, danger: str
) -> None:
    """MULTIHOME_STATE_DIR pointed at a directory another user could change: a state file
    planted there would have `remove` set the sysctls it names, as root. Nothing is read
    from it or written to it; the error names the directory and what is wrong."""
    place = tmp_path / "state"
    place.mkdir(mode=0o755)
    planted = {"sysctl_originals": {"net/ipv4/conf/all/rp_filter": "0"}}
    (place / "netns-7.json").write_text(json.dumps(planted))
    used = place
    if danger == "others-write":
        place.chmod(0o1777)  # sticky, as /tmp: still not a directory for root's state
    elif danger == "group-write":
        place.chmod(0o775)
    elif danger == "another-owner":
        if os.geteuid() != 0:
            pytest.skip("chown needs root")  # (CI runs as root)
        os.chown(place, 65534, 65534)
    elif danger == "a-link":
        used = tmp_path / "link"
        used.symlink_to(place)
    else:  # checked lexically as .../state, but the kernel would go up from where it leads
        (tmp_path / "elsewhere").mkdir()
        used = tmp_path / "elsewhere" / ".." / "state"
    monkeypatch.setenv("MULTIHOME_STATE_DIR", str(used))
    why = {
        "others-write": r"writable by group and others \(mode 1777\)",
        "group-write": "writable by group",
        "another-owner": r"owned by .*\(uid 65534\), not by root",
        "a-link": "symbolic link",
        "dot-dot": "holds `..`",
    }[danger]
    why = r"state directory .* \(MULTIHOME_STATE_DIR\): .*" + why
    with pytest.raises(StateError, match=why):
        state.load(7)
    with pytest.raises(StateError, match=why):
        state.save(7, state.Record(sysctl_originals={"a": "0"}), [], [])
    with pytest.raises(StateError, match=why), state.lock(7):
        pass
    assert sorted(os.listdir(place)) == ["netns-7.json"]  # nothing written there
    # the same directory, made safe again, is used
    place.chmod(0o755)
    if danger == "another-owner":
        os.chown(place, 0, 0)
    monkeypatch.setenv("MULTIHOME_STATE_DIR", str(place))
    assert state.load(7).sysctl_originals == planted["sysctl_originals"]
