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

import enum
import fcntl
import json
import os
import re
import socket
import struct
import subprocess
import time

from multihome import INSTALL_MANIFEST, PROTOCOL
from multihome.core.model import TABLE_MAIN, Desired, HostState, Route, Rule, layout_key
from multihome.core.records import field, record
from multihome.errors import MultihomeError
from multihome.host import files
from multihome.kernel import discover, namespace
from multihome.render import Options, Rendered, registry

MANIFEST = INSTALL_MANIFEST
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
    no stack, or a mix, gets multihome-watch.service, which covers every uplink from the
    first address on (it starts before the network)."""
    stacks = {u.name: manager(facts, u.name) for u in desired.uplinks}
    kinds = set(stacks.values())
    reasons = [f"{name}: {stack.value}" for name, stack in sorted(stacks.items())]
    if len(kinds) == 1 and Stack.NONE not in kinds:
        chosen = [kinds.pop().value]
        if desired.sysctls and chosen[0] not in SETS_SYSCTLS:
            chosen.append("systemd-sysctl")
        return chosen, reasons
    if len(kinds) > 1:
        reasons.append(
            "the uplinks have different managers: multihome-watch.service covers all"
        )
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


Entry = dict[str, str | None]  # {"path", "backup", "content"} of one file install wrote


TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    T = TypeVar("T")


def _under(root: str, relative: str, read: Callable[[int, str], T]) -> T | None:
    """`read(dir_fd, name)` of a path under the root, walked without following links (files'
    rule); None when it is missing; a MultihomeError naming the path when it cannot be read."""
    root_fd = files.open_root(root)
    try:
        with files.directory_of(root_fd, root, relative, create=False) as (fd, name):
            return read(fd, name)
    except FileNotFoundError:
        return None
    except files.NotRegular:
        raise MultihomeError(f"{os.path.join(root, relative)} is not a regular file") from None
    except OSError as error:
        raise MultihomeError(
            f"cannot read {os.path.join(root, relative)}: {files.strerror(error)}"
        ) from None
    finally:
        os.close(root_fd)


def _text(dir_fd: int, name: str) -> bytes:
    fd, _ = files.open_regular(name, dir_fd)
    with os.fdopen(fd, "rb") as file:
        return file.read(4 << 20)


def _read(root: str, relative: str) -> str | None:
    """The text of a file under the root, read without following links; None when it is
    missing."""
    data = _under(root, relative, _text)
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise MultihomeError(f"{os.path.join(root, relative)} is not UTF-8 text") from None


CONTENT = re.compile(r"^(sha256:[0-9a-f]{64}|link:\.\./[A-Za-z0-9_.@-]+\.service)$")


def validate_manifest(root: str, data: object, where: str) -> dict[str, Entry]:
    """The manifest's entries, each field checked: it comes from a directory that may not be
    trustworthy, and uninstall deletes and moves what it lists. A path is relative, with no
    `..`; a backup is the path with the backup suffix, beside it (an older manifest spelled
    it absolute under the root); a content is a digest or the target of a link."""

    def damaged(problem: str) -> MultihomeError:
        return MultihomeError(
            f"the install manifest {where} is damaged: {problem}",
            hint="nothing was changed; remove the files by hand, or the manifest to start over",
        )

    if not isinstance(data, dict) or not isinstance(data.get("files", []), list):
        raise damaged("not an object with a list of files")
    entries: dict[str, Entry] = {}
    for number, entry in enumerate(data.get("files", []), start=1):
        if not isinstance(entry, dict):
            raise damaged(f"entry {number} is not an object")
        relative = entry.get("path")
        try:
            files.parts(relative)  # type: ignore[arg-type]
        except MultihomeError as error:
            raise damaged(f"entry {number}: {error}") from None
        assert isinstance(relative, str)
        backup = entry.get("backup")
        if backup is not None and backup not in (
            relative + BACKUP_SUFFIX,
            os.path.join(root, relative) + BACKUP_SUFFIX,
        ):
            raise damaged(f"entry {number}: backup {backup!r} is not {relative}{BACKUP_SUFFIX}")
        contents = [entry.get(key) for key in ("content", "previous") if entry.get(key) is not None]
        for content in contents:
            if not isinstance(content, str) or not CONTENT.match(content):
                raise damaged(f"entry {number}: content {content!r} is not a digest or a unit link")
        entries[relative] = {
            "path": relative,
            "backup": None if backup is None else relative + BACKUP_SUFFIX,
            "content": entry.get("content"),
            "previous": entry.get("previous"),
        }
    return entries


def _manifest(root: str) -> dict[str, Entry]:
    text = _read(root, MANIFEST)
    if text is None:
        return {}
    where = os.path.join(root, MANIFEST)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as error:  # nested past Python's limit: damaged too
        raise MultihomeError(f"the install manifest {where} is damaged: {error}") from None
    return validate_manifest(root, data, where)


@record(frozen=True)
class Manifest:
    """What an install recorded besides its files: the directories it made (uninstall
    removes them again once empty) and the layout the stack persists (layout_key of each
    rule and route: multihome recognises them as its own after a reboot)."""

    directories: list[str]
    layout: list[str]


LAYOUT_KEY = re.compile(r"(rule|route) -[46] [\x21-\x7e][\x20-\x7e]{0,300}")


def _write_manifest(
    root: str, entries: dict[str, Entry], formats: list[str], extra: Manifest
) -> None:
    listed = [
        {k: v for k, v in e.items() if v is not None or k == "backup"} for e in entries.values()
    ]
    data = {
        "installed_at": time.time(),
        "formats": formats,
        "files": listed,
        "directories": extra.directories,
        "layout": extra.layout,
    }
    files.write_tree(root, {MANIFEST: json.dumps(data, indent=1) + "\n"}, create=False)


def _recorded(root: str) -> Manifest:
    """The directories and layout the manifest lists, each checked (see validate_manifest)."""
    text = _read(root, MANIFEST)
    if text is None:
        return Manifest([], [])
    where = os.path.join(root, MANIFEST)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise MultihomeError(f"the install manifest {where} is damaged: {error}") from None
    validate_manifest(root, data, where)
    assert isinstance(data, dict)
    found = []
    for key, check in (("directories", _directory_ok), ("layout", LAYOUT_KEY.fullmatch)):
        values = data.get(key, [])
        if not isinstance(values, list) or not all(
            isinstance(v, str) and check(v) for v in values
        ):
            raise MultihomeError(
                f"the install manifest {where} is damaged: {key} is not a list of"
                + (" relative directories" if key == "directories" else " rules and routes"),
                hint="nothing was changed; remove the files by hand, or the manifest to start over",
            )
        found.append(values)
    return Manifest(found[0], found[1])


def _directory_ok(relative: str) -> bool:
    try:
        files.parts(relative)
    except MultihomeError:
        return False
    return True


def installed_layout(root: str = "/") -> frozenset[str]:
    """The layout_key of each rule and route `multihome install` persisted under the root
    (empty without an install; a damaged manifest raises)."""
    return frozenset(_recorded(root).layout)


def _owned(entry: Entry, found: str | None) -> bool:
    """Is what is there now exactly what multihome wrote (or, for an install interrupted
    before it wrote this file, what the install before it wrote)?"""
    return found is not None and found in (entry.get("content"), entry.get("previous"))


@record(frozen=True)
class Installed:
    formats: list[str]
    reasons: list[str]
    written: list[str]
    backups: list[str]
    removed: list[str]
    notes: list[str]


def _at(root: str, relative: str) -> str | None:
    """What is at the path now (files.read_at), walked without following links."""
    return _under(root, relative, files.read_at)


def install(
    desired: Desired, state: HostState, root: str, format_name: str, options: Options
) -> Installed:
    # refuse someone else's root before reading anything; a missing one is made (755)
    os.close(files.open_root(root, create=True))
    facts = read_facts(state, root)
    if format_name == "auto":
        formats, reasons = choose(facts, desired)
    else:
        formats, reasons = [format_name], [f"--format {format_name}"]
        if desired.sysctls and format_name not in SETS_SYSCTLS:
            formats.append("systemd-sysctl")
    options = Options(
        options.executable,
        {**facts.networkd, **options.network_files},
        options.kinds,
        options.writable,
        options.check_executable,
    )
    wanted: dict[str, tuple[str, int]] = {}
    notes: list[str] = []
    layout: set[str] = set()
    renderers = registry()
    for name in formats:
        renderer, _ = renderers["systemd" if name == "systemd-sysctl" else name]
        rendered = renderer(desired, options)
        wanted.update(_placed(name, rendered))
        layout |= {layout_key(obj) for obj in rendered.persisted}
        if name != "systemd-sysctl":
            notes += rendered.notes
    live_nm = "networkmanager" in formats and root == "/"
    if live_nm:  # install adds the items itself (below): no script to run
        wanted.pop(f"{TARGETS['networkmanager']}/multihome-nmcli.sh", None)
    old = _manifest(root)
    earlier_extra = _recorded(root)
    entries: dict[str, Entry] = {}
    for relative in sorted(wanted):
        found = _at(root, relative)
        content = "sha256:" + files.digest(wanted[relative][0].encode("utf-8"))
        earlier = old.get(relative)
        backup = earlier.get("backup") if earlier else None
        if earlier is None and found is not None:  # someone else's: kept aside
            backup = relative + BACKUP_SUFFIX
        elif earlier is not None and found is not None and not _owned(earlier, found):
            # an interrupted install may not have moved the original aside yet
            planned = backup is not None and _at(root, backup) is None
            if found != content and not planned:
                raise MultihomeError(
                    f"{os.path.join(root, relative)} was changed since multihome installed it;"
                    " it is left as it is",
                    hint="move it away (or put back what multihome wrote), then install again",
                )
        previous = earlier.get("content") if earlier else None
        entries[relative] = {
            "path": relative,
            "backup": backup,
            "content": content,
            "previous": previous if previous != content else None,
        }
    # the daemon, not the oneshot apply: it starts before the network and routes each
    # address by its source as it comes (apply, after network-online.target, left replies
    # unprotected for as long as the network took to come up)
    units = ["multihome-watch.service"] if "systemd" in formats else []
    if "etc/systemd/system/multihome-nftables.service" in wanted:  # gateway mode
        units.append("multihome-nftables.service")
    links = {f"etc/systemd/system/multi-user.target.wants/{unit}": unit for unit in units}
    if "multihome-nftables.service" in units:  # WantedBy=nftables.service too: a restart
        # of nftables (whose `flush ruleset` removes the table) loads it again
        links["etc/systemd/system/nftables.service.wants/multihome-nftables.service"] = (
            "multihome-nftables.service"
        )
    for link, unit in list(links.items()):  # what `systemctl enable` does, as a file
        content = f"link:../{unit}"
        found = _at(root, link)
        if found is not None and not (link in old and _owned(old[link], found)):
            del links[link]  # someone enabled it already: their link, which stays theirs
            continue
        entries[link] = {"path": link, "backup": None, "content": content, "previous": None}
    # The directories this install makes (and those an earlier one made), for uninstall
    made = set(earlier_extra.directories) | _missing_directories(root, [*entries, MANIFEST])
    extra = Manifest(sorted(made), sorted(layout | set(earlier_extra.layout)))
    # The intent first: until the last step, the manifest lists every file this install
    # and the one before may have touched, so an interruption anywhere leaves a manifest
    # from which uninstall restores everything (see _remove_entry).
    _write_manifest(root, {**old, **entries}, formats, extra)
    written, backups, removed = [], [], []
    for relative, (text, mode) in sorted(wanted.items()):
        backup = entries[relative]["backup"]
        # also the move an interrupted install planned and did not make
        if backup is not None and _at(root, backup) is None:
            found = _at(root, relative)
            if found is not None and not _owned(entries[relative], found):
                _move(root, relative, backup)
                backups.append(os.path.join(root, backup))
        written += files.write_tree(root, {relative: text}, mode, create=False)
    for link, unit in links.items():
        link_path = os.path.join(root, link)
        root_fd = files.open_root(root)
        try:
            with files.directory_of(root_fd, root, link, create=True) as (fd, name):
                if files.read_at(fd, name) is None:
                    os.symlink(f"../{unit}", name, dir_fd=fd)
        except OSError as error:
            raise MultihomeError(f"cannot write {link_path}: {error.strerror}") from None
        finally:
            os.close(root_fd)
        written.append(link_path)
    for relative, entry in old.items():  # ours from an earlier install, no longer wanted
        if relative not in entries:
            gone, _ = _remove_entry(root, entry)
            removed += gone
    extra = Manifest(extra.directories, sorted(layout))
    _write_manifest(root, {k: {**e, "previous": None} for k, e in entries.items()}, formats, extra)
    if live_nm:
        notes += install_networkmanager(desired, root)
    elif "networkmanager" in formats:
        notes.append(
            f"run {os.path.join(root, 'etc/multihome/multihome-nmcli.sh')} once to"
            " add the routes and rules to the NetworkManager connections"
        )
    return Installed(formats, reasons, written, backups, removed, notes)


def _missing_directories(root: str, paths: list[str]) -> set[str]:
    """The directories (relative to the root) that writing these files would make."""
    missing = set()
    for relative in paths:
        parent = os.path.dirname(relative)
        while parent and parent not in missing:
            if _under(root, parent, _exists) is not None:
                break
            missing.add(parent)
            parent = os.path.dirname(parent)
    return missing


def _exists(dir_fd: int, name: str) -> bool:
    os.stat(name, dir_fd=dir_fd, follow_symlinks=False)  # FileNotFoundError: missing
    return True


def _remove_directories(root: str, directories: list[str]) -> list[str]:
    """Remove the directories install made that are empty now, deepest first (one that
    holds anything, whoever put it there, stays)."""
    removed = []
    for relative in sorted(directories, key=lambda d: d.count("/"), reverse=True):
        root_fd = files.open_root(root)
        try:
            with files.directory_of(root_fd, root, relative, create=False) as (fd, name):
                os.rmdir(name, dir_fd=fd)
            removed.append(os.path.join(root, relative))
        except (OSError, MultihomeError):  # missing, not empty, or not a directory: stays
            pass
        finally:
            os.close(root_fd)
    return removed


def _move(root: str, source: str, target: str) -> None:
    """Rename one file to another in the same directory under the root (a backup and its
    file), by the files' rule."""
    root_fd = files.open_root(root)
    try:
        with files.directory_of(root_fd, root, source, create=False) as (fd, name):
            if os.path.dirname(source) != os.path.dirname(target):
                raise MultihomeError(f"refusing to move {source} out of its directory")
            os.replace(name, os.path.basename(target), src_dir_fd=fd, dst_dir_fd=fd)
    except OSError as error:
        raise MultihomeError(
            f"cannot move {os.path.join(root, source)} to {os.path.join(root, target)}:"
            f" {error.strerror}"
        ) from None
    finally:
        os.close(root_fd)


