"""Is a process alive? One answer for every file that names a pid (the daemon's status, the
confirm guardian, the lab's runs); and one way to end a child process."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:  # apply imports pid_alive; subprocess and typing cost it 9 ms
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
    import subprocess

    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
