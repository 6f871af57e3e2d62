"""One error hierarchy: every expected failure is a `MultihomeError` with a hint.

The CLI prints `multihome: <message>` and the hint and exits 2; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations


class MultihomeError(Exception):
    """An expected failure, explained in the user's words."""

    exit_code = 2

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(MultihomeError):
    """The config file is invalid; carries the file, line and key concerned."""

    def __init__(
        self, message: str, *, path: str, line: int | None = None, key: str = "", hint: str = ""
    ) -> None:
        where = path if line is None else f"{path}:{line}"
        if key:
            where += f": {key}"
        super().__init__(f"{where}: {message}", hint)
        self.path = path
        self.line = line
        self.key = key


class KernelError(MultihomeError):
    """The kernel refused a change (after rollback, the host is as before)."""


class NamespaceError(MultihomeError):
    """The requested network namespace cannot be entered."""


class PrivilegeError(MultihomeError):
    """The command needs privileges (CAP_NET_ADMIN) it does not have."""


class LockError(MultihomeError):
    """Another multihome holds the lock of this namespace."""


class StateError(MultihomeError):
    """The state file under /run/multihome is unreadable or inconsistent."""
