"""Writing and removing files as root, safely: rendered files under a root directory (tests,
`--root` and `export -o` swap it), and multihome's own files under /run/multihome.

The one rule for a file under a root: its path is relative and has no `..`; it is resolved
one component at a time from a descriptor of the root, never following a symbolic link
(O_NOFOLLOW at each step, as systemd's chase() does); the root and every directory on the way
must be owned by root (or the user running multihome) and writable by no one else, so no
other user can swap a component under us; directories and files get explicit modes whatever
the umask; a file is written atomically (a temporary file beside it, renamed over it) and a
file is removed or replaced only when its content is what multihome's record says it wrote
(`digest`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import stat
from collections.abc import Iterator

from multihome.errors import MultihomeError

DIRECTORY_MODE = 0o755
_OPEN_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(MultihomeError):
    """A path that would leave its root, pass a symbolic link, or a directory someone else
    could change."""


def owner_name(uid: int) -> str:
    """A user as an error message names it: `nobody (uid 65534)`."""
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def other_writers(mode: int) -> list[str]:
    """Who besides the owner may write a file of this mode: "group", "others"."""
    return [who for who, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH)) if mode & bit]


def _directory_problem(fd: int, path: str, sticky: bool) -> tuple[str, str] | None:
    """What lets another user change what is in a directory, and the fix; None if nothing:
    owned by another user, or writable by group or others (with `sticky`, allowed where the
    sticky bit is set, as on /tmp: then only an entry's owner may rename or delete it)."""
    info = os.fstat(fd)
    if info.st_uid not in (0, os.geteuid()):
        return (
            f"{path} is owned by {owner_name(info.st_uid)}, not by root",
            f"use a directory of root's own (mkdir or mktemp -d), or chown root: {path}",
        )
    writers = other_writers(info.st_mode)
    if writers and not (sticky and info.st_mode & stat.S_ISVTX):
        return (
            f"{path} is writable by {' and '.join(writers)} (mode {info.st_mode & 0o7777:o})",
            f"chmod go-w {path}, or use a directory of root's own (mktemp -d)",
        )
    return None


def check_directory(fd: int, path: str) -> None:
    """Refuse a directory that another user owns or may write to: they could put a link or
    their own file where multihome writes as root."""
    problem = _directory_problem(fd, path, sticky=False)
    if problem is not None:
        raise UnsafePath(
            f"{problem[0]}: another user could redirect what multihome writes there",
            hint=problem[1],
        )


def parts(relative: str) -> list[str]:
    """The components of a path relative to a root; refuses an absolute path, `..`, `.` and
    empty components (a path from a manifest is data)."""
    if not isinstance(relative, str) or not relative or "\0" in relative:
        raise UnsafePath(f"not a relative path: {relative!r}")
    split = relative.split("/")
    if relative.startswith("/") or any(p in ("", ".", "..") for p in split):
        raise UnsafePath(f"refusing a path that could leave its root: {relative!r}")
    return split


def strerror(error: OSError) -> str:
    if error.errno == errno.ELOOP:  # O_NOFOLLOW met a symbolic link
        return "it is a symbolic link, which multihome does not follow"
    if error.errno == errno.ENOTDIR:
        return "a component is not a directory (or is a symbolic link)"
    return error.strerror or str(error)


def _check_ancestor(
    fd: int, path: str, suffix: str = ": another user could redirect what multihome writes there"
) -> None:
    """A directory above the root: another user must not be able to swap what is in it
    (root's own, and writable by others only if sticky, as /tmp: then only an entry's
    owner may rename it, and the next directory must be root's too)."""
    problem = _directory_problem(fd, path, sticky=True)
    if problem is not None:
        raise UnsafePath(problem[0] + suffix, hint=problem[1])


def open_root(root: str, create: bool = False) -> int:
    """A descriptor of the directory `root`, checked (check_directory), reached from / one
    component at a time through no link, each directory above it checked too; with
    `create`, missing directories are made (mode 755)."""
    path = os.path.abspath(root)
    fd = os.open("/", _OPEN_DIRECTORY)
    walked = "/"
    try:
        for name in [p for p in path.split("/") if p]:
            _check_ancestor(fd, walked)
            walked = os.path.join(walked, name)
            try:
                next_fd = _open_directory(fd, name, create)
            except OSError as error:
                raise UnsafePath(
                    f"cannot use {root} as a root directory: {walked}: {strerror(error)}",
                    hint="give a path with no symbolic link in it (see realpath)"
                    if error.errno in (errno.ELOOP, errno.ENOTDIR)
                    else "",
                ) from None
            os.close(fd)
            fd = next_fd
        check_directory(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_directory(dir_fd: int, name: str, create: bool) -> int:
    """The directory `name` in `dir_fd`, not through a link; with `create`, made when it is
    missing: private until it is open, then 755 whatever the umask."""
    try:
        return os.open(name, _OPEN_DIRECTORY, dir_fd=dir_fd)
    except FileNotFoundError:
        if not create:
            raise
    made = False
    with contextlib.suppress(FileExistsError):  # made meanwhile: checked like any other
        os.mkdir(name, 0o700, dir_fd=dir_fd)
        made = True
    fd = os.open(name, _OPEN_DIRECTORY, dir_fd=dir_fd)
    if made:
        os.fchmod(fd, DIRECTORY_MODE)
    return fd


@contextlib.contextmanager
def directory_of(root_fd: int, root: str, relative: str, create: bool) -> Iterator[tuple[int, str]]:
    """The directory holding `relative` (as a descriptor) and the file's name, walked from the
    root without following links, each directory checked; with `create`, missing ones are
    made with mode 755. Raises FileNotFoundError when one is missing and not `create`."""
    components = parts(relative)
    fd = os.dup(root_fd)
    try:
        walked = root
        for name in components[:-1]:
            walked = os.path.join(walked, name)
            try:
                next_fd = _open_directory(fd, name, create)
            except OSError as error:
                if error.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafePath(f"refusing {walked}: {strerror(error)}") from None
                raise
            os.close(fd)
            fd = next_fd
            check_directory(fd, walked)
        yield fd, components[-1]
    finally:
        os.close(fd)


def digest(data: bytes) -> str:
    """What multihome records of a file it wrote: its content's SHA-256."""
    import hashlib  # only where a record is kept (install), not for every apply

    return hashlib.sha256(data).hexdigest()


def _temporary(dir_fd: int) -> tuple[int, str]:
    """A new, empty, private file in the directory: a random name (O_EXCL makes it this
    call's alone; a name taken, by a crashed writer or anyone, is skipped)."""
    while True:
        name = f".multihome-{os.getpid()}-{os.urandom(6).hex()}"
        try:
            fd = os.open(
                name,
                os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=dir_fd,
            )
        except FileExistsError:
            continue
        return fd, name


def write_at(dir_fd: int, name: str, data: bytes, mode: int) -> None:
    """Replace the file `name` in the directory atomically with `data`, mode `mode`: a
    reader sees the old file or the new one, and after a crash the new one is on disk in
    full or not at all. A symbolic link at `name` is replaced, never written through."""
    fd, temp = _temporary(dir_fd)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fchmod(file.fileno(), mode)
            os.fsync(file.fileno())
        os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=dir_fd)
        raise
    os.fsync(dir_fd)  # the rename is durable once the directory is on disk too


def atomic_write(path: str, text: str, mode: int = 0o644) -> None:
    """Replace `path` (in a directory multihome owns, like /run/multihome) with `text`,
    atomically (write_at). Raises OSError."""
    data = text.encode("utf-8")
    dir_fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        write_at(dir_fd, os.path.basename(path), data, mode)
    finally:
        os.close(dir_fd)


class NotRegular(ValueError):
    """A FIFO, device, directory or socket where a regular file was to be read."""


def open_regular(
    name: str, dir_fd: int | None = None, follow: bool = False
) -> tuple[int, os.stat_result]:
    """A regular file opened for reading, and its fstat: without blocking (a FIFO or a device
    put in its place would hang the read) and, unless `follow`, not through a link (ELOOP).
    Raises OSError, or NotRegular for anything but a regular file (the descriptor closed)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(name, flags, dir_fd=dir_fd)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise NotRegular(f"{name} is not a regular file")
    return fd, info


_OPEN_PATH = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC  # search, not read
MAX_LINKS = 40  # as the kernel's own path walk


def _trusted_directory(dir_fd: int, name: str, path: str) -> int:
    """The directory `name` in `dir_fd` as an O_PATH descriptor (searching it needs no read
    permission), not through a link, checked: root's own (or this user's), writable by
    others only if sticky."""
    fd = os.open(name, _OPEN_PATH, dir_fd=dir_fd)
    try:
        _check_ancestor(fd, path, suffix="")
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_trusted(path: str) -> tuple[int, os.stat_result]:
    """A regular file that decides what root does (the config), opened as open_regular does,
    where no other user could have put another in its place: reached from / one component at
    a time, every directory on the way root's own (or this user's) and writable by others
    only if sticky, as /tmp (then only an entry's owner may rename it); a link on the way is
    followed only where root (or this user) owns it, as the kernel's protected_symlinks
    would have it, and its target walked the same way. The file's own owner and mode are the
    caller's to check, from the fstat returned. Raises FileNotFoundError, NotADirectoryError,
    NotRegular, UnsafePath (naming the directory or link and what is wrong), or OSError."""
    pending = [p for p in os.path.join(os.getcwd(), path).split("/") if p not in ("", ".")]
    walked: list[str] = []  # the directories reached, links resolved

    def where(*more: str) -> str:
        return "/" + "/".join([*walked, *more])

    def from_root() -> int:
        fd = os.open("/", _OPEN_PATH)
        try:
            _check_ancestor(fd, "/", suffix="")
            for index, part in enumerate(walked):
                next_fd = _trusted_directory(fd, part, "/" + "/".join(walked[: index + 1]))
                os.close(fd)
                fd = next_fd
        except BaseException:
            os.close(fd)
            raise
        return fd

    links = 0
    fd = from_root()
    try:
        while pending:
            part = pending.pop(0)
            if part == "..":
                walked = walked[:-1]
                os.close(fd)
                fd = from_root()
                continue
            info = os.stat(part, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                if info.st_uid not in (0, os.geteuid()):
                    raise UnsafePath(
                        f"{where(part)} is a symbolic link owned by {owner_name(info.st_uid)}:"
                        " its owner chooses the file it leads to"
                    )
                links += 1
                if links > MAX_LINKS:
                    raise UnsafePath(f"{path}: more than {MAX_LINKS} symbolic links")
                target = os.readlink(part, dir_fd=fd)
                pending[:0] = [p for p in target.split("/") if p not in ("", ".")]
                if target.startswith("/"):
                    walked = []
                    os.close(fd)
                    fd = from_root()
                continue
            if not pending:
                try:
                    return open_regular(part, dir_fd=fd)
                except OSError as error:
                    if error.errno == errno.ELOOP:  # a link put there since
                        raise UnsafePath(f"{where(part)}: {strerror(error)}") from None
                    raise
            if not stat.S_ISDIR(info.st_mode):
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory", where(part))
            try:
                next_fd = _trusted_directory(fd, part, where(part))
            except OSError as error:
                if error.errno in (errno.ELOOP, errno.ENOTDIR):  # changed since the stat
                    raise UnsafePath(f"{where(part)}: {strerror(error)}") from None
                raise
            os.close(fd)
            fd = next_fd
            walked.append(part)
        raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
    finally:
        os.close(fd)


def read_at(dir_fd: int, name: str) -> str | None:
    """What is at `name` as multihome records it: "sha256:HEX" of a regular file's content,
    "link:TARGET" for a symbolic link, "other" for anything else, None when nothing is."""
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        return "link:" + os.readlink(name, dir_fd=dir_fd)
    if not stat.S_ISREG(info.st_mode):
        return "other"
    fd, _ = open_regular(name, dir_fd)
    with os.fdopen(fd, "rb") as file:
        return "sha256:" + digest(file.read())


def write_tree(
    directory: str, files: dict[str, str], mode: int | None = None, create: bool = True
) -> list[str]:
    """Write each {relative path: text} under `directory` by the rule above (atomically,
    through no link, into no one else's directory). Without `mode`, a script (a file with a
    shebang) is 755 and anything else 644. Returns the paths written."""
    root_fd = open_root(directory, create=create)
    written = []
    try:
        for relative, text in sorted(files.items()):
            path = os.path.join(directory, relative)
            chosen = mode if mode is not None else (0o755 if text.startswith("#!") else 0o644)
            try:
                with directory_of(root_fd, directory, relative, create=True) as (fd, name):
                    write_at(fd, name, text.encode("utf-8"), chosen)
            except OSError as error:
                raise MultihomeError(f"cannot write {path}: {strerror(error)}") from None
            written.append(path)
    finally:
        os.close(root_fd)
    return written