def _remove_entry(root: str, entry: Entry) -> tuple[list[str], list[str]]:
    """Undo one entry, whatever step its install reached: a file that replaced another is
    replaced by the backup again; while there is no backup, the file there is still the
    original, and stays. A file that is not what multihome wrote (changed since, or
    someone else's) is kept. Returns (removed, kept)."""
    relative = str(entry["path"])
    path = os.path.join(root, relative)
    found = _at(root, relative)
    backup = entry.get("backup")
    if backup and _at(root, backup) is not None:
        if found is None or _owned(entry, found):
            _move(root, backup, relative)
            return [path], []
        return [], [f"{path} (changed since multihome wrote it; the original is {backup})"]
    if found is None:
        return [path], []
    if not _owned(entry, found):
        return [], [f"{path} (not what multihome wrote)"]
    root_fd = files.open_root(root)
    try:
        with files.directory_of(root_fd, root, relative, create=False) as (fd, name):
            os.unlink(name, dir_fd=fd)
    except FileNotFoundError:
        pass
    except OSError as error:
        raise MultihomeError(f"cannot remove {path}: {error.strerror}") from None
    finally:
        os.close(root_fd)
    return [path], []


@record(frozen=True)
class Uninstalled:
    removed: list[str]
    kept: list[str]  # listed in the manifest, but not (or no longer) what multihome wrote
    directories: list[str] = field(default_factory=list)  # made by install, empty: removed
    kernel: list[str] = field(default_factory=list)  # the stack's objects taken out (live)


