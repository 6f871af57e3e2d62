"""The state file: what multihome created in one network namespace, and the sysctl values
it replaced, so that `remove` can put them back.

One file per network namespace, named by the namespace's inode, under /run/multihome: it
lives exactly as long as the kernel state it describes (both vanish at reboot), and runs in
different namespaces never share it, however they entered them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from multihome.errors import LockError, StateError
from multihome.model import Route, Rule

STATE_DIR = os.environ.get("MULTIHOME_STATE_DIR", "/run/multihome")
LOCK_WAIT = 5.0


@dataclass
class Record:
    """What is in the state file."""

    sysctl_originals: dict[str, str] = field(default_factory=dict)
    rules: list[str] = field(default_factory=list)  # `ip rule` arguments, for people
    routes: list[str] = field(default_factory=list)
    applied_at: float | None = None
    netns_cookie: int | None = None
    nft_table: bool = False  # gateway mode: multihome's nftables table exists


def file_path(netns_id: int, suffix: str) -> str:
    """The namespace's file of one kind: netns-<inode>.<suffix> in the state directory."""
    return os.path.join(STATE_DIR, f"netns-{netns_id}.{suffix}")


def load(netns_id: int, cookie: int | None = None) -> Record:
    """The record of this namespace. A record left by a deleted namespace whose inode was
    reused (its cookie differs) describes nothing here, and reads as empty."""
    path = file_path(netns_id, "json")
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except FileNotFoundError:
        return Record()
    except (OSError, ValueError) as error:
        raise StateError(
            f"cannot read the state file {path}: {error}",
            hint="if it is damaged, move it away; `multihome remove` still removes every"
            " rule and route multihome owns, but cannot restore the sysctls it changed",
        ) from None
    recorded_cookie = data.get("netns_cookie")
    if cookie is not None and recorded_cookie is not None and recorded_cookie != cookie:
        return Record(netns_cookie=cookie)
    return Record(
        netns_cookie=recorded_cookie,
        sysctl_originals=dict(data.get("sysctl_originals", {})),
        rules=list(data.get("rules", [])),
        routes=list(data.get("routes", [])),
        applied_at=data.get("applied_at"),
        nft_table=bool(data.get("nft_table", False)),
    )


def save(netns_id: int, record: Record, rules: list[Rule], routes: list[Route]) -> None:
    """Write the record atomically (a reader sees the old or the new file, never a mix)."""
    os.makedirs(STATE_DIR, mode=0o755, exist_ok=True)
    path = file_path(netns_id, "json")
    if not record.sysctl_originals and not rules and not routes and not record.nft_table:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    data = {
        "version": 1,
        "applied_at": time.time(),
        "netns_cookie": record.netns_cookie,
        "sysctl_originals": record.sysctl_originals,
        "nft_table": record.nft_table,
        "rules": [f"-{r.family.version} {r.ip_args()}" for r in rules],
        "routes": [f"-{r.family.version} {r.ip_args()}" for r in routes],
    }
    fd, temp = tempfile.mkstemp(dir=STATE_DIR, prefix=".state-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=1)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def forget(netns_id: int) -> None:
    """Remove the state of a namespace that is being deleted."""
    for suffix in ("json", "lock"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(file_path(netns_id, suffix))


@contextlib.contextmanager
def lock(netns_id: int, wait: float = LOCK_WAIT) -> Iterator[None]:
    """One writer per namespace; a second waits up to `wait` seconds, then fails."""
    os.makedirs(STATE_DIR, mode=0o755, exist_ok=True)
    path = file_path(netns_id, "lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                    raise LockError(
                        f"another multihome (pid {holder}) is changing this namespace",
                        hint="wait for it to finish, then run the command again",
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
