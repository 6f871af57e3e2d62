"""Is a process alive? One answer for every file that names a pid (the daemon's status, the
confirm guardian, the lab's runs); and one way to end a child process."""

from __future__ import annotations

import os
import subprocess
from typing import Any


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


def stop(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """End a child this process started: SIGTERM, and SIGKILL if it has not exited within
    `timeout` seconds. Waits for it either way (no zombie)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
