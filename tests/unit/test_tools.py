"""The tools gateway mode runs: a hang or a binary that cannot start is a KernelError (so
apply undoes what it made), never a traceback. Real processes, no kernel needed."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from multihome.errors import KernelError, MultihomeError
from multihome.kernel import tools


def test_a_tool_that_hangs_is_a_kernel_error_in_time() -> None:
    sleep = shutil.which("sleep")
    assert sleep is not None
    start = time.monotonic()
    with pytest.raises(KernelError, match=r"`sleep 30` did not finish within 0.2 s"):
        tools.run(sleep, ["30"], 0.2)
    assert time.monotonic() - start < 10


def test_a_tool_that_cannot_start_is_a_kernel_error(tmp_path: Path) -> None:
    broken = tmp_path / "nft"
    broken.write_text("#!/nonexistent/interpreter\n")
    broken.chmod(0o755)
    with pytest.raises(KernelError, match=r"cannot run .*/nft: No such file or directory"):
        tools.run(str(broken), ["-f", "-"], 5, stdin="")


def test_a_missing_tool_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools, "SBIN", ())
    monkeypatch.setenv("PATH", "/nonexistent")
    assert tools.find("sh") is None
    with pytest.raises(MultihomeError, match=r"gateway mode needs nft\(8\)") as caught:
        tools.require("nft", "gateway mode", hint="apt-get install nftables")
    assert caught.value.hint == "apt-get install nftables"
