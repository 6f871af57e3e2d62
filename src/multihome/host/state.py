"""multihome's files under /run/multihome, per network namespace: the state file (what
multihome created and the sysctl values it replaced, so that `remove` can put them back),
the lock, the daemon's status and the confirm guardian's files.

Each file is named by the namespace's inode (netns-<inode>.<suffix>): it lives exactly as
long as the kernel state it describes (both vanish at reboot), and runs in different
namespaces never share it, however they entered them. The kernel reuses the inode of a
deleted namespace, so every file also carries the namespace's cookie, which is never reused:
a file with another cookie belongs to a dead namespace, reads as absent and is removed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from collections.abc import Iterator

from multihome.core.model import Route, Rule
from multihome.core.records import field, record
from multihome.errors import LockError, StateError
from multihome.host import files
from multihome.kernel import namespace

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

DEFAULT_STATE_DIR = "/run/multihome"


def state_dir() -> str:
    """Where the per-namespace files live; read at each use, so that a process (a test) that
    changes MULTIHOME_STATE_DIR after importing this module still agrees with its children."""
    return os.environ.get("MULTIHOME_STATE_DIR", DEFAULT_STATE_DIR)


LOCK_WAIT = 5.0


def _check_directory(create: bool = False) -> None:
    """Refuse a state directory another user could change (MULTIHOME_STATE_DIR pointed at
    theirs): it and every directory above it root's own (or this user's) and writable by no
    one else (above it, sticky as /tmp is allowed), named without `..` and reached through
    no link, so that the path used afterwards is the directory checked. A state file
    planted there would have `remove` write the sysctls it names, as root. With `create`,
    made where missing (each directory made is checked the same way). Raises
    FileNotFoundError where it does not exist (without `create`), StateError where it is
    not safe."""
    directory = state_dir()
    if not create and not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, "no state directory", directory)
    try:
        if ".." in directory.split("/"):
            raise files.UnsafePath(f"{directory} holds `..`", hint="give the directory's own path")
        os.close(files.open_root(directory, create=create))
    except files.UnsafePath as error:
        raise StateError(
            f"state directory {directory} (MULTIHOME_STATE_DIR): {error.message}",
            hint=error.hint,
        ) from None


@record
class Record:
    """What `remove` needs from the state file: the first value of each sysctl multihome
    changed (the rules and routes it owns are recognised in the kernel by their protocol)."""

    sysctl_originals: dict[str, str] = field(default_factory=dict)
    netns_cookie: int | None = None
    nft_table: bool = False  # gateway mode: multihome's nftables table exists


def file_path(netns_id: int, suffix: str) -> str:
    """The namespace's file of one kind: netns-<inode>.<suffix> in the state directory."""
    return os.path.join(state_dir(), f"netns-{netns_id}.{suffix}")


def _unwritable(path: str, error: OSError) -> StateError:
    hint = (
        "run as root"
        if error.errno in (errno.EACCES, errno.EPERM)
        else f"make {state_dir()} writable (it is on /run: check that it is mounted and not full)"
    )
    return StateError(f"cannot write {path}: {error.strerror or error}", hint=hint)


def _stale(recorded: object, cookie: int | None) -> bool:
    """Was the file written in another namespace that had the same inode?"""
    return cookie is not None and recorded != cookie


def _discard(path: str) -> None:
    # Removing a dead namespace's file is housekeeping: a reader without the right to (a
    # non-root `status`) still ignores it.
    with contextlib.suppress(OSError):
        os.unlink(path)


def write_json(netns_id: int, suffix: str, data: dict[str, Any], mode: int = 0o644) -> None:
    """Write one of the namespace's files atomically, with the namespace's cookie in it.
    Raises StateError."""
    path = file_path(netns_id, suffix)
    text = json.dumps({**data, "netns_cookie": namespace.cookie()}, indent=1) + "\n"
    _write(path, text, mode)


def _write(path: str, text: str, mode: int) -> None:
    """One of the state directory's files, atomically, the directory made if need be."""
    _check_directory(create=True)
    try:
        files.atomic_write(path, text, mode)
    except OSError as error:
        raise _unwritable(path, error) from None


