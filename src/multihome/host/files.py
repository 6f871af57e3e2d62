"""Writing files atomically: rendered files under a root directory (tests and `--root` swap
it), and multihome's own files under /run/multihome. One helper for all of them."""

from __future__ import annotations

import contextlib
import os

from multihome.errors import MultihomeError


def atomic_write(path: str, text: str, mode: int = 0o644) -> None:
    """Replace `path` with `text`: a reader sees the old file or the new one, never half of
    it, and after a crash the new one is on disk in full or not at all. The temporary file
    has a unique name beside the target, so concurrent writers never share it. Raises
    OSError."""
    directory = os.path.dirname(path) or "."
    fd, temp = _create_beside(directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    # The rename is durable once the directory is on disk too.
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


_made = 0  # temporary files this process made (with its pid, a unique name)


def _create_beside(directory: str) -> tuple[int, str]:
    """A new, empty, private file in `directory`, as tempfile.mkstemp makes it, without
    importing tempfile (and random, shutil, weakref with it: more than a no-op apply's diff)
    for the one file an apply writes. O_EXCL makes the name this process's alone; a name
    left by a dead process with the same pid is skipped."""
    global _made
    while True:
        _made += 1
        temp = os.path.join(directory, f".multihome-{os.getpid()}-{_made}")
        try:
            fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            continue
        return fd, temp


def write_tree(directory: str, files: dict[str, str], mode: int | None = None) -> list[str]:
    """Write each {relative path: text} under `directory`, each atomically (atomic_write).
    Without `mode`, a script (a file with a shebang) is 755 and anything else 644. Returns
    the paths written."""
    written = []
    for relative, text in sorted(files.items()):
        if os.path.isabs(relative) or ".." in relative.split("/"):
            raise MultihomeError(f"refusing to write outside {directory}: {relative}")
        path = os.path.join(directory, relative)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if mode is None:
                atomic_write(path, text, 0o755 if text.startswith("#!") else 0o644)
            else:
                atomic_write(path, text, mode)
        except OSError as error:
            raise MultihomeError(f"cannot write {path}: {error.strerror}") from None
        written.append(path)
    return written
