"""Reading the config file (host/configfile.py): what root trusts, and inputs that must end
in one clear line, not a hang or a traceback. core/config.py only parses text."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from multihome.core import config
from multihome.core.config import parse
from multihome.errors import ConfigError
from multihome.host import configfile


def test_a_fifo_as_config_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "multihome.toml"
    os.mkfifo(fifo, 0o600)
    done = subprocess.run(
        [sys.executable, "-m", "multihome", "-c", str(fifo), "plan"],
        capture_output=True,
        text=True,
        timeout=20,  # it used to wait for a writer forever
    )
    assert done.returncode == 2 and "not a regular file" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "nested", ["a = " + "[" * 5000 + "]" * 5000, "a = " + "{b=" * 3000 + "}" * 3000]
)
def test_deeply_nested_toml_is_a_config_error(nested: str) -> None:
    with pytest.raises(ConfigError, match="nested too deeply"):
        parse(nested, "m.toml")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_a_config_another_user_owns_is_refused_naming_the_owner(tmp_path: Path) -> None:
    path = tmp_path / "multihome.toml"
    path.write_text("")
    os.chown(path, 65534, 65534)
    with pytest.raises(ConfigError) as raised:
        configfile.load(str(path))
    assert "uid 65534" in raised.value.message and raised.value.hint == f"chown root: {path}"


def test_a_config_others_may_write_is_refused_naming_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "multihome.toml"
    path.write_text("")
    path.chmod(0o666)
    with pytest.raises(ConfigError, match=r"writable by group and others \(mode 666\)"):
        configfile.load(str(path))


def test_the_config_model_does_no_io() -> None:
    tree = ast.parse(Path(config.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) if n.module}
    called = {
        n.func.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    }
    assert not imported & {"os", "io", "pathlib", "subprocess", "socket"}
    assert "open" not in called


def test_a_probe_target_that_is_the_hosts_own_address_is_named_and_not_probed() -> None:
    """It would be answered with the uplink dead. Not an error: a VRRP address may move
    here while the watch runs, and every reconcile must still work."""
    from multihome.core.plan import plan

    from .test_plan import ARTICLE

    text = '[uplinks.eth0]\n[uplinks.eth1]\nprobe = ["198.51.100.1", "192.0.2.11"]\n'
    desired = plan(parse(text, "/etc/multihome.toml"), ARTICLE)
    assert [n for n in desired.notes if "probe target" in n] == [
        "eth1: probe target 192.0.2.11 is an address of this host (eth1), answered even with"
        " the uplink dead: not probed; probe a host beyond the gateway"
    ]
    plain = plan(parse('[uplinks.eth0]\n[uplinks.eth1]\nprobe = ["198.51.100.1"]\n', "m"), ARTICLE)
    assert not [n for n in plain.notes if "probe target" in n]
