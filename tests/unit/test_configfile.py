"""Reading the config file (host/configfile.py): what root trusts, and inputs that must end
in one clear line, not a hang or a traceback. core/config.py only parses text."""

from __future__ import annotations

import ast
import os
import re
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


@pytest.mark.parametrize("danger", ["another-owner", "group-write", "above", "link-target"])
def test_a_config_in_a_directory_another_user_could_change_is_refused(
    tmp_path: Path, danger: str
) -> None:
    """As sshd's StrictModes: root's own file, but in a directory another user owns or may
    write (or one above it), could be renamed away and replaced by theirs; a link is
    followed, and the directories of where it leads are what count."""
    if os.geteuid() != 0:
        pytest.skip("chown needs root")  # (CI runs as root)
    outer = tmp_path / "outer"
    inner = outer / "etc"
    inner.mkdir(parents=True)
    config_file = inner / "multihome.toml"
    config_file.write_text("[multihome]\nipv4 = false\n")
    config_file.chmod(0o600)
    given = config_file
    unsafe = inner
    if danger == "another-owner":
        os.chown(inner, 65534, 65534)
    elif danger == "group-write":
        inner.chmod(0o775)
    elif danger == "above":
        outer.chmod(0o777)  # not sticky
        unsafe = outer
    else:
        inner.chmod(0o757)
        given = tmp_path / "link.toml"  # in a safe directory, leading to the unsafe one
        given.symlink_to(config_file)
    with pytest.raises(ConfigError) as raised:
        configfile.load(str(given))
    assert str(unsafe) in raised.value.message, raised.value.message
    assert "another user could put a config of their own in its place" in raised.value.message
    assert raised.value.hint
    # made safe: read (through the link too), and so is a root's file in a sticky directory
    os.chown(inner, 0, 0)
    inner.chmod(0o755)
    outer.chmod(0o1777)  # as /tmp
    assert configfile.load(str(given)).ipv4 is False


def test_a_missing_config_and_a_missing_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No file (or no directory) at the default path: the defaults; at a path given with -c:
    an error."""
    for missing in (tmp_path / "multihome.toml", tmp_path / "none" / "multihome.toml"):
        monkeypatch.setattr(config, "DEFAULT_PATH", str(missing))
        assert configfile.load(None) == config.Config()
    with pytest.raises(ConfigError, match="no such file"):
        configfile.load("/nonexistent-multihome-dir/multihome.toml")


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


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[uplinks.eth0]\nprobe = ["255.255.255.255"]\n', "cannot be a probe target (a reserved"),
        ('[uplinks.eth0]\nprobe = ["240.0.0.1"]\n', "cannot be a probe target (a reserved"),
        ('[uplinks.eth0]\nprobe = ["224.0.0.1"]\n', "224.0.0.1 cannot be a probe target"),
        ('[health]\ntrace = "0.0.0.0"\n', "0.0.0.0 cannot be a probe target"),
        ('[uplinks.eth0]\ngateway = "255.255.255.255"\n', "cannot be a gateway (a reserved"),
        ('[uplinks.eth0]\ngateway6 = "ff02::1"\n', "ff02::1 cannot be a gateway"),
    ],
)
def test_broadcast_multicast_and_reserved_targets_are_refused(text: str, message: str) -> None:
    """A broadcast probe is refused by the kernel on every send (no SO_BROADCAST): the
    uplink would be down for good, with no word why."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse(text, "m.toml")