def uninstall(root: str) -> Uninstalled:
    """Remove exactly the files the manifest lists, each only if it is what install wrote;
    put back what they replaced; take out of NetworkManager's connections exactly the items
    install added to them."""
    os.close(files.open_root(root))  # refuse someone else's root before reading anything
    entries = _manifest(root)
    extra = _recorded(root)
    removed = uninstall_networkmanager(root)
    kept: list[str] = []
    for entry in entries.values():
        gone, stays = _remove_entry(root, entry)
        removed += gone
        kept += stays
    _remove_entry(root, {"path": MANIFEST, "backup": None, "content": _at(root, MANIFEST)})
    kernel = _take_layout_out(frozenset(extra.layout)) if root == "/" and extra.layout else []
    if root == "/" and any(str(e["path"]).endswith(NFT_UNIT) for e in entries.values()):
        kernel += _take_tables_out()  # what the removed multihome-nftables.service loaded
    return Uninstalled(removed, kept, _remove_directories(root, extra.directories), kernel)


NFT_UNIT = "multihome-nftables.service"


def _take_tables_out() -> list[str]:
    """On the live host: multihome's nftables tables (inet and arp), which the unit just
    removed loaded at boot and would keep until the next one."""
    from multihome.core import sourcemarks
    from multihome.kernel import nfnetlink, nftables

    if nfnetlink.exists() is False:
        return []
    nftables.run_script(sourcemarks.script(None, reset_arp=True))
    return ["nftables: table inet multihome, table arp multihome"]