def _read(path: str) -> str:
    """A state file's text: a regular file, not through a link, read without blocking (a
    FIFO or a device put in its place is no state file), in a state directory no other user
    could change; raises OSError, ValueError, StateError."""
    _check_directory()
    fd, _ = files.open_regular(path)
    with os.fdopen(fd, encoding="utf-8") as file:
        return file.read()


def read_json(netns_id: int, suffix: str) -> dict[str, Any] | None:
    """One of the namespace's files; None when it is missing, damaged, or another
    namespace's (then it is removed)."""
    path = file_path(netns_id, suffix)
    try:
        data = json.loads(_read(path))
    except (FileNotFoundError, ValueError, RecursionError):
        return None
    except OSError as error:
        raise StateError(f"cannot read {path}: {error.strerror}", hint="run as root") from None
    if not isinstance(data, dict) or _stale(data.get("netns_cookie"), namespace.cookie()):
        _discard(path)
        return None
    return data


def remove(netns_id: int, suffix: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(file_path(netns_id, suffix))


def _damaged(path: str, why: str) -> StateError:
    return StateError(
        f"cannot read the state file {path}: {why}",
        hint="if it is damaged, move it away; `multihome remove` still removes every"
        " rule and route multihome owns, but cannot restore the sysctls it changed",
    )


# The state file is root's alone (0600); beside it, readable by every user, a summary of it
# that holds what `show`, `plan` and `doctor` need and nothing else: the sysctls' values from
# before multihome set them (which the kernel showed every user then), whether gateway mode's
# table was made, and how many rules and routes multihome made.
SUMMARY = "summary.json"


def load(netns_id: int, cookie: int | None = None) -> Record:
    """The record of this namespace. A record left by a deleted namespace whose inode was
    reused (its cookie differs) describes nothing here: it reads as empty, and is removed.
    A user who may not read the state file gets the record from its summary."""
    path = file_path(netns_id, "json")
    try:
        data = json.loads(_read(path))
    except FileNotFoundError:
        return Record()
    except PermissionError:
        return _from_summary(netns_id, path)
    except RecursionError:
        raise _damaged(path, "nested too deeply") from None
    except (OSError, ValueError) as error:
        raise _damaged(path, str(error)) from None
    if not isinstance(data, dict) or not isinstance(data.get("sysctl_originals", {}), dict):
        raise _damaged(path, "not a multihome record (valid JSON of another shape)")
    recorded_cookie = data.get("netns_cookie")
    if recorded_cookie is not None and _stale(recorded_cookie, cookie):
        _discard(path)
        return Record(netns_cookie=cookie)
    return Record(
        netns_cookie=recorded_cookie,
        sysctl_originals=dict(data.get("sysctl_originals", {})),
        nft_table=bool(data.get("nft_table", False)),
    )


def _from_summary(netns_id: int, path: str) -> Record:
    """The record as the world-readable summary gives it, for a user who may not read the
    state file itself."""
    data = read_json(netns_id, SUMMARY)
    if data is None or not isinstance(data.get("sysctl_originals", {}), dict):
        raise StateError(
            f"cannot read the state file {path}: it is root's alone, and no summary of it"
            f" readable by every user is beside it ({file_path(netns_id, SUMMARY)})",
            hint="run as root; every `multihome apply` writes the summary, so that any"
            " user can run show, plan and doctor",
        )
    return Record(
        netns_cookie=data.get("netns_cookie"),
        sysctl_originals={str(k): str(v) for k, v in data.get("sysctl_originals", {}).items()},
        nft_table=bool(data.get("nft_table", False)),
    )


def save(netns_id: int, record: Record, rules: list[Rule], routes: list[Route]) -> None:
    """Write the record atomically (a reader sees the old or the new file, never a mix),
    and its summary for every user. The rules and routes are listed for people (`ip rule`
    arguments). Raises StateError."""
    path = file_path(netns_id, "json")
    if not record.sysctl_originals and not rules and not routes and not record.nft_table:
        try:
            remove(netns_id, SUMMARY)
            remove(netns_id, "json")
        except OSError as error:
            raise _unwritable(path, error) from None
        return
    data: dict[str, Any] = {
        "version": 1,
        "applied_at": time.time(),
        "netns_cookie": record.netns_cookie,
        "sysctl_originals": record.sysctl_originals,
        "nft_table": record.nft_table,
        # for people: `ip rule` / `ip route` arguments, with the family
        "rules": [f"-{r.family.version} {r.ip_args()}" for r in rules],
        "routes": [f"-{r.family.version} {r.ip_args()}" for r in routes],
    }
    _write(path, json.dumps(data, indent=1), 0o600)
    summary = {
        "version": 1,
        "applied_at": data["applied_at"],
        "sysctl_originals": record.sysctl_originals,
        "nft_table": record.nft_table,
        "rules": len(rules),
        "routes": len(routes),
    }
    write_json(netns_id, SUMMARY, summary)  # 0644, with the namespace's cookie


def forget(netns_id: int) -> None:
    """Remove every file of a namespace that is being deleted."""
    import glob  # only when files are forgotten

    for path in glob.glob(glob.escape(file_path(netns_id, "")) + "*"):
        _discard(path)


def _open_lock(path: str) -> int:
    """The lock file, opened without following a link planted in its place, and root's
    alone: flock needs no write permission, so a file others may open is a lock any user
    could hold (locking every apply out) and fill with a pid of their choosing."""
    _check_directory(create=True)
    try:
        # not through a link: one planted there would make root create or lock its target
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd, 0o600)  # one an older version made readable by all
        return fd
    except OSError as error:
        raise _unwritable(path, error) from None


