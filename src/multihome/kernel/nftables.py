"""The only module that writes nftables: multihome's own table, replaced whole.

It runs nft(8): `nft -f -` with input from gateway.replace_script, which creates, deletes and
re-adds `table inet multihome` in one file, and nft sends one file as one netlink batch -- the
kernel applies all of it or none. It never flushes the ruleset and never names another table.
The sets of source addresses (sourcemarks.py) are filled in the same file; when only their
elements differ from the plan (an address came or went), only those elements are added or
deleted, again in one transaction.
Reading (`nft -j list ...`) is here too, for the plan and the overlap check.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from typing import Any

from multihome.core import gateway, sourcemarks
from multihome.core.model import GatewayLayout
from multihome.core.records import field, record
from multihome.errors import KernelError, MultihomeError, PrivilegeError
from multihome.kernel import tools

NFT = "nft"
TIMEOUT = 30


def _nft() -> str:
    return tools.require(
        NFT, "gateway mode", hint="apt-get install nftables (or dnf install nftables)"
    )


def _run(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return tools.run(_nft(), args, TIMEOUT, stdin)


@record(frozen=True)
class Table:
    """multihome's table as it is now: whether it exists, and its listing."""

    exists: bool
    text: str = ""
    shape: dict[str, int] = field(default_factory=dict)  # chains' rule counts, sets
    content: str = ""  # digest of its chains, rules, sets and maps as the kernel has them
    elements: dict[str, set[str]] = field(default_factory=dict)  # source sets' addresses

    @property
    def comment(self) -> str:
        # `nft -j` (1.0.6) leaves a table's comment out; the listing has it.
        found = re.search(r'^\s*comment "([^"]*)"', self.text, re.MULTILINE)
        return found.group(1) if found else ""


def ruleset() -> Any:
    """`nft -j list ruleset`, parsed (read only)."""
    result = _run(["-j", "list", "ruleset"])
    if result.returncode != 0:
        if "Operation not permitted" in result.stderr:
            raise PrivilegeError("reading the nftables ruleset was refused", "run as root")
        raise MultihomeError(f"nft -j list ruleset failed: {result.stderr.strip()}")
    if not result.stdout.strip():
        return {"nftables": []}
    try:
        return json.loads(result.stdout)
    except ValueError as error:  # nft 1.0.6 cuts its JSON short at a table with `flags owner`
        raise MultihomeError(
            f"nft -j list ruleset printed invalid JSON ({error})",
            hint="a table with `flags owner` trips nft 1.0.6; see `nft list ruleset`",
        ) from None


def current(rules: Any) -> Table:
    """multihome's table, if the parsed ruleset has it (or its ARP table: sourcemarks.py)."""
    families = {
        table.get("family")
        for item in rules.get("nftables", [])
        if isinstance(item, dict)
        and isinstance(table := item.get("table"), dict)
        and table.get("name") == gateway.TABLE
    }
    if not families & {gateway.FAMILY, "arp"}:
        return Table(False)
    return Table(
        True,
        listing(gateway.FAMILY in families, "arp" in families),
        gateway.live_shape(rules),
        content(rules),
        source_elements(rules),
    )


def _is_source_set(body: dict[str, Any]) -> bool:
    return str(body.get("name", "")).startswith(sourcemarks.SET_PREFIX)


def source_elements(rules: Any) -> dict[str, set[str]]:
    """PURE: the elements of multihome's source sets in a parsed `nft -j list ruleset`, by
    "FAMILY NAME" (its inet table's and its ARP table's)."""
    found: dict[str, set[str]] = {}
    for item in rules.get("nftables", []) if isinstance(rules, dict) else []:
        body = item.get("set") if isinstance(item, dict) else None
        if (
            isinstance(body, dict)
            and body.get("table") == gateway.TABLE
            and body.get("family") in (gateway.FAMILY, "arp")
            and _is_source_set(body)
        ):
            found[f"{body['family']} {body['name']}"] = {
                str(e) for e in body.get("elem", ()) if not isinstance(e, dict)
            }
    return found


# What changes in multihome's table without anyone editing it: handles (renumbered by
# every replace), counters' figures, and the elements of sets the packet path fills.
_VOLATILE = ("handle", "packets", "bytes")


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        flags = value.get("flags", ())
        # (the source sets' elements are compared one by one: Table.elements)
        dynamic = "dynamic" in flags or "timeout" in flags or _is_source_set(value)
        return {
            key: _stable(item)
            for key, item in value.items()
            if key not in _VOLATILE and not (key == "elem" and dynamic)
        }
    if isinstance(value, list):
        return [_stable(item) for item in value]
    return value


def content(rules: Any) -> str:
    """PURE: a digest of multihome's table in a parsed `nft -j list ruleset` (or `list
    table`): every chain, rule, set, map and named object as the kernel returns it, less
    what the packet path changes. Two listings of the same content give the same digest;
    any edit to a rule's expressions changes it."""
    mine = []
    for item in rules.get("nftables", []) if isinstance(rules, dict) else []:
        for kind, body in item.items() if isinstance(item, dict) else ():
            if not isinstance(body, dict) or body.get("family") != gateway.FAMILY:
                continue
            if body.get("table" if kind != "table" else "name") == gateway.TABLE:
                mine.append({kind: _stable(body)})
    return hashlib.sha256(json.dumps(mine, sort_keys=True).encode()).hexdigest()


