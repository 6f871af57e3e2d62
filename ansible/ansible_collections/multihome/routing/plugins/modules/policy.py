#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026 multihome developers
# MIT License (see https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: policy
short_description: Source-based policy routing for multi-homed hosts, with multihome
version_added: "0.1.0"
author:
  - multihome contributors
description:
  - Makes a multi-homed Linux host route symmetrically, so that replies leave through the
    interface that owns their source address (a routing table per uplink, rules by source
    address, consistent ARP sysctls).
  - Drives the C(multihome) command on the target (C(multihome plan), C(apply), C(remove),
    C(confirm) and C(install), all with C(--json)). Changes are all or nothing; objects of
    other owners are never touched.
  - The task reports C(changed) only when multihome changed something, so a second run of a
    converged host reports no change.
  - Check mode runs C(multihome plan) and changes nothing; diff mode shows the plan, the
    objects removed or changed as I(before) and the objects added as I(after).
  - Errors of multihome (a bad config file, a kernel refusal) fail the task with multihome's
    own message, which names the file, line and key, and its hint.
requirements:
  - multihome on the target (see the C(multihome.routing.host) role), run as root
options:
  state:
    description:
      - V(present) makes the kernel match the plan (C(multihome apply)).
      - V(absent) removes every rule and route multihome created and puts back the sysctls
        it changed (C(multihome remove)).
      - V(confirmed) keeps a change made earlier with O(confirm) (C(multihome confirm));
        reports C(changed) when a change was waiting for confirmation. It reads O(config) or
        O(config_file) only for O(persist).
    type: str
    choices: [present, absent, confirmed]
    default: present
  config:
    description:
      - The configuration, as a dictionary with the same structure as multihome's TOML
        config file (sections C(multihome), C(health), C(sysctls), C(uplinks)).
      - It is written as TOML to a private temporary file on the target (mode 0600) for the
        run; on an error, the result's RV(config_toml) holds that file, so the line number
        in the message can be looked up.
      - Mutually exclusive with O(config_file). With neither, multihome reads
        C(/etc/multihome/multihome.toml) if it exists, else detects the uplinks.
    type: dict
  config_file:
    description:
      - Path of a multihome TOML config file on the target.
      - multihome refuses a file that is writable by group or others or owned by someone
        other than root (or the user running it).
    type: path
  netns:
    description:
      - Act inside this named network namespace (as C(ip netns exec NAME)).
    type: str
  confirm:
    description:
      - With O(state=present) or O(state=absent), make the change with confirm-or-revert;
        it is reverted to the exact previous state after this many seconds unless a later
        task with O(state=confirmed) keeps it. The revert also happens when the connection
        to the host is lost, which is what it is for.
      - While a change awaits confirmation, other changes in that namespace are refused.
    type: float
  persist:
    description:
      - V(none) changes only the running kernel.
      - V(auto) also installs the plan into the network stack that manages the uplinks
        (C(multihome install)), so that it survives a reboot; a format name forces that
        format.
      - With O(state=absent), any value other than V(none) also removes what an earlier
        install wrote (C(multihome uninstall)).
      - With O(state=confirmed), the plan is installed after the change is confirmed (or when
        nothing awaits confirmation); O(persist) together with O(confirm) is refused, as the
        files would stay when the change is reverted.
      - The C(systemd) format runs C(multihome apply) with the default config file
        C(/etc/multihome/multihome.toml), so keep the config there when persisting (the
        C(multihome.routing.host) role does).
    type: str
    choices: [none, auto, ip, networkd, netplan, networkmanager, ifupdown, systemd]
    default: none
  root:
    description:
      - Install persistence under this directory instead of C(/) (C(multihome install
        --root)), for image builds and tests.
    type: path
    default: /
  executable:
    description:
      - Path of the C(multihome) command on the target. By default it is looked up on
        C(PATH) and in C(/opt/multihome/bin), where the C(multihome.routing.host) role
        installs it.
    type: path
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - With O(persist), check mode reports a change when nothing was installed yet or a
        different format was; it does not compare the contents of installed files.
  diff_mode:
    support: full
  platform:
    platforms: posix