@contextlib.contextmanager
def lock(netns_id: int, wait: float = LOCK_WAIT, suffix: str = "lock") -> Iterator[None]:
    """One writer per namespace; a second waits up to `wait` seconds, then fails. The lock
    file names the holder: its pid and its namespace's cookie."""
    path = file_path(netns_id, suffix)
    fd = _open_lock(path)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").split() or ["?"]
                    raise LockError(
                        f"another multihome (pid {holder[0]}) is changing this namespace",
                        hint="wait for it to finish, then run the command again",
                    ) from None
                time.sleep(0.05)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {namespace.cookie()}\n".encode(), 0)
        except OSError as error:
            raise _unwritable(path, error) from None
        yield
    finally:
        os.close(fd)


# Who owns the routing of a namespace, and the confirm guardian's life: locks held for as
# long as their process lives (an flock goes with the process's last descriptor, so a
# SIGKILL or a crash releases it; a pid in a file cannot tell a dead process from the next
# one to get its number).
WATCH_LOCK = "watch.lock"  # held by `multihome watch` (or a `remove` that stopped it)
GUARDIAN_LOCK = "guardian.lock"  # held by the confirm-or-revert guardian


class Held:
    """A lifetime lock this process holds; released by `release` or by the process's end."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def take(netns_id: int, suffix: str, role: str = "") -> Held | None:
    """Take the namespace's lock of this kind and write this process's pid (and its role:
    "watch", "remove") in it; None when another process holds it. Raises StateError."""
    path = file_path(netns_id, suffix)
    fd = _open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {namespace.cookie()} {role}".strip().encode() + b"\n", 0)
    except OSError as error:
        os.close(fd)
        raise _unwritable(path, error) from None
    return Held(fd)


def holder(netns_id: int, suffix: str, role: str = "") -> int | None:
    """The pid of the live process that holds the namespace's lock of this kind (0 when it
    has not written it yet); None when nobody holds it, or, with `role`, when its holder
    does not say it has that role. Reads only."""
    path = file_path(netns_id, suffix)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise StateError(f"cannot read {path}: {error.strerror}", hint="run as root") from None
    try:
        try:
            # a shared lock is refused only while someone holds it exclusively
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            words = os.pread(fd, 64, 0).decode(errors="replace").split()
            if role and words[2:3] != [role]:
                return None
            return int(words[0]) if words and words[0].isdigit() else 0
        return None
    finally:
        os.close(fd)


def wait_free(netns_id: int, suffix: str, seconds: float, role: str = "") -> Held | None:
    """Take the lock once its holder lets it go; None if it still holds it after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        held = take(netns_id, suffix, role)
        if held is not None or time.monotonic() >= deadline:
            return held
        time.sleep(0.02)
