"""The Ansible collection (ansible/ansible_collections/multihome/routing) with the real
ansible-core: playbooks against network namespaces as inventory hosts (connection local,
each host's namespace an inventory variable), the kernel read back with `ip -j`."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import stat
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from multihome.lab import scenarios
from multihome.lab.description import Topology
from multihome.lab.topology import Network

from .helpers import ip_json, multihome, snapshot, sysctl

Build = Callable[[Topology], Network]
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MULTIHOME = str(BIN / "multihome")
EXAMPLE = REPO / "ansible" / "examples" / "fleet.yml"
COLLECTION = REPO / "ansible" / "ansible_collections" / "multihome" / "routing"

SITE = """
- name: Symmetric routing
  hosts: fleet
  gather_facts: false
  tasks:
    - name: Apply the routing policy
      multihome.routing.policy:
        state: "{{ policy_state | default('present') }}"
        netns: "{{ netns }}"
        config: "{{ mh_config | default(omit) }}"
        config_file: "{{ mh_config_file | default(omit) }}"
        executable: "{{ multihome_bin }}"
"""

ROLLING = """
- name: Rolling update
  hosts: fleet
  serial: 1
  gather_facts: false
  tasks:
    - name: Apply with confirm-or-revert
      multihome.routing.policy:
        netns: "{{ netns }}"
        confirm: "{{ confirm_seconds }}"
        executable: "{{ multihome_bin }}"
      register: routing

    - name: The host no longer answers (simulated)
      ansible.builtin.fail:
        msg: connection lost
      when: lose_connection | default(false)

    - name: The host still answers
      ansible.builtin.wait_for_connection:
        timeout: 20
      when: routing.pending_confirmation

    - name: Keep the change
      multihome.routing.policy:
        state: confirmed
        netns: "{{ netns }}"
        executable: "{{ multihome_bin }}"
"""


class Ansible:
    """ansible-playbook with a private configuration: no facts, no retry files, temporary
    directories under the test's own, the collection from the repository."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.env = {
            **os.environ,
            "ANSIBLE_HOME": str(tmp / "ansible-home"),
            "ANSIBLE_CONFIG": str(tmp / "ansible.cfg"),  # absent: defaults, not a stray cfg
            "ANSIBLE_COLLECTIONS_PATH": str(REPO / "ansible"),
            "ANSIBLE_GATHERING": "explicit",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-local"),
            "ANSIBLE_REMOTE_TMP": str(tmp / "ansible-remote"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_DEPRECATION_WARNINGS": "False",
            "ANSIBLE_STDOUT_CALLBACK": "default",
        }

    def inventory(
        self, hosts: dict[str, dict[str, Any]], name: str = "fleet", **group: Any
    ) -> Path:
        """A YAML (here: JSON) inventory, one group; every host runs locally with this venv's
        Python."""
        path = self.tmp / "inventory.yml"
        group_vars = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "ansible_become": False,
            "multihome_bin": MULTIHOME,
            **group,
        }
        data = {name: {"hosts": hosts, "vars": group_vars}}
        path.write_text(json.dumps(data, indent=1))
        return path

    def playbook(self, text: str, name: str = "site.yml") -> Path:
        path = self.tmp / name
        path.write_text(text)
        return path

    def run(
        self, playbook: Path, *args: str, expect: int = 0, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [
                str(BIN / "ansible-playbook"),
                "-i",
                str(self.tmp / "inventory.yml"),
                str(playbook),
                *args,
            ],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.tmp,
            timeout=timeout,
        )
        if result.returncode != expect:
            raise AssertionError(
                f"ansible-playbook {' '.join(args)} exited {result.returncode}, not {expect}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP: host -> {ok, changed, failed, ...}."""
    hosts = {}
    for line in output[output.rindex("PLAY RECAP") :].splitlines()[1:]:
        match = re.match(r"^(\S+)\s+:\s+(.*)$", line)
        if match:
            hosts[match[1]] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match[2])}
    return hosts


