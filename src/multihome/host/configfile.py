"""Read the config file, as root reads what decides the host's routing: only a regular file
that no one but root (or the user running multihome) could have written, in directories no
one else could change (as sshd's StrictModes), and without ever blocking on it; its text is
then validated by core/config.py's `parse`."""

from __future__ import annotations

import os

from multihome.core import config
from multihome.core.config import Config, parse
from multihome.errors import ConfigError
from multihome.host import files

MAX_SIZE = 1 << 20  # far beyond any config; a larger file is a mistake, not a config


def check_permissions(path: str, mode: int, owner: int, euid: int) -> None:
    """Refuse a config that someone other than root (or the user running multihome) could
    have changed: it decides the routing of the host (as sshd's StrictModes does)."""
    if owner not in (0, euid):
        raise ConfigError(
            f"owned by {files.owner_name(owner)}, not by root",
            path=path,
            hint=f"chown root: {path}",
        )
    writers = files.other_writers(mode)
    if writers:
        raise ConfigError(
            f"writable by {' and '.join(writers)} (mode {mode & 0o7777:o})",
            path=path,
            hint=f"chmod go-w {path}",
        )


def load(path: str | None) -> Config:
    """Read and parse the config file; with no path, the default file if it exists, else
    the defaults. A link is followed: what is checked is the file it leads to, and the
    directories on the way to it (files.open_trusted)."""
    explicit = path is not None
    path = path or config.DEFAULT_PATH
    try:
        fd, info = files.open_trusted(path)
    except files.UnsafePath as error:
        raise ConfigError(
            f"{error.message}: another user could put a config of their own in its place",
            path=path,
            hint=error.hint or "keep the config in root's own directories, as /etc/multihome",
        ) from None
    except FileNotFoundError:
        if explicit:
            raise ConfigError("no such file", path=path) from None
        return Config()
    except files.NotRegular:
        raise ConfigError(
            "not a regular file (a FIFO, device or directory cannot be a config)", path=path
        ) from None
    except PermissionError:  # root's alone (the package installs it 0600)
        raise ConfigError(
            f"cannot read: permission denied ({files.owner_name(os.geteuid())} may not read"
            " it); show, plan and doctor plan from the config",
            path=path,
            hint=f"run as root, or let every user read it: chmod a+r {path} (multihome"
            " refuses a config others may write, not one they may read)",
        ) from None
    except OSError as error:
        raise ConfigError(f"cannot read: {error.strerror}", path=path) from None
    with os.fdopen(fd, "rb") as file:
        check_permissions(path, info.st_mode, info.st_uid, os.geteuid())
        try:
            data = file.read(MAX_SIZE + 1)
        except OSError as error:
            raise ConfigError(f"cannot read: {error.strerror}", path=path) from None
    if len(data) > MAX_SIZE:
        raise ConfigError(f"larger than {MAX_SIZE >> 20} MiB: not a config", path=path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"not UTF-8 text (byte {error.start})", path=path) from None
    return parse(text, path)
