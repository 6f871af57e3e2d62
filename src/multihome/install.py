"""`multihome install` / `uninstall`: put the rendered files where the host's network stack
reads them, and take exactly those away again.

Which stack manages the uplinks is read from the host (under --root): systemd-networkd's link
state, NetworkManager's device state, ifupdown's interfaces files. The choice itself is a pure
function of those facts (`choose`). Every file written is recorded in a manifest with the
backup of anything it replaced, before any file is touched, so that an install interrupted
at any step can be undone; uninstall removes what the manifest lists and puts the backups
back. Files multihome did not write are never edited.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import re
import time
from dataclasses import dataclass

from multihome import discover, files, namespace
from multihome.errors import MultihomeError
from multihome.model import Desired, HostState
from multihome.render import Options, Rendered, registry

MANIFEST = "var/lib/multihome/installed.json"
SETS_SYSCTLS = frozenset({"ip", "ifupdown", "systemd"})  # the others need the sysctl.d file
BACKUP_SUFFIX = ".multihome-backup"


class Stack(enum.Enum):
    NETWORKD = "networkd"  # netplan on networkd too: networkd drop-ins apply to its files
    NETWORKMANAGER = "networkmanager"
    IFUPDOWN = "ifupdown"
    NONE = "none"


@dataclass(frozen=True)
class Facts:
    """What manages each uplink, as read from the host."""

    networkd: dict[str, str]  # uplink -> .network file networkd uses
    networkmanager: set[str]  # uplinks NetworkManager manages
    ifupdown: set[str]  # uplinks with a stanza in /etc/network/interfaces(.d)


def manager(facts: Facts, uplink: str) -> Stack:
    if uplink in facts.networkd:
        return Stack.NETWORKD
    if uplink in facts.networkmanager:
        return Stack.NETWORKMANAGER
    if uplink in facts.ifupdown:
        return Stack.IFUPDOWN
    return Stack.NONE


def choose(facts: Facts, desired: Desired) -> tuple[list[str], list[str]]:
    """PURE: the formats to install and why. One stack for all uplinks gets its own format;
    no stack, or a mix, gets multihome.service, which covers every uplink."""
    stacks = {u.name: manager(facts, u.name) for u in desired.uplinks}
    kinds = set(stacks.values())
    reasons = [f"{name}: {stack.value}" for name, stack in sorted(stacks.items())]
    if len(kinds) == 1 and Stack.NONE not in kinds:
        chosen = [kinds.pop().value]
        if desired.sysctls and chosen[0] not in SETS_SYSCTLS:
            chosen.append("systemd-sysctl")
        return chosen, reasons
    if len(kinds) > 1:
        reasons.append("the uplinks have different managers: multihome.service covers all")
    return ["systemd"], reasons


# Where each format's files go, relative to the root.
TARGETS = {
    "ip": "etc/multihome",
    "networkd": "etc/systemd/network",
    "netplan": "etc/netplan",
    "networkmanager": "etc/multihome",
    "ifupdown": "etc/network/interfaces.d",
}


def _placed(format_name: str, rendered: Rendered) -> dict[str, tuple[str, int]]:
    """{path under root: (text, mode)} for one format's files."""
    placed = {}
    for name, text in rendered.files.items():
        mode = 0o755 if name.endswith(".sh") else 0o644
        if name == "multihome.nft":  # gateway mode's table, loaded by the unit below
            placed[f"etc/multihome/{name}"] = (text, mode)
        elif name == "multihome-nftables.service":
            placed[f"etc/systemd/system/{name}"] = (text, mode)
        elif format_name in ("systemd", "systemd-sysctl"):
            if name.endswith(".service"):
                if format_name == "systemd":
                    placed[f"etc/systemd/system/{name}"] = (text, mode)
            else:
                placed[f"etc/sysctl.d/{name}"] = (text, mode)
        else:
            mode = 0o600 if format_name == "netplan" else mode  # netplan warns otherwise
            placed[f"{TARGETS[format_name]}/{name}"] = (text, mode)
    return placed


def read_facts(state: HostState, root: str) -> Facts:
    networkd = discover.network_files(state, root)
    nm_devices = os.path.join(root, "run/NetworkManager/devices")
    nm = (
        {i.name for i in state.interfaces if os.path.exists(os.path.join(nm_devices, str(i.index)))}
        if root != "/" or namespace.is_initial()
        else set()
    )
    ifupdown: set[str] = set()
    sources = [os.path.join(root, "etc/network/interfaces")]
    directory = os.path.join(root, "etc/network/interfaces.d")
    if os.path.isdir(directory):
        sources += [
            os.path.join(directory, n) for n in sorted(os.listdir(directory)) if n != "multihome"
        ]
    for path in sources:
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as file:
                ifupdown |= set(re.findall(r"^\s*iface\s+(\S+)\s+inet", file.read(), re.M))
    return Facts(networkd, nm, ifupdown)


