"""`install` interrupted at every step (each rename, removal and link it makes fails in
turn): `uninstall` then puts the root back as it was before the first install, and a second
`install` finishes the job without losing a file it had put aside."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from multihome.core.config import Config
from multihome.core.plan import plan
from multihome.errors import MultihomeError
from multihome.host import install
from multihome.render import Options

from .test_plan import ARTICLE

DESIRED = plan(Config(), ARTICLE)
OPTIONS = Options(executable="/usr/local/bin/multihome")
STEPS = ("replace", "unlink", "symlink")


def tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): (os.readlink(p) if p.is_symlink() else p.read_text())
        for p in sorted(root.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


def a_root(tmp_path: Path) -> Path:
    """Someone else's files where multihome's go, and an earlier install (systemd format)."""
    root = tmp_path / "root"
    for relative in (
        "etc/sysctl.d/90-multihome.conf",
        "etc/systemd/network/10-eth0.network.d/90-multihome.conf",
    ):
        (root / relative).parent.mkdir(parents=True)
        (root / relative).write_text(f"# not ours: {relative}\n")
    return root


def failing_at(step: int, monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Make the step-th file operation fail; returns how many were attempted."""
    count = [0]
    for name in STEPS:
        real = getattr(os, name)

        def flaky(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
            count[0] += 1
            if count[0] == step:
                raise OSError(5, "Input/output error (injected)")
            return _real(*args, **kwargs)

        monkeypatch.setattr(os, name, flaky)
    return lambda: count[0]


def test_an_install_interrupted_at_any_step_can_be_undone_or_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = 0
    while True:
        step += 1
        root = a_root(tmp_path / str(step))
        original = tree(root)
        install.install(DESIRED, ARTICLE, str(root), "systemd", OPTIONS)
        with monkeypatch.context() as patch:
            attempted = failing_at(step, patch)
            with contextlib.suppress(MultihomeError):  # the interruption
                install.install(DESIRED, ARTICLE, str(root), "networkd", OPTIONS)
            finished = attempted() < step
        if finished:
            break
        interrupted = tree(root)
        install.uninstall(str(root))
        assert tree(root) == original, step
        # the same interruption, then a second install instead of an uninstall
        for relative in set(tree(root)):
            (root / relative).unlink()
        for relative, text in interrupted.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            if "multi-user.target.wants/" in relative:  # the enable link
                path.symlink_to(text)
            else:
                path.write_text(text)
        install.install(DESIRED, ARTICLE, str(root), "networkd", OPTIONS)
        install.uninstall(str(root))
        assert tree(root) == original, step
    assert step > 8  # every step of a real install was interrupted once