def task_results(output: str) -> list[tuple[str, str, str]]:
    """(task name, status, host) in the order ansible-playbook printed them."""
    events, task = [], ""
    for line in output.splitlines():
        if header := re.match(r"^TASK \[(.*)\] \*+$", line):
            task = header[1]
        elif result := re.match(r"^(ok|changed|skipping|fatal): \[([^\]]+)\]", line):
            events.append((task, result[1], result[2]))
    return events


def failures(output: str) -> dict[str, dict[str, Any]]:
    """host -> the result of its failed task, from `fatal: [host]: FAILED! => {...}`."""
    found = {}
    for match in re.finditer(r"^fatal: \[([^\]]+)\]: FAILED! => (\{.*\})$", output, re.M):
        found[match[1]] = json.loads(match[2])
    return found


def owned_rules(ns: str) -> set[tuple[str, int, str, str]]:
    """multihome's rules as iproute2 reads them: (family, priority, from, table)."""
    return {
        (family, r["priority"], r["src"], str(r["table"]))
        for family in ("-4", "-6")
        for r in ip_json(ns, family, "rule")
        if r.get("protocol") in (77, "77", "multihome") and 1000 <= r["priority"] <= 1003
    }


def wait_for(condition: Callable[[], bool], seconds: float) -> None:
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


def test_fleet_check_diff_converge_idempotent_and_absent(build: Build, tmp_path: Path) -> None:
    """The seed network and a two-ISP network as two hosts: --check changes nothing, --diff
    prints the plan, the run converges both, a second run changes nothing, and state: absent
    leaves each host's rules and routes byte for byte as before."""
    seed, isp = build(scenarios.seed(nics=2)), build(scenarios.two_isp(nics=2))
    hosts = {"seed": seed.ns("server"), "isp": isp.ns("server")}
    ansible = Ansible(tmp_path)
    ansible.inventory({name: {"netns": ns} for name, ns in hosts.items()})
    site = ansible.playbook(SITE)
    before = {name: snapshot(ns) for name, ns in hosts.items()}

    checked = ansible.run(site, "--check", "--diff").stdout
    assert {h: r["changed"] for h, r in recap(checked).items()} == {"seed": 1, "isp": 1}
    assert {name: snapshot(ns) for name, ns in hosts.items()} == before  # kernel untouched
    assert not owned_rules(hosts["seed"]) and not owned_rules(hosts["isp"])
    assert (
        "+rule -4 pref 1000 from 192.0.2.10/32 lookup 100 suppress_prefixlength 0 proto 77"
        in checked
    )
    assert (
        "+sysctl net.ipv4.conf.eth1.arp_ignore = 1" in checked
        and "-sysctl net.ipv4.conf.eth1.arp_ignore = 0" in checked
    )

    applied = ansible.run(site, "--diff").stdout
    assert {h: r["changed"] for h, r in recap(applied).items()} == {"seed": 1, "isp": 1}
    # the diff is the plan: the same lines `multihome plan --format ip` would make
    assert f"--- before: netns {hosts['isp']}\n+++ after: netns {hosts['isp']}\n" in applied
    assert (
        "+route -4 default via 192.0.2.33 dev eth1 table 101 proto 77" in applied
        and "+rule -6 pref 1002 from 2001:db8:1::/64 lookup main proto 77" in applied
    )
    assert owned_rules(hosts["seed"]) == {
        ("-4", 1000, "192.0.2.10", "100"),
        ("-4", 1000, "192.0.2.11", "101"),
        ("-4", 1001, "all", "main"),
        ("-4", 1002, "192.0.2.10", "100"),
        ("-4", 1002, "192.0.2.11", "101"),
    }
    assert ("-6", 1002, "2001:db8:1::", "main") in owned_rules(hosts["isp"])
    assert sysctl(hosts["seed"], "net.ipv4.conf.eth1.arp_ignore") == "1"
    for ns in hosts.values():
        assert multihome(ns, "plan", "--check").returncode == 0
    converged = {name: snapshot(ns) for name, ns in hosts.items()}

    again = ansible.run(site).stdout
    assert {h: (r["changed"], r["failed"]) for h, r in recap(again).items()} == {
        "seed": (0, 0),
        "isp": (0, 0),
    }
    assert {name: snapshot(ns) for name, ns in hosts.items()} == converged

    removed = ansible.run(site, "-e", "policy_state=absent").stdout
    assert {h: r["changed"] for h, r in recap(removed).items()} == {"seed": 1, "isp": 1}
    for name, ns in hosts.items():
        assert snapshot(ns) == before[name], name
    assert sysctl(hosts["seed"], "net.ipv4.conf.eth1.arp_ignore") == "0"