def content_now() -> str:
    """The digest of multihome's table as the kernel has it now ("" when there is none)."""
    result = _run(["-j", "list", "table", gateway.FAMILY, gateway.TABLE])
    if result.returncode != 0 or not result.stdout.strip():
        return ""
    try:
        return content(json.loads(result.stdout))
    except ValueError:
        return ""


def listing(inet: bool = True, arp: bool = False) -> str:
    """The table as `nft list table inet multihome` prints it ("" when there is none), and
    with `arp` its ARP table after it (sourcemarks.py)."""
    text = ""
    for family, wanted in ((gateway.FAMILY, inet), ("arp", arp)):
        result = _run(["list", "table", family, gateway.TABLE]) if wanted else None
        if result is not None and result.returncode == 0:
            text += result.stdout
    return text


@record(frozen=True)
class TableChange:
    """Replace multihome's table with the layout's, or delete it (layout None); or, with
    `elements`, only add and delete elements of its source sets (`undo_elements` undoes)."""

    layout: GatewayLayout | None
    previous: str  # the table as it was (nft list), "" if there was none
    elements: tuple[str, ...] = ()  # nft lines: the source sets' elements alone change
    undo_elements: tuple[str, ...] = ()

    def script(self) -> str:
        if self.elements:
            return "\n".join(self.elements) + "\n"
        return sourcemarks.script(self.layout, reset_arp=True)

    def describe(self) -> str:
        if self.layout is None:
            return f"- nftables table {gateway.FAMILY} {gateway.TABLE}"
        if self.elements:  # `add element inet multihome src4_1 { a, b }`, ...
            names = sorted({line.split(" ")[4] for line in self.elements})
            inet = [line for line in self.elements if line.split(" ")[2] == gateway.FAMILY]
            added = sum(line.count(",") + 1 for line in inet if line.startswith("add"))
            deleted = sum(line.count(",") + 1 for line in inet) - added
            return (
                f"~ nftables sets {', '.join(names)} of multihome's tables: +{added} -{deleted}"
                " addresses"
            )
        verb = "~" if self.previous else "+"
        marks = [f"{n} 0x{v:08x}" for n, v in self.layout.marks]
        sets = self.layout.sources.sets if self.layout.sources is not None else ()
        marks += [f"{s.uplink} 0x{s.mark:08x} (set {s.name})" for s in sets]
        return f"{verb} nftables table {gateway.FAMILY} {gateway.TABLE} (marks {', '.join(marks)})"

    def inverse(self) -> str:
        """`nft -f` input that puts the table back as it was."""
        if self.elements:
            return "\n".join(self.undo_elements) + "\n"
        lines = [f"table {gateway.FAMILY} {gateway.TABLE}"]
        lines.append(f"delete table {gateway.FAMILY} {gateway.TABLE}")
        lines += [f"table arp {gateway.TABLE}", f"delete table arp {gateway.TABLE}"]
        if self.previous:
            lines.append(self.previous)
        return "\n".join(lines) + "\n"


def change_for(layout: GatewayLayout | None, table: Table, written: str = "") -> TableChange | None:
    """What to do to the table, or None when it is already as planned. `written`: the
    content digest of the table as multihome last wrote it (read back from the kernel);
    a table whose content differs was edited by someone else."""
    if layout is None:
        return TableChange(None, table.text) if table.exists else None
    if (
        table.exists
        and table.comment == gateway.comment(layout)
        and table.shape == gateway.shape(layout)
        and (not written or table.content == written)
    ) and table.elements.keys() == sourcemarks.elements(layout.sources).keys():
        forward, backward = sourcemarks.element_changes(layout.sources, table.elements)
        if not forward:
            return None
        return TableChange(layout, table.text, tuple(forward), tuple(backward))
    return TableChange(layout, table.text)


def run_script(script: str) -> None:
    """Hand one file to nft: one transaction, all of it or nothing."""
    result = _run(["-f", "-"], stdin=script)
    if result.returncode != 0:
        reason = result.stderr.strip().splitlines()
        if os.geteuid() != 0 and any("Operation not permitted" in line for line in reason):
            raise PrivilegeError("changing nftables needs CAP_NET_ADMIN", "run as root")
        raise KernelError(
            "nftables refused multihome's table: " + " / ".join(reason[:4]),
            hint="nothing was changed in nftables",
        )


def counters() -> dict[str, tuple[int, int]]:
    """The named counters of multihome's table: name -> (packets, bytes). One small
    listing (the kernel keeps the figures), however many connections there are."""
    result = _run(["-j", "list", "counters", "table", gateway.FAMILY, gateway.TABLE])
    if result.returncode != 0:
        raise MultihomeError(f"nft list counters failed: {result.stderr.strip()}")
    try:
        items = json.loads(result.stdout or "{}").get("nftables", [])
    except ValueError as error:
        raise MultihomeError(f"nft list counters printed invalid JSON ({error})") from None
    found: dict[str, tuple[int, int]] = {}
    for item in items:
        body = item.get("counter") if isinstance(item, dict) else None
        if isinstance(body, dict) and body.get("table") == gateway.TABLE:
            found[str(body.get("name"))] = (int(body.get("packets", 0)), int(body.get("bytes", 0)))
    return found


def forget_pairs(set_name: str) -> None:
    """host-pair: empty one uplink's set of pairs (it died: its pairs may move)."""
    result = _run(["flush", "set", gateway.FAMILY, gateway.TABLE, set_name])
    if result.returncode != 0:
        raise KernelError(f"nft flush set {set_name} failed: {result.stderr.strip()}")


def apply(change: TableChange) -> None:
    run_script(change.script())


def undo(change: TableChange) -> None:
    run_script(change.inverse())
