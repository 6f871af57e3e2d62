"""Network namespaces: enter one by name, and tell which one we are in.

`--netns NAME` moves the whole process at start-up, before any socket is opened, so every
command, the lab and the tests run the same code path as on the host itself.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

from multihome.errors import NamespaceError, PrivilegeError

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000


def enter(name: str) -> None:
    """Move this process into the named network namespace (as `ip netns exec` does)."""
    if not name.strip() or "/" in name or name in (".", ".."):
        # An empty name must never fall back to the host's own namespace: `--netns "$NS"`
        # with NS unset would change the routing of the machine the admin is logged in to.
        raise NamespaceError(
            f"invalid network namespace name {name!r}",
            hint="give the name of a namespace in /run/netns (`ip netns list`), without a slash",
        )
    path = os.path.join(NETNS_DIR, name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NamespaceError(
            f"network namespace {name!r} does not exist",
            hint="list them with `ip netns list`",
        ) from None
    except PermissionError:
        raise PrivilegeError(f"cannot open {path}: permission denied", "run as root") from None
    try:
        _setns(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """Run a block inside the named namespace, then return to the current one.

    Sockets opened and /proc/sys files written inside keep acting on that namespace. For
    single-threaded callers (the lab builder); `enter` is the way for a whole command.
    """
    home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        enter(name)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


def _setns(fd: int) -> None:
    try:
        setns = getattr(os, "setns", None)  # Python 3.12+
        if setns is not None:
            setns(fd, CLONE_NEWNET)
        else:
            _libc_setns(fd)
    except OSError as error:
        if error.errno == errno.EPERM:
            raise PrivilegeError(
                "entering a network namespace needs CAP_SYS_ADMIN", "run as root"
            ) from None
        raise NamespaceError(f"cannot enter the network namespace: {error}") from None


def _libc_setns(fd: int) -> None:
    import ctypes  # only on Python 3.11, which has no os.setns

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def identity() -> int:
    """The inode of this process's network namespace: the same for every way of entering it."""
    return os.stat("/proc/self/ns/net").st_ino


SO_NETNS_COOKIE = 71


def cookie() -> int | None:
    """The kernel's cookie of this network namespace: unlike the inode, never reused while
    the system runs (Linux 5.14+; None on older kernels)."""
    import _socket  # not socket: its import costs more than the rest of a no-op apply's

    try:
        sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    except OSError:
        return None
    try:
        return int.from_bytes(sock.getsockopt(_socket.SOL_SOCKET, SO_NETNS_COOKIE, 8), "little")
    except OSError:
        return None
    finally:
        sock.close()


def is_initial() -> bool:
    """Is this process in the host's network namespace (the one of PID 1)?"""
    try:
        return os.stat("/proc/1/ns/net").st_ino == identity()
    except OSError:  # /proc/1 unreadable: assume not, and trust nothing host-wide
        return False