def test_rolling_update_confirms_host_by_host_and_a_lost_host_reverts(
    build: Build, tmp_path: Path
) -> None:
    """serial: 1, apply with confirm, wait_for_connection, state: confirmed: each host is
    confirmed before the next is touched; the host that loses its connection after the apply
    (its play stops there) reverts itself when the time is up, the others keep theirs."""
    seed, isp, seed3 = (
        build(scenarios.seed(nics=2)),
        build(scenarios.two_isp(nics=2)),
        build(scenarios.seed(nics=3)),
    )
    hosts = {"web1": seed.ns("server"), "web2": isp.ns("server"), "web3": seed3.ns("server")}
    ansible = Ansible(tmp_path)
    ansible.inventory(
        {
            "web1": {"netns": hosts["web1"], "confirm_seconds": 30},
            "web2": {"netns": hosts["web2"], "confirm_seconds": 30},
            "web3": {"netns": hosts["web3"], "confirm_seconds": 3, "lose_connection": True},
        }
    )
    before = {name: snapshot(ns) for name, ns in hosts.items()}
    try:
        output = ansible.run(ansible.playbook(ROLLING), expect=2).stdout
        summary = recap(output)
        assert {h: (r["changed"], r["failed"]) for h, r in summary.items()} == {
            "web1": (2, 0),
            "web2": (2, 0),
            "web3": (1, 1),
        }
        events = [(task, host) for task, status, host in task_results(output)]
        assert events == [
            ("Apply with confirm-or-revert", "web1"),
            ("The host no longer answers (simulated)", "web1"),
            ("The host still answers", "web1"),
            ("Keep the change", "web1"),
            ("Apply with confirm-or-revert", "web2"),
            ("The host no longer answers (simulated)", "web2"),
            ("The host still answers", "web2"),
            ("Keep the change", "web2"),
            ("Apply with confirm-or-revert", "web3"),
            ("The host no longer answers (simulated)", "web3"),
        ]
        assert snapshot(hosts["web3"]) != before["web3"]  # applied, awaiting confirmation
        wait_for(lambda: snapshot(hosts["web3"]) == before["web3"], 3 + 5)
        for name in ("web1", "web2"):  # confirmed: kept, nothing waits
            assert snapshot(hosts[name]) != before[name]
            assert multihome(hosts[name], "plan", "--check").returncode == 0
            confirm = multihome(hosts[name], "confirm", "--json")
            assert json.loads(confirm.stdout)["outcome"] == "nothing pending"
    finally:  # end any guardian the test left waiting (confirming ends it)
        for ns in hosts.values():
            multihome(ns, "confirm", check=False)