def test_a_gateway_that_is_the_hosts_own_address_is_refused_naming_it() -> None:
    """The kernel refuses a route via its own address; the config error says which key and
    which interface holds it, before anything is written."""
    from multihome.core.plan import plan

    from .test_plan import ARTICLE

    text = '[uplinks.eth0]\n[uplinks.eth1]\ngateway = "192.0.2.11"\n'
    with pytest.raises(ConfigError) as raised:
        plan(parse(text, "/etc/multihome.toml"), ARTICLE)
    assert raised.value.message == (
        "/etc/multihome.toml:3: uplinks.eth1.gateway: gateway 192.0.2.11 is an address of this"
        " host (eth1), not a router's"
    )
    assert raised.value.hint == "give the address of the router on eth1's subnet"
    plan(parse('[uplinks.eth0]\n[uplinks.eth1]\ngateway = "192.0.2.1"\n', "m"), ARTICLE)
    # a link-local gateway is its link's: fe80::1 on a bridge for the guests (Proxmox,
    # Hetzner) does not make the uplink's fe80::1 router this host
    from .hosts import host

    state = host(
        {
            "eth0": ["192.0.2.10/27", "2001:db8::10/64"],
            "eth1": ["192.0.2.42/27"],
            "vmbr0": ["fe80::1/64", "2001:db8:5::1/64"],
        },
        [("eth0", "192.0.2.1", 100), ("eth1", "192.0.2.33", 200)],
    )
    desired = plan(parse('[uplinks.eth0]\ngateway6 = "fe80::1"\n[uplinks.eth1]\n', "m"), state)
    assert [str(u.gateway6) for u in desired.uplinks if u.name == "eth0"] == ["fe80::1"]
    assert any(r.gateway is not None and str(r.gateway) == "fe80::1" for r in desired.routes)
    on_itself = host(
        {"eth0": ["192.0.2.10/27", "2001:db8::10/64", "fe80::1/64"], "eth1": ["192.0.2.42/27"]},
        [("eth0", "192.0.2.1", 100), ("eth1", "192.0.2.33", 200)],
    )
    with pytest.raises(ConfigError, match=r"gateway fe80::1 is an address of this host \(eth0\)"):
        plan(parse('[uplinks.eth0]\ngateway6 = "fe80::1"\n[uplinks.eth1]\n', "m"), on_itself)


def test_links_are_followed_only_where_root_owns_them(tmp_path: Path) -> None:
    """A link in a sticky directory others may write (as /tmp) is followed only when root
    owns it: another user's link there would choose which of root's files is the config
    (an empty one reads as the defaults). `..` after a link goes up from where it led, as
    the kernel's walk does; a file where a directory should be is named as such."""
    if os.geteuid() != 0:
        pytest.skip("chown needs root")  # (CI runs as root)
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "multihome.toml").write_text("[multihome]\nipv6 = false\n")
    (etc / "multihome.toml").chmod(0o600)
    empty = tmp_path / "empty"
    empty.write_text("")
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    theirs = sticky / "mh.toml"
    theirs.symlink_to(empty)
    os.chown(theirs, 65534, 65534, follow_symlinks=False)
    with pytest.raises(ConfigError, match=r"mh.toml is a symbolic link owned by .*uid 65534"):
        configfile.load(str(theirs))
    ours = sticky / "ours.toml"
    ours.symlink_to(etc / "multihome.toml")
    assert configfile.load(str(ours)).ipv6 is False
    up = sticky / "up"
    up.symlink_to(etc)
    assert configfile.load(str(up / ".." / "etc" / "multihome.toml")).ipv6 is False
    with pytest.raises(ConfigError, match="cannot read: Not a directory"):
        configfile.load(str(etc / "multihome.toml" / "x.toml"))


def test_a_user_may_read_a_config_in_a_directory_they_may_only_search(tmp_path: Path) -> None:
    """show, plan and doctor run as any user: a readable config in a directory of mode 711
    is read (the walk needs search permission only, as open(2) does)."""
    if os.geteuid() != 0:
        pytest.skip("setuid needs root")  # (CI runs as root)
    tmp_path.chmod(0o755)
    place = tmp_path / "x711"
    place.mkdir()
    place.chmod(0o711)
    config_file = place / "multihome.toml"
    config_file.write_text("[multihome]\nipv6 = false\n")
    config_file.chmod(0o644)
    code = "import sys; from multihome.host import configfile; print(configfile.load(sys.argv[1]).ipv6)"
    parents = [p for p in tmp_path.parents if str(p).startswith("/tmp/")]
    modes = {p: p.stat().st_mode for p in parents}
    try:
        for parent in parents:  # (pytest's own directories are root's alone)
            parent.chmod(parent.stat().st_mode | 0o011)
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        done = subprocess.run(
            [*nobody, sys.executable, "-c", code, str(config_file)],
            capture_output=True,
            text=True,
            cwd="/",
        )
    finally:
        for parent, mode in modes.items():
            parent.chmod(mode)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr
