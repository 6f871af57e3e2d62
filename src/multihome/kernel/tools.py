"""The system tools gateway mode runs (nft, conntrack): found in one place, and run so that
a tool that hangs or cannot be started is a KernelError like a refusal, never a traceback
that leaves a change half made."""

from __future__ import annotations

import os
import shutil
import subprocess

from multihome.errors import KernelError, MultihomeError

SBIN = ("/usr/sbin", "/sbin")  # not on an ordinary user's PATH on Debian


def find(name: str) -> str | None:
    """The tool's path: on PATH, else in the sbin directories; None if not installed."""
    return shutil.which(name) or next(
        (p for p in (os.path.join(d, name) for d in SBIN) if shutil.which(p)), None
    )


def require(name: str, why: str, hint: str) -> str:
    path = find(name)
    if path is None:
        raise MultihomeError(f"{why} needs {name}(8), which is not installed", hint=hint)
    return path


def run(
    path: str, args: list[str], timeout: float, stdin: str | None = None, stdout: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a tool; a timeout or a failure to start it raises KernelError. Without `stdout`
    its standard output is dropped (a listing nobody reads is not held in memory)."""
    name = os.path.basename(path)
    try:
        return subprocess.run(
            [path, *args],
            input=stdin,
            stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise KernelError(
            f"`{name} {' '.join(args)}` did not finish within {timeout:g} s",
            hint="the kernel or the tool hangs; see `dmesg`",
        ) from None
    except OSError as error:
        raise KernelError(
            f"cannot run {path}: {error.strerror or error}",
            hint=f"check the {name} installation",
        ) from None