def test_bad_config_fails_that_host_with_file_line_and_leaves_its_kernel(
    build: Build, tmp_path: Path
) -> None:
    seed, isp = build(scenarios.seed(nics=2)), build(scenarios.two_isp(nics=2))
    bad_file = tmp_path / "edge.toml"
    bad_file.write_text(
        '[multihome]\ntable_range = [100, 199]\n\n[uplinks.eth0]\ngatway = "192.0.2.1"\n'
    )
    bad_file.chmod(0o600)
    loose = tmp_path / "loose.toml"
    loose.write_text("[multihome]\nipv6 = false\n")
    loose.chmod(0o664)
    hosts = {
        "good": seed.ns("server"),
        "typo-file": isp.ns("server"),
        "typo-dict": seed.ns("router"),
        "loose-file": isp.ns("isp0"),
    }
    ansible = Ansible(tmp_path)
    ansible.inventory(
        {
            "good": {"netns": hosts["good"]},
            "typo-file": {"netns": hosts["typo-file"], "mh_config_file": str(bad_file)},
            "typo-dict": {
                "netns": hosts["typo-dict"],
                "mh_config": {
                    "multihome": {"priority": 1000},
                    "uplinks": {"lan": {}, "wan": {"gateway": "198.51.100.100", "tabel": 120}},
                },
            },
            "loose-file": {"netns": hosts["loose-file"], "mh_config_file": str(loose)},
        }
    )
    before = {name: snapshot(ns) for name, ns in hosts.items()}
    output = ansible.run(ansible.playbook(SITE), expect=2).stdout
    assert {h: (r["changed"], r["failed"]) for h, r in recap(output).items()} == {
        "good": (1, 0),
        "typo-file": (0, 1),
        "typo-dict": (0, 1),
        "loose-file": (0, 1),
    }
    failed = failures(output)
    assert failed["typo-file"]["msg"] == (
        f"multihome: {bad_file}:5: uplinks.eth0.gatway: unknown key 'gatway' in"
        " [uplinks.eth0] (did you mean 'gateway'?); known: delegated, gateway, gateway6, ipv4, ipv6,"
        " probe, probe6, reliability, table, weight"
    )
    typo = failed["typo-dict"]
    assert re.match(
        r"multihome: \S+/multihome\.toml:10: uplinks\.wan\.tabel: unknown key 'tabel' in"
        r" \[uplinks\.wan\] \(did you mean 'table'\?\)",
        typo["msg"],
    ), typo["msg"]
    assert typo["msg"].endswith("(line 10 of the TOML written from config: tabel = 120)")
    assert typo["config_toml"].splitlines()[9] == "tabel = 120"
    assert tomllib.loads(typo["config_toml"].replace("tabel", "table"))["uplinks"] == {
        "lan": {},
        "wan": {"gateway": "198.51.100.100", "table": 120},
    }
    assert failed["loose-file"]["msg"] == f"multihome: {loose}: writable by group (mode 664)"
    assert failed["loose-file"]["hint"] == f"chmod go-w {loose}"
    for name in ("typo-file", "typo-dict", "loose-file"):
        assert snapshot(hosts[name]) == before[name], name
    assert snapshot(hosts["good"]) != before["good"]


def test_readme_playbook_installs_converges_and_changes_nothing_the_second_time(
    build: Build, tmp_path: Path
) -> None:
    """The README's playbook (ansible/examples/fleet.yml, the role) as a new user runs it:
    multihome from a wheel into a virtualenv, the config written 0600, applied with
    confirm-or-revert and confirmed, persistence installed; the second run changes nothing.
    Paths that would be the host's own (/opt, /etc, the persistence root) are redirected
    into the test's directory: the namespaces share this machine's file system."""
    readme = (REPO / "README.md").read_text()
    assert EXAMPLE.read_text() in readme, "the README shows ansible/examples/fleet.yml"
    wheels = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("multihome-*.whl")
    isp = build(scenarios.two_isp(nics=2))
    ns = isp.ns("server")
    root = tmp_path / "root"
    ansible = Ansible(tmp_path)
    venv = tmp_path / "opt-multihome"
    config = tmp_path / "etc" / "multihome.toml"
    ansible.inventory(
        {"web1": {"multihome_netns": ns}},
        name="multihomed",
        multihome_packages=[],
        multihome_venv=str(venv),
        multihome_config_path=str(config),
        multihome_persist_root=str(root),
    )
    before = snapshot(ns)
    checked = ansible.run(EXAMPLE, "--check", "-e", f"multihome_wheel_src={wheel}").stdout
    assert recap(checked)["web1"]["failed"] == 0 and recap(checked)["web1"]["changed"] >= 3
    assert not venv.exists() and not config.exists() and snapshot(ns) == before

    first = ansible.run(EXAMPLE, "-e", f"multihome_wheel_src={wheel}", timeout=400).stdout
    assert recap(first)["web1"]["failed"] == 0 and recap(first)["web1"]["changed"] >= 5
    installed = venv / "bin" / "multihome"
    assert (
        subprocess.run([installed, "--version"], capture_output=True, text=True).stdout.strip()
        == "multihome 0.1.0"
    )
    assert stat.S_IMODE(config.stat().st_mode) == 0o600 and config.stat().st_uid == 0
    assert tomllib.loads(config.read_text()) == {
        "multihome": {"table_range": [100, 199]},
        "sysctls": {"arp": True},
    }
    assert ("-4", 1002, "192.0.2.32", "101") in owned_rules(ns)
    assert multihome(ns, "-c", str(config), "plan", "--check").returncode == 0
    assert json.loads(multihome(ns, "confirm", "--json").stdout)["outcome"] == "nothing pending"
    manifest = json.loads((root / "var/lib/multihome/installed.json").read_text())
    assert manifest["formats"] == ["systemd"]  # no network stack in the namespace
    unit = (root / "etc/systemd/system/multihome.service").read_text()
    assert f"ExecStart={installed} apply" in unit

    converged = snapshot(ns)
    second = ansible.run(EXAMPLE, "-e", f"multihome_wheel_src={wheel}", timeout=400).stdout
    assert recap(second)["web1"]["changed"] == 0 and recap(second)["web1"]["failed"] == 0
    assert snapshot(ns) == converged


