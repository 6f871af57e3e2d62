"""`multihome install` / `uninstall`: put the rendered files where the host's network stack
reads them, and take exactly those away again.

Which stack manages the uplinks is read from the host (under --root): systemd-networkd's link
state, NetworkManager's device state, ifupdown's interfaces files. The choice itself is a pure
function of those facts (`choose`). Every file written is recorded in a manifest with the
backup of anything it replaced, before any file is touched, so that an install interrupted
at any step can be undone; uninstall removes what the manifest lists and puts the backups
back. Files multihome did not write are never edited.

NetworkManager keeps routes and rules in its connections, so on a live host (root /) install
adds multihome's items to each uplink's connection through nmcli, reapplies it, and records
in a manifest of its own exactly the items it added (as NetworkManager spells them); uninstall
removes those items and nothing else.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import json
import os
import re
import socket
import struct
import subprocess
import time

from multihome.core.model import Desired, HostState
from multihome.core.records import record
from multihome.errors import MultihomeError
from multihome.host import files
from multihome.kernel import discover, namespace
from multihome.render import Options, Rendered, registry

MANIFEST = "var/lib/multihome/installed.json"
NM_MANIFEST = "var/lib/multihome/networkmanager.json"  # the connection items install added
SETS_SYSCTLS = frozenset({"ip", "ifupdown", "systemd"})  # the others need the sysctl.d file
BACKUP_SUFFIX = ".multihome-backup"


class Stack(enum.Enum):
    NETWORKD = "networkd"  # netplan on networkd too: networkd drop-ins apply to its files
    NETWORKMANAGER = "networkmanager"
    IFUPDOWN = "ifupdown"
    NONE = "none"


@record(frozen=True)
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
    nm = {
        i.name for i in state.interfaces if os.path.exists(os.path.join(nm_devices, str(i.index)))
    }
    if root == "/" and not namespace.is_initial():
        # /run may be the host's: count a device only if the NetworkManager we can talk to
        # has it with this very MAC address (then it runs in this network namespace)
        nm = {name for name in nm if _nm_manages_here(name)}
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


@record(frozen=True)
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
    live_nm = "networkmanager" in formats and root == "/"
    if live_nm:  # install adds the items itself (below): no script to run
        wanted.pop(f"{TARGETS['networkmanager']}/multihome-nmcli.sh", None)
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
    if live_nm:
        notes += install_networkmanager(desired, root)
    elif "networkmanager" in formats:
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
    """Remove exactly the files the manifest lists; put back what they replaced; take out of
    NetworkManager's connections exactly the items install added to them."""
    removed = uninstall_networkmanager(root)
    for entry in _manifest(root).values():
        removed += _remove_entry(root, entry)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(root, MANIFEST))
    return removed


# -- NetworkManager, live ----------------------------------------------------------------------

NM_PROPERTIES = ("ipv4.routes", "ipv6.routes", "ipv4.routing-rules", "ipv6.routing-rules")
SIOCGIFHWADDR = 0x8927


def _nmcli(*args: str) -> str:
    try:
        result = subprocess.run(
            ["nmcli", *args], capture_output=True, text=True, timeout=60, check=False
        )
    except FileNotFoundError:
        raise MultihomeError(
            "nmcli not found, but NetworkManager manages the uplinks",
            hint="install NetworkManager's nmcli, or use --format systemd",
        ) from None
    if result.returncode != 0:
        raise MultihomeError(
            f"nmcli {' '.join(args)} failed: {result.stderr.strip() or result.returncode}",
            hint="see `nmcli general status`; nothing after this step was changed",
        )
    return result.stdout


def _nm_list(text: str) -> list[str]:
    """A list property as `nmcli -g` prints it: ', '-separated, ':' escaped."""
    text = text.strip()
    return [v.replace("\\:", ":") for v in text.split(", ")] if text else []


def _mac(ifname: str) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        info = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, struct.pack("256s", ifname.encode()[:15]))
    return ":".join(f"{b:02x}" for b in info[18:24])


def _nm_manages_here(ifname: str) -> bool:
    try:
        hwaddr = _nmcli("-g", "GENERAL.HWADDR", "device", "show", ifname)
        return hwaddr.strip().replace("\\:", ":").lower() == _mac(ifname)
    except (MultihomeError, OSError):
        return False


def _nm_connection(uplink: str) -> tuple[str, str]:
    """The UUID and name of the connection active on the uplink."""
    uuid = _nmcli("-g", "GENERAL.CON-UUID", "device", "show", uplink).strip()
    if not uuid:
        raise MultihomeError(
            f"NetworkManager manages {uplink} but no connection is active on it",
            hint=f"activate one first: nmcli device connect {uplink}",
        )
    return uuid, _nmcli("-g", "connection.id", "connection", "show", "uuid", uuid).strip()