notes:
  - Needs root on the target (C(become)), as every routing change does.
  - Run against a whole fleet with C(serial) and O(confirm), and confirm after
    M(ansible.builtin.wait_for_connection), so a host that becomes unreachable reverts itself.
seealso:
  - module: ansible.builtin.wait_for_connection
  - module: ansible.posix.sysctl
"""

EXAMPLES = r"""
- name: Route every uplink symmetrically (uplinks detected)
  multihome.routing.policy:
  become: true

- name: Two ISPs, with explicit gateways and persistence across reboots
  multihome.routing.policy:
    config:
      multihome:
        table_range: [100, 199]
      uplinks:
        eth0:
          gateway: 192.0.2.1
        eth1:
          gateway: 198.51.100.1
    persist: auto
  become: true

- name: Use a config file already on the host, inside a network namespace
  multihome.routing.policy:
    config_file: /etc/multihome/edge.toml
    netns: edge

# A rolling update (in a play with serial: 1) that reverts itself on a host that
# becomes unreachable
- name: Apply, reverted in 60 s unless confirmed
  multihome.routing.policy:
    config_file: /etc/multihome/multihome.toml
    confirm: 60
  become: true

- name: The host still answers
  ansible.builtin.wait_for_connection:
    timeout: 30

- name: Keep the change, and install it into the host's network stack
  multihome.routing.policy:
    state: confirmed
    config_file: /etc/multihome/multihome.toml
    persist: auto
  become: true

- name: Remove everything multihome created, and its persistence
  multihome.routing.policy:
    state: absent
    persist: auto
  become: true
"""

RETURN = r"""
changes:
  description:
    - The plan's lines, in the words of C(ip) and C(sysctl), as C(multihome apply) prints
      them; C(+) adds, C(-) deletes, C(~) sets a sysctl. Empty when nothing changed.
    - In check mode, what would be changed.
  returned: always
  type: list
  elements: str
  sample:
    - "+ route -4 192.0.2.0/27 dev eth0 table 100 proto 77 scope link src 192.0.2.10"
    - "+ rule -4 pref 1000 from 192.0.2.10/32 lookup 100 suppress_prefixlength 0 proto 77"
    - "~ sysctl net.ipv4.conf.eth1.arp_ignore: 0 -> 1"
commands:
  description: The same changes as C(ip) and C(sysctl) commands.
  returned: always
  type: list
  elements: str
  sample:
    - "ip -4 route add 192.0.2.0/27 dev eth0 table 100 proto 77 scope link src 192.0.2.10"
uplinks:
  description: The uplinks of the plan, as C(multihome plan --json) reports them.
  returned: when state is present
  type: list
  elements: dict
  sample:
    - name: eth0
      table: 100
      addresses: [{ifname: eth0, ip: 192.0.2.10/27}]
      gateway4: 192.0.2.1
      gateway6: null
      source4: default route in main
      source6: none
      weight: 1
notes:
  description: multihome's notes about the plan (for example an uplink without a gateway).
  returned: always
  type: list
  elements: str
warnings_multihome:
  description:
    - multihome's warnings (for example neighbours it could not update at once); they are
      shown as warnings of the task too.
  returned: always
  type: list
  elements: str
nftables:
  description:
    - Gateway mode, when multihome's nftables table changes (it counts as a change, also for
      O(confirm)) - a one-line summary; in check mode, the C(nft -f) script.
  returned: when the nftables table changes
  type: str
pending_confirmation:
  description:
    - Whether the change now awaits confirmation (O(confirm) and something changed, the
      nftables table included).
  returned: always
  type: bool
outcome:
  description:
    - With O(state=confirmed), what multihome confirm reported, C(kept) or C(nothing
      pending).
  returned: when state is confirmed
  type: str
  sample: kept
persisted:
  description: What C(multihome install) (or C(uninstall)) did, with O(persist).
  returned: when persist is not none
  type: dict
  sample:
    formats: [networkd, systemd-sysctl]
    reasons: ["eth0: networkd", "eth1: networkd"]
    written: [/etc/systemd/network/10-eth0.network.d/90-multihome.conf]
    changed_files: [/etc/systemd/network/10-eth0.network.d/90-multihome.conf]
    backups: []
    removed: []
    notes: []
    changed: true
