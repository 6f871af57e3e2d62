"""Interface names from the kernel, loaded by the real software each format is written for
(issue 22, point 2): for any name Linux allows, every renderer's output, read by nft, sysctl
-p, systemd-sysctl, a YAML parser, netplan, ifupdown and sh (with `ip` recorded), acts on
exactly the intended interfaces, or the renderer refuses the name with a clear error. A
syntax check is not enough: nft -c accepts `"up*"`, a wildcard that also matches upA.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multihome.core import gateway, names
from multihome.core.config import Config, parse
from multihome.core.model import Desired, GatewayLayout
from multihome.core.plan import plan
from multihome.errors import ConfigError, MultihomeError
from multihome.render import Options, ifupdown, ip, netplan, systemd
from multihome.watch import metrics

from ..unit.hosts import host

HOSTILE = ["&a", "*x", "up*", "#x", "a=b", "%iface%", "a'b", 'a"b', "a\\b", "-x", "x?", "$(id)"]


def run(*args: str, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        list(args), capture_output=True, text=True, check=check, timeout=30, **kwargs
    )


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    name = f"mhnames{os.getpid() % 100000}"
    run("ip", "netns", "add", name)
    try:
        yield name
    finally:
        run("ip", "netns", "del", name, check=False)


def decoy(name: str) -> str:
    """A name a glob made from `name` would also match (up* -> upQ), of at most 15 bytes."""
    stem = name.rstrip("*?[") if any(c in name for c in "*?[") else name
    while len((stem + "Q").encode()) > names.MAX_BYTES:
        stem = stem[:-1]
    return stem + "Q"


def linked(ns: str, first: str, second: str) -> list[str]:
    """A veth pair with these names and one with decoys of them; returns all four names."""
    run("ip", "-n", ns, "link", "add", "name", first, "type", "veth", "peer", "name", second)
    decoys = [decoy(first), decoy(second)]
    if len({first, second, *decoys}) == 4 and all(names.problem(d) is None for d in decoys):
        run("ip", "-n", ns, "link", "add", "name", decoys[0], "type", "veth", "peer", "name", decoys[1])
        return [first, second, *decoys]
    return [first, second]


def unlinked(ns: str, made: list[str]) -> None:
    for name in made[::2]:
        run("ip", "-n", ns, "link", "del", "dev", name, check=False)  # (`del d` reads as `dev`)


def conf_values(ns: str, key: str) -> dict[str, str]:
    """{interface: value} of net/ipv4/conf/*/KEY in the namespace, read from /proc."""
    script = (
        "import os,json,sys; b='/proc/sys/net/ipv4/conf'; print(json.dumps({n: open(os.path.join"
        "(b,n,sys.argv[1])).read().strip() for n in os.listdir(b) if n not in ('all','default')}))"
    )
    out = run("ip", "netns", "exec", ns, sys.executable, "-c", script, key).stdout
    return dict(json.loads(out))


def desired_for(first: str, second: str) -> Desired:
    """Two NICs on one subnet (the article's host): per-interface ARP sysctls, a table
    and rules per uplink, routes with `dev NAME`."""
    state = host({first: ["192.0.2.10/24"], second: ["192.0.2.11/24"]}, [(first, "192.0.2.1", 0)])
    return plan(Config(), state)


def check_sysctl_d(ns: str, desired: Desired, tmp_path: Path, made: list[str]) -> None:
    rendered = systemd.render(desired, Options())
    path = tmp_path / "90-multihome.conf"
    path.write_text(rendered.files["90-multihome.conf"])
    left_out = {s.interface for s in desired.sysctls if systemd.sysctl_d_key(s) is None}
    for loader in (["sysctl", "-q", "-p", str(path)], ["/lib/systemd/systemd-sysctl", str(path)]):
        for name in made:  # back to the kernel's default before each loader
            for key in ("arp_ignore", "arp_announce"):
                run(
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "sh",
                    "-c",
                    'echo 0 > "$1"',
                    "-",
                    f"/proc/sys/net/ipv4/conf/{name}/{key}",
                )
        run("ip", "netns", "exec", ns, *loader)
        ignore, announce = conf_values(ns, "arp_ignore"), conf_values(ns, "arp_announce")
        wanted = {s.interface for s in desired.sysctls} - left_out
        assert {n for n, v in ignore.items() if v == "1"} == wanted, (loader, made)
        assert {n for n, v in announce.items() if v == "2"} == wanted, (loader, made)
    for missing in left_out:
        assert missing is not None and any(missing in note for note in rendered.notes)


def check_ip_script(ns: str, desired: Desired, tmp_path: Path, made: list[str]) -> None:
    """The exported script run by sh, `ip` replaced by a recorder first in PATH; its sysctls
    are the namespace's own."""
    stub = tmp_path / "bin"
    stub.mkdir(exist_ok=True)
    record = tmp_path / "ip.jsonl"
    record.write_text("")
    (stub / "ip").write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(record)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    (stub / "ip").chmod(0o755)
    script = tmp_path / "multihome.sh"
    script.write_text(ip.script(desired, Options()).files["multihome.sh"])
    for name in made:
        run(
            "ip",
            "netns",
            "exec",
            ns,
            "sh",
            "-c",
            'echo 0 > "$1"',
            "-",
            f"/proc/sys/net/ipv4/conf/{name}/arp_ignore",
        )
    env = {**os.environ, "PATH": f"{stub}:{os.environ['PATH']}"}
    real_ip = shutil.which("ip") or "ip"  # found before PATH leads to the recorder
    run(real_ip, "netns", "exec", ns, "sh", str(script), env=env)
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    devices = [c[c.index("dev") + 1] for c in calls if "dev" in c]
    assert set(devices) == {s.interface for s in desired.sysctls}
    assert len(calls) == len(desired.routes) + 2 * len(desired.rules)
    ignore = conf_values(ns, "arp_ignore")
    assert {n for n, v in ignore.items() if v == "1"} == {s.interface for s in desired.sysctls}


def check_yaml(desired: Desired) -> None:
    try:
        text = netplan.render(desired, Options()).files["90-multihome.yaml"]
    except MultihomeError as error:
        assert "netplan cannot express the interface name" in error.message
        return
    parsed = yaml.safe_load(text)
    assert set(parsed["network"]["ethernets"]) == {u.name for u in desired.uplinks}


def nft_names(ruleset: dict[str, object]) -> list[str]:
    """Every interface name multihome's table matches, as nft itself lists it; a wildcard
    (an unescaped trailing `*`) fails the test."""
    found = []
    for item in ruleset["nftables"]:  # type: ignore[attr-defined]
        for node in gateway.walk(item.get("rule", {})):
            if not (isinstance(node, dict) and "match" in node):
                continue
            match = node["match"]
            if match["left"] in ({"meta": {"key": "iifname"}}, {"meta": {"key": "oifname"}}):
                value = match["right"]
                assert isinstance(value, str), value  # one name, no set, in these tables
                if value.endswith("\\*"):
                    found.append(value[:-2] + "*")
                else:
                    assert not value.endswith("*"), f"{value!r} is a wildcard"
                    found.append(value)
    return found


def check_nft(ns: str, lan: str, first: str, second: str) -> None:
    if any('"' in n or "\\" in n for n in (lan, first, second)):
        return  # plan_gateway refuses these (test_gateway's nftables-cannot-quote test)
    layout = GatewayLayout(
        lan=(lan,), marks=((first, 0x1000000), (second, 0x2000000)), mask=0x0F000000
    )
    run("ip", "netns", "exec", ns, "nft", "-f", "-", input=gateway.replace_script(layout))
    try:
        listed = json.loads(run("ip", "netns", "exec", ns, "nft", "-j", "list", "ruleset").stdout)
        assert set(nft_names(listed)) == {lan, first, second}
    finally:
        run("ip", "netns", "exec", ns, "nft", "-f", "-", input=gateway.replace_script(None))


def check_everything(ns: str, tmp_path: Path, first: str, second: str) -> None:
    made = linked(ns, first, second)
    try:
        desired = desired_for(first, second)
        check_sysctl_d(ns, desired, tmp_path, made)
        check_ip_script(ns, desired, tmp_path, made)
        check_yaml(desired)
        check_nft(ns, decoy(first), first, second)
        try:
            stanzas = ifupdown.render(desired, Options()).files["multihome"]
        except MultihomeError as error:
            assert "ifupdown cannot carry the interface name" in error.message
        else:
            assert f"iface {first} inet manual" in stanzas
        labels = metrics.label(first)
        assert json.loads(labels) == first  # the exposition format's escapes are JSON's here
    finally:
        unlinked(ns, made)


# Any name Linux allows (1-15 bytes, no /, :, whitespace, not . or ..), UTF-8 and with no
# control character (those are refused where they enter: see the tests below).
NAME = st.text(
    alphabet=st.characters(
        min_codepoint=0x21,
        max_codepoint=0x2FF,
        blacklist_characters="/:",
        blacklist_categories=("Cc", "Zs"),
    ),
    min_size=1,
    max_size=15,
).filter(lambda n: names.problem(n) is None)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(first=NAME, second=NAME)
def test_any_linux_name_is_exactly_itself_in_every_format_or_refused(
    netns: str, tmp_path: Path, first: str, second: str
) -> None:
    if first == second or decoy(first) in (first, second) or decoy(second) in (first, second):
        return
    check_everything(netns, tmp_path, first, second)


@pytest.mark.parametrize("first", HOSTILE)
def test_hostile_names_are_exactly_themselves_in_every_format_or_refused(
    netns: str, tmp_path: Path, first: str
) -> None:
    if names.problem(first) is not None:  # no interface can have it: refused at config load
        with pytest.raises(ConfigError, match="is not a valid interface name"):
            parse(f"[uplinks.{json.dumps(first)}]\n", "multihome.toml")
        return
    check_everything(netns, tmp_path, first, "eth1")


@pytest.mark.parametrize("name", ["&a", "#x", "a=b", "a'b", 'a"b', "a$b{;}"])
def test_netplan_generates_a_network_file_for_exactly_the_name(tmp_path: Path, name: str) -> None:
    text = netplan.render(desired_for(name, "eth1"), Options()).files["90-multihome.yaml"]
    (tmp_path / "etc/netplan").mkdir(parents=True)
    (tmp_path / "etc/netplan/90-multihome.yaml").write_text(text)
    (tmp_path / "etc/netplan/90-multihome.yaml").chmod(0o600)
    run("netplan", "generate", "--root-dir", str(tmp_path))
    generated = {
        p.name: p.read_text() for p in (tmp_path / "run/systemd/network").glob("*.network")
    }
    assert f"10-netplan-{name}.network" in generated
    assert f"Name={name}\n" in generated[f"10-netplan-{name}.network"]


@pytest.mark.parametrize("name", ["up*", "*x", "x?", "a\\b"])
def test_netplan_refuses_a_name_it_would_read_as_a_glob(name: str) -> None:
    with pytest.raises(MultihomeError, match="netplan cannot express"):
        netplan.render(desired_for(name, "eth1"), Options())


@pytest.mark.parametrize("name", ["up_1.100", "a@b+c", "x~y^z,-"])
def test_ifupdown_reads_back_its_stanza_for_exactly_the_name(tmp_path: Path, name: str) -> None:
    path = tmp_path / "interfaces"
    path.write_text(ifupdown.render(desired_for(name, "eth1"), Options()).files["multihome"])
    shown = run("ifquery", "-i", str(path), name).stdout
    assert f"up: ip -4 route replace 192.0.2.0/24 dev {shlex.quote(name)} table 100" in shown


def test_an_interface_whose_name_is_not_utf8_is_left_out_and_stops_nothing(
    netns: str,
) -> None:
    subprocess.run(
        [
            b"ip",
            b"-n",
            netns.encode(),
            b"link",
            b"add",
            b"a\xff",
            b"type",
            b"veth",
            b"peer",
            b"name",
            b"a\xfe",
        ],
        check=True,
    )
    try:
        shown = run(sys.executable, "-m", "multihome", "--netns", netns, "show", "--json")
        names_shown = [i["name"] for i in json.loads(shown.stdout)["interfaces"]]
        assert names_shown and not any("a\ufffd" in n or n.startswith("a\udcff") for n in names_shown)
        for command in ("apply", "remove"):
            done = run(sys.executable, "-m", "multihome", "--netns", netns, command, check=False)
            assert done.returncode == 0, done.stderr
    finally:
        subprocess.run([b"ip", b"-n", netns.encode(), b"link", b"del", b"a\xff"], check=False)