def _nm_values(uuid: str) -> dict[str, list[str]]:
    return {
        prop: _nm_list(_nmcli("-g", prop, "connection", "show", "uuid", uuid))
        for prop in NM_PROPERTIES
    }


def _nm_records(root: str) -> list[dict[str, object]]:
    try:
        with open(os.path.join(root, NM_MANIFEST), encoding="utf-8") as file:
            data = json.load(file)
    except FileNotFoundError:
        return []
    except ValueError as error:
        raise MultihomeError(f"the install manifest {NM_MANIFEST} is damaged: {error}") from None
    return list(data.get("connections", []))


def _nm_take_out(record: dict[str, object]) -> int:
    """Remove a record's items from its connection (those still there); reapply it if it is
    active. Returns how many were removed."""
    uuid, uplink = str(record["connection"]), str(record["uplink"])
    added: dict[str, list[str]] = record["added"]  # type: ignore[assignment]
    try:
        current = _nm_values(uuid)
    except MultihomeError:  # the connection is gone: nothing of ours is left in it
        return 0
    gone = [(p, v) for p, vs in added.items() for v in vs if v in current.get(p, [])]
    args = [a for p, v in gone for a in (f"-{p}", v)]
    if args:
        _nmcli("connection", "modify", "uuid", uuid, *args)
        active = _nmcli("-g", "GENERAL.CON-UUID", "device", "show", uplink).strip()
        if active == uuid:
            _nmcli("device", "reapply", uplink)
    return len(args) // 2


def install_networkmanager(desired: Desired, root: str) -> list[str]:
    """Add multihome's routes and rules to each uplink's active connection and reapply it;
    record what was added (items from an earlier install are replaced). Returns notes."""
    from multihome.render import networkmanager

    old = {(str(r["uplink"]), str(r["connection"])): r for r in _nm_records(root)}
    records: list[dict[str, object]] = []
    notes = []
    for uplink, listed in networkmanager.items(desired).items():
        uuid, name = _nm_connection(uplink)
        earlier: dict[str, list[str]] = old.pop((uplink, uuid), {}).get("added", {})  # type: ignore[assignment]
        before = {
            p: [v for v in vs if v not in earlier.get(p, [])] for p, vs in _nm_values(uuid).items()
        }
        args = [a for p, vs in earlier.items() for v in vs for a in (f"-{p}", v)]
        args += [a for p, v in listed for a in (f"+{p}", v)]
        _nmcli("connection", "modify", "uuid", uuid, *args)
        after = _nm_values(uuid)
        added = {p: [v for v in after[p] if v not in before[p]] for p in NM_PROPERTIES}
        records.append({"uplink": uplink, "connection": uuid, "name": name, "added": added})
        # record before reapplying: a failed reapply must still be undone by uninstall
        files.write_tree(root, {NM_MANIFEST: json.dumps({"connections": records}, indent=1)})
        _nmcli("device", "reapply", uplink)
        count = sum(len(v) for v in added.values())
        notes.append(f"NetworkManager connection {name!r} ({uplink}): {count} items added")
    for entry in old.values():  # from an earlier install, for a connection no longer used
        _nm_take_out(entry)
    return notes


def uninstall_networkmanager(root: str, settle: float = 0.0) -> list[str]:
    """Take out of the connections the items install added, as the manifest lists them.
    With `settle`, wait up to that many seconds until NetworkManager has taken them out of
    the kernel too (its reapply is asynchronous), so that a plan made next sees their tables
    free."""
    done = []
    tables: set[int] = set()
    records = _nm_records(root)
    for entry in records:
        count = _nm_take_out(entry)
        added: dict[str, list[str]] = entry["added"]  # type: ignore[assignment]
        for value in (v for values in added.values() for v in values):
            tables |= {int(t) for t in re.findall(r"\btable[= ](\d+)", value)}
        done.append(
            f"NetworkManager connection {entry.get('name', entry['connection'])!r}"
            f" ({entry['uplink']}): {count} items"
        )
    tables.discard(254)  # main: the shared rule's table holds everyone's routes
    deadline = time.monotonic() + settle
    while records and settle and _tables_in_use(tables):
        if time.monotonic() > deadline:
            raise MultihomeError(
                f"NetworkManager did not take multihome's earlier routes and rules out of"
                f" tables {', '.join(map(str, sorted(tables)))} within {settle:.0f} s",
                hint="see `nmcli device status`; then run the command again",
            )
        time.sleep(0.05)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(root, NM_MANIFEST))
    return done


def _tables_in_use(tables: set[int]) -> bool:
    state = discover.read_state()
    return any(r.table in tables for r in state.routes) or any(
        r.table in tables for r in state.rules
    )
