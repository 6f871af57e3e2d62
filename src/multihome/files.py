"""Writing rendered files: atomically, under a root directory (tests and `--root` swap it)."""

from __future__ import annotations

import contextlib
import os
import tempfile

from multihome.errors import MultihomeError


def write_tree(directory: str, files: dict[str, str], mode: int | None = None) -> list[str]:
    """Write each {relative path: text} under `directory`; a reader sees the old file or the
    new one, never half of it. Without `mode`, a script (a file with a shebang) is 755 and
    anything else 644. Returns the paths written."""
    written = []
    for relative, text in sorted(files.items()):
        if os.path.isabs(relative) or ".." in relative.split("/"):
            raise MultihomeError(f"refusing to write outside {directory}: {relative}")
        path = os.path.join(directory, relative)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".multihome-")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as file:
                    file.write(text)
                    file.flush()
                    os.fsync(file.fileno())
                if mode is not None:
                    os.chmod(temp, mode)
                else:
                    os.chmod(temp, 0o755 if text.startswith("#!") else 0o644)
                os.replace(temp, path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
                raise
        except OSError as error:
            raise MultihomeError(f"cannot write {path}: {error.strerror}") from None
        written.append(path)
    return written