def test_ansible_doc_renders_and_the_collection_builds(tmp_path: Path) -> None:
    ansible = Ansible(tmp_path)
    doc = subprocess.run(
        [str(BIN / "ansible-doc"), "multihome.routing.policy"],
        capture_output=True,
        text=True,
        env=ansible.env,
        check=True,
    )
    assert "multihome.routing.policy" in doc.stdout and not doc.stderr.strip()
    for option in ("state", "config", "config_file", "netns", "confirm", "persist", "executable"):
        assert re.search(rf"^- {option}\s", doc.stdout, re.M), option
    assert "EXAMPLES" in doc.stdout and "RETURN VALUES" in doc.stdout
    role = subprocess.run(
        [str(BIN / "ansible-doc"), "-t", "role", "multihome.routing.host"],
        capture_output=True,
        text=True,
        env=ansible.env,
        check=True,
    )
    assert "multihome_config" in role.stdout and not role.stderr.strip()
    subprocess.run(
        [
            str(BIN / "ansible-galaxy"),
            "collection",
            "build",
            "--output-path",
            str(tmp_path),
            str(COLLECTION),
        ],
        capture_output=True,
        text=True,
        env=ansible.env,
        check=True,
    )
    listing = subprocess.run(
        ["tar", "tzf", str(tmp_path / "multihome-routing-0.1.0.tar.gz")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for path in (
        "plugins/modules/policy.py",
        "plugins/module_utils/toml.py",
        "plugins/filter/to_toml.py",
        "roles/host/tasks/main.yml",
        "meta/runtime.yml",
        "README.md",
    ):
        assert path in listing, path


def _load_toml_writer() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "multihome_routing_toml", COLLECTION / "plugins" / "module_utils" / "toml.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOML = _load_toml_writer()
SCALARS = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text()
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), VALUES, max_size=5))
def test_toml_writer_round_trips_through_tomllib(config: dict[str, Any]) -> None:
    """The collection's TOML writer (targets may have no TOML library that writes): what it
    writes, Python's own TOML reader reads back as the same dictionary."""
    assert tomllib.loads(TOML.to_toml(config, "a header\nof two lines")) == config


def test_toml_writer_refuses_null_and_writes_multihome_config() -> None:
    config = {
        "multihome": {"table_range": [100, 199], "balance": True},
        "health": {"interval": 0.4},
        "uplinks": {"eth0.100": {"gateway": "192.0.2.1", "probe": ["203.0.113.100"]}},
    }
    assert TOML.to_toml(config) == (
        "[multihome]\ntable_range = [100, 199]\nbalance = true\n\n"
        "[health]\ninterval = 0.4\n\n"
        '[uplinks."eth0.100"]\ngateway = "192.0.2.1"\nprobe = ["203.0.113.100"]\n'
    )
    assert TOML.to_toml({"x": math.inf}) == "x = inf\n"
    try:
        TOML.to_toml({"uplinks": {"eth0": {"gateway": None}}})
    except TOML.TomlError as error:
        assert str(error).startswith("config: uplinks.eth0.gateway is null")
    else:
        raise AssertionError("a null value was written")


