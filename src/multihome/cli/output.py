"""How the commands print: JSON for automation, aligned tables and change lines for people."""

from __future__ import annotations

from collections.abc import Sequence

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:  # every command imports this module; only some need the model
    from typing import Any

    from multihome.core.model import Change, Desired

EXIT_OK, EXIT_PENDING, EXIT_ERROR = 0, 1, 2


def with_user_options(hint: str, args: Any) -> str:
    """A hint's or a fix's `multihome COMMAND` with the options the user gave (--netns, -c),
    so that it works when pasted."""
    import shlex

    options = ""
    netns = getattr(args, "netns", None)
    if netns:
        options += f" --netns {shlex.quote(netns)}"
    if getattr(args, "config", None):
        options += f" -c {shlex.quote(args.config)}"
    if not options:
        return hint
    import re

    commands = "|".join(_COMMAND_WORDS)
    hint = re.sub(rf"\bmultihome (?=(?:{commands})\b)", f"multihome{options} ", hint)
    if netns:  # a sysctl or `ip` pasted as it is would act on the host's own namespace
        hint = re.sub(r"\bsysctl -w\b", f"ip netns exec {shlex.quote(netns)} sysctl -w", hint)
        hint = re.sub(_IP_COMMAND, f"ip -n {shlex.quote(netns)} ", hint)
    return hint


# an `ip` command in a hint or fix (`ip -4 rule del ...`, `ip -br link`), not `ip netns`
_IP_COMMAND = r"(?<![\w.-])ip (?=(?:-\w+ )*(?:rule|route|link|addr|address|neigh)\b)"


# the commands a hint or a doctor's fix may name (not "[multihome] priority" or a unit name)
_COMMAND_WORDS = (
    "apply",
    "remove",
    "confirm",
    "plan",
    "show",
    "doctor",
    "install",
    "uninstall",
    "status",
    "export",
    "watch",
    "counters",
)


def plain(value: Any) -> Any:
    """JSON-ready form of model objects."""
    import enum
    import ipaddress

    from multihome.core.records import asdict, is_record

    if is_record(value) and not isinstance(value, type):
        return {k: plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, enum.IntEnum):
        return int(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(
        value,
        ipaddress.IPv4Address
        | ipaddress.IPv6Address
        | ipaddress.IPv4Network
        | ipaddress.IPv6Network
        | ipaddress.IPv4Interface
        | ipaddress.IPv6Interface,
    ):
        return str(value)
    return value


def print_json(data: Any) -> None:
    import json

    print(json.dumps(plain(data), indent=2))


def change_json(change: Change) -> dict[str, Any]:
    from multihome.core.model import Route, Rule
    from multihome.render import ip as render_ip

    obj = change.obj
    kind = "sysctl" if not isinstance(obj, Rule | Route) else type(obj).__name__.lower()
    return {
        "action": change.action.value,
        "kind": kind,
        "object": plain(obj),
        "previous": change.previous,
        "command": render_ip.command(change),
    }


def table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def uplink_rows(desired: Desired) -> list[list[str]]:
    from multihome.render import uplink_tables

    rows = [["UPLINK", "TABLE", "ADDRESSES", "RULES SELECT", "IPv4 GATEWAY", "IPv6 GATEWAY"]]
    for u in desired.uplinks:
        rows.append(
            [
                u.name,
                ", ".join(uplink_tables(desired, u)),
                ", ".join(str(a.ip) for a in u.addresses),
                _sources(u.sources, u.sources_why),
                f"{u.gateway4} ({u.source4.value})" if u.gateway4 else "-",
                f"{u.gateway6} ({u.source6.value})" if u.gateway6 else "-",
            ]
        )
    return rows


def _sources(prefixes: tuple[object, ...], why: str) -> str:
    """An uplink's source selectors, the first few and how many more, and why."""
    shown = ", ".join(str(p) for p in prefixes[:3])
    if len(prefixes) > 3:
        shown += f" and {len(prefixes) - 3} more"
    return f"{shown or '-'} ({why})" if why else shown or "-"


def count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")