def _manifest(root: str) -> dict[str, dict[str, str | None]]:
    path = os.path.join(root, MANIFEST)
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except FileNotFoundError:
        return {}
    except ValueError as error:
        raise MultihomeError(f"the install manifest {path} is damaged: {error}") from None
    return {entry["path"]: entry for entry in data.get("files", [])}


def _write_manifest(
    root: str, entries: dict[str, dict[str, str | None]], formats: list[str]
) -> None:
    data = {"installed_at": time.time(), "formats": formats, "files": list(entries.values())}
    files.write_tree(root, {MANIFEST: json.dumps(data, indent=1) + "\n"})


@dataclass(frozen=True)
class Installed:
    formats: list[str]
    reasons: list[str]
    written: list[str]
    backups: list[str]
    removed: list[str]
    notes: list[str]


def install(
    desired: Desired, state: HostState, root: str, format_name: str, options: Options
) -> Installed:
    facts = read_facts(state, root)
    if format_name == "auto":
        formats, reasons = choose(facts, desired)
    else:
        formats, reasons = [format_name], [f"--format {format_name}"]
        if desired.sysctls and format_name not in SETS_SYSCTLS:
            formats.append("systemd-sysctl")
    options = Options(options.executable, {**facts.networkd, **options.network_files})
    wanted: dict[str, tuple[str, int]] = {}
    notes: list[str] = []
    renderers = registry()
    for name in formats:
        renderer, _ = renderers["systemd" if name == "systemd-sysctl" else name]
        rendered = renderer(desired, options)
        wanted.update(_placed(name, rendered))
        if name != "systemd-sysctl":
            notes += rendered.notes
    old = _manifest(root)
    entries: dict[str, dict[str, str | None]] = {}
    for relative in sorted(wanted):
        path = os.path.join(root, relative)
        backup = old.get(relative, {}).get("backup")
        if relative not in old and os.path.lexists(path):  # someone else's: kept aside
            backup = path + BACKUP_SUFFIX
        entries[relative] = {"path": relative, "backup": backup}
    units = ["multihome.service"] if "systemd" in formats else []
    if "etc/systemd/system/multihome-nftables.service" in wanted:  # gateway mode
        units.append("multihome-nftables.service")
    links = {f"etc/systemd/system/multi-user.target.wants/{unit}": unit for unit in units}
    if "multihome-nftables.service" in units:  # WantedBy=nftables.service too: a restart
        # of nftables (whose `flush ruleset` removes the table) loads it again
        links["etc/systemd/system/nftables.service.wants/multihome-nftables.service"] = (
            "multihome-nftables.service"
        )
    for link in links:  # what `systemctl enable` does, as a file, so --root works
        entries[link] = {"path": link, "backup": None}
    # The intent first: until the last step, the manifest lists every file this install
    # and the one before may have touched, so an interruption anywhere leaves a manifest
    # from which uninstall restores everything (see _remove_entry).
    _write_manifest(root, {**old, **entries}, formats)
    written, backups, removed = [], [], []
    for relative, (text, mode) in sorted(wanted.items()):
        path = os.path.join(root, relative)
        backup = entries[relative]["backup"]
        # also the move an interrupted install planned and did not make
        if backup is not None and not os.path.lexists(backup) and os.path.lexists(path):
            _move(path, backup)
            backups.append(backup)
        written += files.write_tree(root, {relative: text}, mode)
    for link, unit in links.items():
        link_path = os.path.join(root, link)
        try:
            os.makedirs(os.path.dirname(link_path), exist_ok=True)
            if not os.path.lexists(link_path):
                os.symlink(f"../{unit}", link_path)
        except OSError as error:
            raise MultihomeError(f"cannot write {link_path}: {error.strerror}") from None
        written.append(link_path)
    for relative, entry in old.items():  # ours from an earlier install, no longer wanted
        if relative not in entries:
            removed += _remove_entry(root, entry)
    _write_manifest(root, entries, formats)
    if "networkmanager" in formats:
        notes.append(
            f"run {os.path.join(root, 'etc/multihome/multihome-nmcli.sh')} once to"
            " add the routes and rules to the NetworkManager connections"
        )
    return Installed(formats, reasons, written, backups, removed, notes)


def _move(source: str, target: str) -> None:
    try:
        os.replace(source, target)
    except OSError as error:
        raise MultihomeError(f"cannot move {source} to {target}: {error.strerror}") from None


def _remove_entry(root: str, entry: dict[str, str | None]) -> list[str]:
    """Undo one entry, whatever step its install reached: a file that replaced another is
    replaced by the backup again; while there is no backup, the file there is still the
    original, and stays."""
    path = os.path.join(root, str(entry["path"]))
    backup = entry.get("backup")
    if backup:
        if os.path.lexists(backup):
            _move(backup, path)
        return [path]
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as error:
        raise MultihomeError(f"cannot remove {path}: {error.strerror}") from None
    return [path]


def uninstall(root: str) -> list[str]:
    """Remove exactly the files the manifest lists; put back what they replaced."""
    removed = []
    for entry in _manifest(root).values():
        removed += _remove_entry(root, entry)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(root, MANIFEST))
    return removed
