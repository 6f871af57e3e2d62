"""The LAN's router advertisements when an uplink dies (RFC 8475), through the RA daemon that
is there: multihome watch announces a dead uplink's delegated prefixes with preferred
lifetime 0, so LAN hosts start new connections from the other ISP's prefix, and puts them
back when the uplink returns.

dnsmasq does not re-read `dhcp-range` on SIGHUP; a drop-in in its conf-dir that repeats a
prefix's range with `deprecated`, and a restart, does (the LAN hosts see the prefix
deprecated about 1 s later). Deprecating the router's own LAN address does nothing with
static ranges, and RAs sent by another program are overridden by the daemon's next one, so
the daemon's own configuration is the only place. What multihome changes there: one file,
ra_conf_dir/multihome-deprecated.conf, written atomically through no link in a directory
that only root may write, and removed -- only while it holds what multihome writes -- when
every uplink is back or watch stops; nothing else of the daemon's configuration is touched.
"""

from __future__ import annotations

import os
import subprocess

from multihome.core import delegation
from multihome.core.model import IPNetwork
from multihome.errors import MultihomeError
from multihome.host import files

RESTART_TIMEOUT = 30.0


MAX_CONFIG = 1 << 20  # the largest radvd.conf multihome edits (bytes)


class RaDropIn:
    """The drop-in as one watch keeps it: what it wrote last (None: no drop-in)."""

    def __init__(self, conf_dir: str) -> None:
        self.conf_dir = conf_dir
        self.written: str | None = None
        self.checked = False  # the first update looks for a drop-in a killed watch left

    def update(self, networks: list[IPNetwork]) -> bool:
        """Announce `networks` deprecated (none: remove the drop-in); whether the file
        changed, so that the daemon must read it again. Raises MultihomeError."""
        text = delegation.dnsmasq_drop_in(networks) if networks else None
        if self.checked and text == self.written:
            return False
        fd = files.open_root(self.conf_dir)  # root's, no link on the way, no other writer
        try:
            present = self._present(fd)
            if (
                present is not None
                and present != self.written
                and not delegation.is_drop_in(present)
            ):
                raise MultihomeError(
                    f"{self.conf_dir}/{delegation.DROP_IN} is not multihome's: left as it"
                    " is, and the dead uplinks' prefixes are not deprecated",
                    hint="move it away; multihome watch writes that file",
                )
            self.checked = True
            if present == text:
                self.written = text
                return False
            try:
                if text is None:
                    os.unlink(delegation.DROP_IN, dir_fd=fd)
                else:
                    files.write_at(fd, delegation.DROP_IN, text.encode(), 0o644)
            except OSError as error:
                raise MultihomeError(
                    f"{self.conf_dir}/{delegation.DROP_IN}: {files.strerror(error)}"
                ) from None
            self.written = text
            return True
        finally:
            os.close(fd)

    @staticmethod
    def _present(fd: int) -> str | None:
        """The drop-in's text (at most 64 KiB), None when there is none; a link or anything
        but a regular file is refused."""
        try:
            file_fd, _ = files.open_regular(delegation.DROP_IN, fd)
        except FileNotFoundError:
            return None
        except (OSError, files.NotRegular) as error:
            raise MultihomeError(
                f"{delegation.DROP_IN} in the RA daemon's directory: {error}: left as it is"
            ) from None
        with os.fdopen(file_fd, encoding="utf-8", errors="replace") as file:
            return file.read(1 << 16)


class RadvdConfig:
    """radvd.conf as one watch changes it: a line `AdvPreferredLifetime 0;`, marked as
    multihome's, last in each dead prefix's block; radvd reads it again on SIGHUP (ra_restart:
    `systemctl reload radvd.service`). Only the marked lines are added and removed, so the
    user's own edits in the meantime stay; a file left changed by a watch that was killed is
    put right by the next. `written`: the text last written with marked lines, None when
    there are none."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.conf_dir = path  # what identifies the daemon's configuration to watch
        self.written: str | None = None
        self.networks: list[IPNetwork] | None = None  # of the last update that worked

    def update(self, networks: list[IPNetwork]) -> bool:
        """Deprecate `networks` (none: remove multihome's lines); whether the file changed.
        Raises MultihomeError."""
        if networks == self.networks:
            return False
        directory, name = os.path.split(self.path)
        fd = files.open_root(directory or "/")
        try:
            try:
                file_fd, info = files.open_regular(name, fd)
            except (OSError, files.NotRegular) as error:
                raise MultihomeError(f"{self.path}: {error}: not changed") from None
            if info.st_size > MAX_CONFIG:  # read whole or not at all: it is written back
                os.close(file_fd)
                raise MultihomeError(
                    f"{self.path}: {info.st_size} bytes, more than the {MAX_CONFIG} multihome"
                    " edits: not changed"
                )
            with os.fdopen(file_fd, encoding="utf-8", errors="surrogateescape") as file:
                current = file.read(MAX_CONFIG + 1)
            wanted = delegation.radvd_deprecating(current, networks)
            left = set(networks) - delegation.announced_deprecated("radvd", wanted)
            if left:
                raise MultihomeError(
                    f"{self.path}: no block of its own, closed on a line of its own, for"
                    f" {', '.join(map(str, sorted(left)))}: not deprecated",
                    hint="write each LAN prefix as `prefix P/64 {`, its options, and `};`"
                    " on lines of their own",
                )
            self.written = wanted if wanted != delegation.radvd_restored(wanted) else None
            if wanted == current:
                self.networks = list(networks)
                return False
            try:
                files.write_at(
                    fd, name, wanted.encode("utf-8", "surrogateescape"), info.st_mode & 0o7777
                )
                # its group too (root:radvd 0640 stays readable by the daemon)
                os.chown(name, info.st_uid, info.st_gid, dir_fd=fd, follow_symlinks=False)
            except OSError as error:
                raise MultihomeError(f"{self.path}: {files.strerror(error)}") from None
            self.networks = list(networks)
            return True
        finally:
            os.close(fd)


def read_config(daemon: str, where: str) -> str | None:
    """What the doctor reads of the RA daemon's configuration: dnsmasq's drop-in (`where`:
    its conf-dir), radvd.conf (`where`: its path); None when there is none."""
    if daemon == "radvd":
        directory, name = os.path.split(where)
        fd = files.open_root(directory or "/")
        try:
            try:
                file_fd, _ = files.open_regular(name, fd)
            except FileNotFoundError:
                return None
            except (OSError, files.NotRegular) as error:
                raise MultihomeError(f"{where}: {error}") from None
            with os.fdopen(file_fd, encoding="utf-8", errors="replace") as file:
                return file.read(MAX_CONFIG)
        finally:
            os.close(fd)
    return read_drop_in(where)


def read_drop_in(conf_dir: str) -> str | None:
    """The drop-in's text, for the doctor (None: there is none). Raises MultihomeError."""
    fd = files.open_root(conf_dir)
    try:
        return RaDropIn._present(fd)
    finally:
        os.close(fd)


def restart(argv: tuple[str, ...]) -> str | None:
    """Run the RA daemon's restart command; None when it worked, else what went wrong."""
    try:
        result = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=RESTART_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{argv[0]}: {error}"
    if result.returncode != 0:
        return f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()[:200]}"
    return None