config_toml:
  description: The TOML file written from O(config), on a failure, to look up the line named.
  returned: on failure, when config is given
  type: str
hint:
  description: multihome's hint for the failure.
  returned: on failure, when multihome gave one
  type: str
"""

import json
import os
import re
import shlex

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.multihome.routing.plugins.module_utils.toml import TomlError, to_toml

MANIFEST = "var/lib/multihome/installed.json"  # where `multihome install` records its files
DEFAULT_CONFIG = "/etc/multihome/multihome.toml"
OPT_DIRS = ["/opt/multihome/bin", "/usr/local/bin"]


def describe(change):
    """A change of `multihome plan --json` as the line `multihome apply` prints for it."""
    obj = change.get("object") or {}
    if change.get("kind") == "sysctl":
        name = ".".join(part.replace(".", "/") for part in obj.get("path", "").split("/"))
        return "~ sysctl %s: %s -> %s" % (name, change.get("previous"), obj.get("value"))
    words = shlex.split(change.get("command", ""))  # ip -4 rule add ARGS...
    sign = "+" if change.get("action") == "add" else "-"
    return "%s %s %s %s" % (sign, words[2], words[1], " ".join(words[4:]))


def diff_of(changes, header):
    """The plan as before/after: what it deletes or changes, and what it adds or sets."""
    before, after = [], []
    for change in changes:
        obj = change.get("object") or {}
        line = describe(change)[2:]
        if change.get("kind") == "sysctl":
            name = line.split(":", 1)[0]
            before.append("%s = %s" % (name, change.get("previous")))
            after.append("%s = %s" % (name, obj.get("value")))
        elif change.get("action") == "add":
            after.append(line)
        else:
            before.append(line)
    return {
        "before_header": header,
        "after_header": header,
        "before": "".join(line + "\n" for line in before),
        "after": "".join(line + "\n" for line in after),
    }


class Multihome(object):
    def __init__(self, module):
        self.module = module
        params = module.params
        self.executable = params["executable"] or module.get_bin_path(
            "multihome", required=False, opt_dirs=OPT_DIRS
        )
        if not self.executable:
            module.fail_json(
                msg="multihome was not found on the target (PATH, %s)" % ", ".join(OPT_DIRS),
                hint="install it (the multihome.routing.host role does), or give executable",
            )
        self.config_toml = None
        self.config_path = params["config_file"]
        self.result = {
            "changed": False,
            "changes": [],
            "commands": [],
            "notes": [],
            "warnings_multihome": [],
            "pending_confirmation": False,
        }

    def write_config(self):
        """The config dict as TOML in a private file, mode 0600 (multihome refuses looser)."""
        try:
            self.config_toml = to_toml(self.module.params["config"], "written by multihome.routing.policy")
        except TomlError as error:
            self.module.fail_json(msg=str(error), **self.result)
        path = os.path.join(self.module.tmpdir, "multihome.toml")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(self.config_toml)
        self.config_path = path

    def run(self, command, *args, **kwargs):
        """Run `multihome [--netns NS] [-c FILE] COMMAND --json ARGS`; its JSON, or fail."""
        argv = [self.executable]
        if self.module.params["netns"]:
            argv += ["--netns", self.module.params["netns"]]
        if self.config_path and kwargs.get("config", True):
            argv += ["-c", self.config_path]
        argv += [command] + ([] if kwargs.get("text") else ["--json"]) + list(args)
        rc, out, err = self.module.run_command(argv)
        if rc != 0 and not (command == "confirm" and out.strip()):
            self.fail(argv, rc, out, err)
        if kwargs.get("text"):
            return out
        try:
            return json.loads(out)
        except ValueError:
            self.fail(argv, rc, out, err, "multihome %s printed no JSON" % command)

    def fail(self, argv, rc, out, err, msg=None):
        messages = [line for line in err.splitlines() if line.startswith("multihome: ")]
        hints = [line[len("hint: "):] for line in err.splitlines() if line.startswith("hint: ")]
        for line in err.splitlines():  # under --json an error is one JSON object on a line
            try:
                error = json.loads(line)
            except ValueError:
                continue
            if isinstance(error, dict) and "error" in error:
                messages.append("multihome: %s" % error["error"])
                hints += [error["hint"]] if error.get("hint") else []
        extra = {}
        if hints:
            extra["hint"] = " ".join(hints)
        if self.config_toml is not None:
            extra["config_toml"] = self.config_toml
        if msg is None:
            msg = "\n".join(messages) or "multihome failed (exit %d): %s" % (rc, err.strip())
            line = re.search(r"^multihome: %s:(\d+):" % re.escape(self.config_path or "?"), msg)
            if line and self.config_toml is not None:
                number = int(line.group(1))
                text = (self.config_toml.splitlines() + [""] * number)[number - 1]
                msg += "\n(line %d of the TOML written from config: %s)" % (number, text)
        result = dict(self.result)
        result.update(extra)
        self.module.fail_json(msg=msg, rc=rc, cmd=argv, stdout=out, stderr=err, **result)

    def report(self, data):
        changes = data.get("changes", [])
        self.result["changes"] = [describe(c) for c in changes]
        self.result["commands"] = [c.get("command", "") for c in changes]
        self.result["notes"] = data.get("notes", [])
        self.result["warnings_multihome"] = data.get("warnings", [])
        for warning in self.result["warnings_multihome"]:
            self.module.warn("multihome: %s" % warning)
        if "uplinks" in data:
            self.result["uplinks"] = data["uplinks"]
        if data.get("nftables"):
            self.result["nftables"] = data["nftables"]
        # multihome's own `changed` counts its nftables table (gateway mode) too
        if data.get("changed", bool(changes)):
            self.result["changed"] = True
            if self.module._diff:
                netns = self.module.params["netns"]
                header = "netns %s" % netns if netns else "kernel"
                self.result["diff"] = diff_of(changes, header)

    def owned_lines(self):
        """What `multihome remove` would delete: the rules and routes `show` marks as its own."""
        lines, section = [], None
        for line in self.run("show", text=True).splitlines():
            if not line.startswith(" "):
                section = line
            elif section.startswith("Policy rules") and line.startswith(" *-"):
                family, rest = line[2:].split(" ", 1)
                lines.append("- rule %s %s" % (family, rest))
            elif section.startswith("Tables owned") and line.startswith("    -"):
                family, rest = line.strip().split(" ", 1)
                lines.append("- route %s %s" % (family, rest))
        return lines

    def present(self):
        if self.module.check_mode:
            self.report(self.run("plan"))
            return
        args = self.confirm_args()
        data = self.run("apply", *args)
        self.report(data)
        self.result["pending_confirmation"] = bool(
            args and data.get("changed", bool(data.get("changes")))
        )

    def absent(self):
        if self.module.check_mode:
            lines = self.owned_lines()
            self.result["changes"] = lines
            self.result["changed"] = bool(lines)
            if lines:
                self.result["notes"] = ["check mode: the sysctls multihome changed are put back too"]
                if self.module._diff:
                    netns = self.module.params["netns"]
                    header = "netns %s" % netns if netns else "kernel"
                    self.result["diff"] = {
                        "before_header": header,
                        "after_header": header,
                        "before": "".join(line[2:] + "\n" for line in lines),
                        "after": "",
                    }
            return
        args = self.confirm_args()
        data = self.run("remove", *args)
        self.report(data)
        self.result["pending_confirmation"] = bool(
            args and data.get("changed", bool(data.get("changes")))
        )

    def confirmed(self):
        if self.module.check_mode:  # nothing was applied in check mode, so nothing waits
            self.result["outcome"] = "not checked in check mode"
            return
        data = self.run("confirm", config=False)
        outcome = data.get("outcome")
        self.result["outcome"] = outcome
        if outcome == "kept":
            self.result["changed"] = True
        elif outcome != "nothing pending":
            text = {"reverted": "too late: the change was already reverted"}.get(
                outcome, "the confirm-or-revert guardian reported: %s" % outcome
            )
            self.module.fail_json(
                msg=text,
                hint="apply again, with a longer confirm, and confirm sooner",
                **self.result
            )

    def confirm_args(self):
        seconds = self.module.params["confirm"]
        return [] if seconds is None else ["--confirm", "%g" % seconds]

    def persist(self):
        params = self.module.params
        root = params["root"]
        manifest = _read_manifest(root)
        if params["state"] == "absent":
            changed = bool(manifest.get("files"))
            persisted = {"removed": [], "changed": changed}
            if not self.module.check_mode:
                data = self.run("uninstall", "--root", root, config=False)
                persisted["removed"] = data.get("removed", [])
                persisted["changed"] = bool(persisted["removed"])
        elif self.module.check_mode:
            installed = manifest.get("formats") or []
            wanted = params["persist"]
            changed = not manifest.get("files") or (wanted != "auto" and wanted not in installed)
            persisted = {"formats": installed, "changed": changed}
        else:
            before = _contents(root, manifest)
            data = self.run("install", "--format", params["persist"], "--root", root)
            written = [p for p in data.get("written", []) if before.get(p) != _read(p)]
            persisted = dict(data)
            persisted["changed_files"] = written
            if "systemd" in data.get("formats", []) and (
                params["config"] is not None or params["config_file"] not in (None, DEFAULT_CONFIG)
            ):
                self.module.warn(
                    "persist: the systemd format's units (multihome-watch.service, enabled,"
                    " and multihome.service) run multihome with %s, not with this task's"
                    " config; keep the config there" % DEFAULT_CONFIG
                )
            persisted["changed"] = bool(written or data.get("backups") or data.get("removed"))
            for note in data.get("notes", []):
                self.result["notes"].append(note)
        self.result["persisted"] = persisted
        if persisted["changed"]:
            self.result["changed"] = True
            if self.module.check_mode:
                verb = "uninstall" if params["state"] == "absent" else "install --format %s" % params["persist"]
                self.result["changes"].append("persist: multihome %s under %s" % (verb, root))
            for path in persisted.get("changed_files", []):
                self.result["changes"].append("persist: wrote %s" % path)
            for path in persisted.get("removed", []):
                self.result["changes"].append("persist: removed %s" % path)


def _read_manifest(root):
    try:
        with open(os.path.join(root, MANIFEST)) as file:
            return json.load(file)
    except (IOError, OSError, ValueError):
        return {}


def _read(path):
    """A file's content, or a symlink's target, or None."""
    try:
        if os.path.islink(path):
            return "-> " + os.readlink(path)
        with open(path, "rb") as file:
            return file.read()
    except (IOError, OSError):
        return None


def _contents(root, manifest):
    return {
        os.path.join(root, entry["path"]): _read(os.path.join(root, entry["path"]))
        for entry in manifest.get("files", [])
    }


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", default="present", choices=["present", "absent", "confirmed"]),
            config=dict(type="dict"),
            config_file=dict(type="path"),
            netns=dict(type="str"),
            confirm=dict(type="float"),
            persist=dict(
                type="str",
                default="none",
                choices=["none", "auto", "ip", "networkd", "netplan", "networkmanager", "ifupdown", "systemd"],
            ),
            root=dict(type="path", default="/"),
            executable=dict(type="path"),
        ),
        mutually_exclusive=[("config", "config_file")],
        supports_check_mode=True,
    )
    params = module.params
    if params["confirm"] is not None:
        if params["state"] == "confirmed":
            module.fail_json(msg="confirm is for state=present or state=absent, not confirmed")
        if not 1 <= params["confirm"] <= 86400:
            module.fail_json(msg="confirm takes 1-86400 seconds, not %g" % params["confirm"])
        if params["persist"] != "none":
            module.fail_json(
                msg="persist with confirm would keep the installed files even when the change"
                " is reverted",
                hint="give persist to the task with state=confirmed, which installs after"
                " confirming",
            )
    if params["state"] == "confirmed" and params["persist"] == "none":
        params["config"] = params["config_file"] = None  # confirming reads no config
    multihome = Multihome(module)
    if params["config"] is not None:
        multihome.write_config()
    try:
        getattr(multihome, params["state"])()
        if params["persist"] != "none":
            multihome.persist()
    finally:
        if params["config"] is not None and multihome.config_path:
            try:
                os.unlink(multihome.config_path)
            except OSError:
                pass
    module.exit_json(**multihome.result)


if __name__ == "__main__":
    main()
