"""Is a process alive? One answer for every file that names a pid (the daemon's status, the
confirm guardian, the lab's runs)."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists, also one we may not signal (EPERM: a root
    daemon seen by an ordinary user is alive, not an error)."""
    if pid <= 0:  # 0 and negatives name process groups, never one process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