GATEWAY_ONLY = """
- name: Gateway routing
  hosts: fleet
  gather_facts: false
  tasks:
    - name: Apply
      multihome.routing.policy:
        netns: "{{ netns }}"
        config_file: "{{ mh_config_file }}"
        confirm: "{{ confirm_seconds | default(omit) }}"
        executable: "{{ multihome_bin }}"
      register: routing
    - name: Show
      ansible.builtin.debug:
        msg: "RESULT {{ routing | to_json }}"
"""


def test_a_change_of_only_the_nftables_table_is_changed_and_awaits_confirmation(
    build: Build, tmp_path: Path
) -> None:
    from multihome.lab import gateway

    router = build(gateway.gateway(nics=2)).ns("router")
    config = tmp_path / "multihome.toml"
    config.write_text(gateway.CONFIG)
    config.chmod(0o600)
    multihome(router, "-c", str(config), "apply")
    subprocess.run(
        ["ip", "netns", "exec", router, "nft", "delete", "table", "inet", "multihome"], check=True
    )
    ansible = Ansible(tmp_path)
    ansible.inventory({"gw": {"netns": router, "mh_config_file": str(config)}})
    site = ansible.playbook(GATEWAY_ONLY)

    def result(output: str) -> dict[str, Any]:
        found = re.search(r'"msg": "RESULT (\{.*\})"', output)
        assert found, output
        data: dict[str, Any] = json.loads(found[1].encode().decode("unicode_escape"))
        return data

    try:
        checked = ansible.run(site, "--check").stdout
        assert recap(checked)["gw"]["changed"] == 1, checked
        assert "table inet multihome" in result(checked)["nftables"]
        applied = ansible.run(site, "-e", "confirm_seconds=30").stdout
        data = result(applied)
        assert data["changed"] is True and data["pending_confirmation"] is True, data
        assert data["changes"] == [], data
        confirm = multihome(router, "confirm", "--json")
        assert json.loads(confirm.stdout)["outcome"] == "kept"
    finally:
        multihome(router, "confirm", check=False)


def test_the_collection_passes_ansible_test_sanity() -> None:
    """Every sanity test of ansible-test (validate-modules, pylint, yamllint, ...), offline:
    ansible-test bootstraps pip into each test's virtualenv with a script it downloads, and
    this machine reaches only the package registry. A script in its cache that runs
    ensurepip stands in; `--requirements` then installs the rest from the registry."""
    version = subprocess.run(
        [str(BIN / "ansible"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    core = re.search(r"core (\d+\.\d+)", version)
    assert core, version
    ignores = COLLECTION / "tests" / "sanity" / f"ignore-{core.group(1)}.txt"
    assert ignores.exists(), f"no sanity ignore file for ansible-core {core.group(1)}: {ignores}"
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    argv = [str(BIN / "ansible-test"), "sanity", "--python", "3.11", "--requirements", "--color", "no"]
    result = subprocess.run(argv, cwd=COLLECTION, env=env, capture_output=True, text=True, timeout=600)
    wanted = re.search(r"manually downloaded and saved to: (\S+get_pip_\w+\.py)", result.stdout + result.stderr)
    if wanted:  # the bootstrap script could not be downloaded: put ensurepip in its place
        Path(wanted.group(1)).parent.mkdir(parents=True, exist_ok=True)
        Path(wanted.group(1)).write_text("import ensurepip\n\nensurepip.bootstrap(upgrade=True)\n")
        result = subprocess.run(argv, cwd=COLLECTION, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    ran = re.findall(r'^Running sanity test "([\w-]+)"', output, re.M)
    assert {"validate-modules", "pylint", "yamllint", "ansible-doc", "import"} <= set(ran), ran