# the kernel's own tables and rules: never multihome's, whatever a manifest says
SYSTEM_TABLES = (253, 254, 255)  # default, main, local
RTPROT_STATIC = 4  # what networkd and NetworkManager give the routes they write
SYSTEM_PRIORITIES = (0, 32766, 32767)


def _could_be_ours(obj: Rule | Route) -> bool:
    """Whether an object could be one multihome persisted: no route of the kernel's own
    tables, none of the kernel's own rules (a manifest is read back as untrusted). In main,
    only an IPv6 route from a prefix (the layout of an uplink alone on it) with the protocol
    a stack or multihome gives it: an admin's route with the same arguments (`ip route add`
    says `proto boot`) or a routing daemon's is not taken with the stack's files."""
    if isinstance(obj, Rule):  # (a rule may look up main: `suppress_prefixlength 0`)
        return obj.priority not in SYSTEM_PRIORITIES
    if obj.table == TABLE_MAIN:
        return obj.source is not None and obj.protocol in (RTPROT_STATIC, PROTOCOL)
    return obj.table not in SYSTEM_TABLES


def _take_layout_out(layout: frozenset[str]) -> list[str]:
    """On the live host: delete the rules and routes the stack put in the kernel from the
    files just removed (it would keep them until the next boot), and say which. A stack
    that takes its own out meanwhile (NetworkManager's reapply) is allowed for: what is
    gone when the write fails is read again, once."""
    from multihome.core.model import Action, Change
    from multihome.errors import KernelError
    from multihome.kernel import writer

    for attempt in (1, 2):
        host = discover.read_state()
        present: list[Rule | Route] = [*host.rules, *host.routes]  # rules before their routes
        changes = [
            Change(Action.DELETE, obj)
            for obj in present
            if layout_key(obj) in layout and _could_be_ours(obj)
        ]
        try:
            if changes:
                writer.apply(changes, host)
        except KernelError:
            if attempt == 2:
                raise
            time.sleep(0.5)
            continue
        break
    return [c.describe()[2:] for c in changes]


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
    """Whether NetworkManager manages this interface (in this namespace: same MAC). A name
    nmcli would misread is not asked about: such an uplink takes another format."""
    from multihome.render.networkmanager import nmcli_takes

    if not nmcli_takes(ifname):
        return False
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
    """The NetworkManager manifest's records, each field checked (see validate_manifest)."""
    where = os.path.join(root, NM_MANIFEST)
    text = _read(root, NM_MANIFEST)
    if text is None:
        return []
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as error:  # nested past Python's limit: damaged too
        raise MultihomeError(f"the install manifest {where} is damaged: {error}") from None
    records = data.get("connections", []) if isinstance(data, dict) else None
    if not isinstance(records, list) or not all(_nm_record_ok(r) for r in records):
        raise MultihomeError(
            f"the install manifest {where} is damaged: not a list of connection records",
            hint="nothing was changed; take the items out with nmcli by hand",
        )
    return records


def _nm_record_ok(record: object) -> bool:
    if not isinstance(record, dict):
        return False
    added = record.get("added")
    return (
        all(isinstance(record.get(k), str) for k in ("uplink", "connection"))
        and isinstance(added, dict)
        and all(
            p in NM_PROPERTIES and isinstance(vs, list) and all(isinstance(v, str) for v in vs)
            for p, vs in added.items()
        )
    )


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
        files.write_tree(
            root, {NM_MANIFEST: json.dumps({"connections": records}, indent=1)}, create=False
        )
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
    if records:
        _remove_entry(
            root, {"path": NM_MANIFEST, "backup": None, "content": _at(root, NM_MANIFEST)}
        )
    return done


def _tables_in_use(tables: set[int]) -> bool:
    state = discover.read_state()
    return any(r.table in tables for r in state.routes) or any(
        r.table in tables for r in state.rules
    )
