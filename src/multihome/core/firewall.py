"""PURE: the host's firewall as it is, read into records: its NAT rules (DNAT, SNAT,
MASQUERADE) and who else uses packet and connection marks.

Docker, Podman's iptables backend, libvirt and kube-proxy write iptables rules. With
iptables-nft they live in nftables, but `nft -j list ruleset` shows their DNAT, SNAT, MARK and
CONNMARK only as opaque `xt` expressions; `iptables-save` prints them. So the firewall is the
union of three readings (kernel/firewall.py runs the tools): `iptables-save` and
`ip6tables-save` (iptables-nft), their `-legacy` forms (the legacy tables, beside), and native
nftables from `nft -j list ruleset`, whose tables of iptables-nft are left to iptables-save.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Iterator

from multihome.core.model import IPAddress
from multihome.core.records import record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

ALL = 0xFFFFFFFF
OWN_TABLE = "multihome"  # multihome's own nft table, never another's mark user
# the tables iptables-nft makes in nftables (family ip or ip6), read from iptables-save instead
IPTABLES_TABLES = frozenset({"filter", "nat", "mangle", "raw", "security"})


class Source(enum.Enum):
    """Which tool a rule was read with."""

    IPTABLES_NFT = "iptables-nft"
    IPTABLES_LEGACY = "iptables-legacy"
    NFT = "nft"


class NatAction(enum.Enum):
    DNAT = "DNAT"
    SNAT = "SNAT"
    MASQUERADE = "MASQUERADE"


@record(frozen=True)
class NatRule:
    """A NAT rule of other software: where it is, what it matches on and where it sends."""

    source: Source
    family: int  # 4 or 6
    table: str
    chain: str
    action: NatAction
    to: str = ""  # --to-destination / --to-source (or nft's address), as written
    in_interface: str | None = None  # `-i NAME` (`+` at the end: a prefix); None: any
    in_negated: bool = False  # `! -i NAME`
    local_only: bool = False  # in an output hook: it sees only local sockets' connections
    text: str = ""  # the rule as its tool prints it

    @property
    def where(self) -> str:
        return printable(f"{self.source.value}, table {self.table}, chain {self.chain}")

    @property
    def address(self) -> IPAddress | None:
        """The first address it translates to (no port, no range), or None."""
        text = self.to.split("-", 1)[0]
        if text.startswith("["):  # [2001:db8::2]:80
            text = text[1:].split("]", 1)[0]
        elif text.count(":") == 1:  # 172.17.0.2:80
            text = text.split(":", 1)[0]
        try:
            return ipaddress.ip_address(text)
        except ValueError:
            return None

    def matches_in(self, ifname: str) -> bool:
        """Whether a packet arriving on `ifname` passes its interface match."""
        if self.in_interface is None:
            return True
        name = self.in_interface
        same = ifname.startswith(name[:-1]) if name.endswith("+") else ifname == name
        return same != self.in_negated


@record(frozen=True)
class MarkUser:
    """A rule of other software that matches or changes packet or connection marks."""

    source: Source
    table: str
    chain: str
    bits: int  # the mark bits it reads or writes
    text: str = ""
    family: str = ""  # nft's table family (ip, ip6, inet, ...); "" for iptables

    def describe(self, mask: int) -> str:
        """One line for the user, naming the rule and the bits of `mask` it uses."""
        if self.source is Source.NFT:
            where = f"table {self.family} {self.table} chain {self.chain}"
        else:
            where = f"{self.source.value} table {self.table} chain {self.chain} (`{self.text}`)"
        return printable(f"{where} uses mark bits 0x{self.bits & mask:08x}")


@record(frozen=True)
class Firewall:
    """What was read of the host's firewall, and with which tools."""

    nat: tuple[NatRule, ...] = ()
    marks: tuple[MarkUser, ...] = ()
    read: tuple[str, ...] = ()  # the tools that answered ("iptables-save", "nft", ...)
    unreadable: tuple[str, ...] = ()  # installed, but they failed (not root, a timeout)

    def dnat(self) -> list[NatRule]:
        """The DNAT rules that can see connections arriving from outside."""
        return [r for r in self.nat if r.action is NatAction.DNAT and not r.local_only]

    def mark_users(self, mask: int) -> list[str]:
        """Who else uses bits of `mask`, one line each (empty: nobody)."""
        found: list[str] = []
        for user in self.marks:
            if user.bits & mask:
                line = user.describe(mask)
                if line not in found:
                    found.append(line)
        return found


# -- iptables-save --------------------------------------------------------------------------


def _option(words: list[str], name: str) -> str | None:
    try:
        return words[words.index(name) + 1]
    except (ValueError, IndexError):
        return None


def _value_mask(text: str | None) -> tuple[int, int | None]:
    """`0x4000/0x4000` -> (0x4000, 0x4000); `0x4000` -> (0x4000, None)."""
    if text is None:
        return 0, None
    value, _, mask = text.partition("/")
    try:
        return int(value, 0), int(mask, 0) if mask else None
    except ValueError:
        return 0, ALL


def _target_bits(words: list[str]) -> int:
    """The mark bits a MARK or CONNMARK target writes."""
    for option in ("--set-xmark", "--set-mark"):
        text = _option(words, option)
        if text is not None:
            value, mask = _value_mask(text)
            return ALL if mask is None else (mask | value) & ALL
    for option, invert in (("--or-mark", False), ("--xor-mark", False), ("--and-mark", True)):
        text = _option(words, option)
        if text is not None:
            value, _ = _value_mask(text)
            return ALL & ~value if invert else value
    if "--save-mark" in words or "--restore-mark" in words:
        masks = [_option(words, "--nfmask"), _option(words, "--ctmask"), _option(words, "--mask")]
        bits = 0
        for text in masks:
            if text is not None:
                bits |= _value_mask(text)[0]
        return bits if any(m is not None for m in masks) else ALL
    return ALL


def _match_bits(words: list[str]) -> int:
    """The mark bits `-m mark --mark V[/M]` and `-m connmark --mark V[/M]` read (0: none)."""
    bits = 0
    for index, word in enumerate(words[:-1]):
        if word == "-m" and words[index + 1] in ("mark", "connmark"):
            text = _option(words[index + 2 :], "--mark")
            if text is not None:
                _, mask = _value_mask(text)
                bits |= ALL if mask is None else mask
    return bits


def printable(text: str) -> str:
    """Text other software wrote (its table, chain and rule text, comments included), as it
    may be shown on root's terminal: control characters (escape sequences, a carriage return
    that overwrites the line) and line or paragraph separators escaped."""
    return "".join(
        c
        if c.isprintable() or c == " "
        else c.encode("unicode_escape").decode("ascii")
        for c in text
    )


def save_lines(text: str) -> list[str]:
    """The lines of `iptables-save` output: a line break (or a carriage return, a U+2028)
    inside a quoted string (a comment) belongs to that string, so that a comment cannot
    forge a rule line; xtables escapes `"` and `\\` inside quotes."""
    lines: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "\n" and not quoted:
            lines.append("".join(current))
            current = []
            continue
        current.append(char)
    if current:
        lines.append("".join(current))
    return lines


# options whose argument is free text (a comment, a log prefix, a string to match): never
# read as an option of the rule (a comment "-j" or "-i eth1" is text)
TEXT_OPTIONS = frozenset(
    {"--comment", "--log-prefix", "--nflog-prefix", "--string", "--hex-string"}
)


def _without_text(words: list[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in TEXT_OPTIONS:
            skip = True
        else:
            kept.append(word)
    return kept


def parse_save(text: str, source: Source, family: int) -> tuple[list[NatRule], list[MarkUser]]:
    """The NAT rules and mark users in `iptables-save` output (ip6tables-save: family 6)."""
    import shlex  # (only where iptables' rules are read)

    nat: list[NatRule] = []
    marks: list[MarkUser] = []
    table = ""
    for line in save_lines(text):
        if line.startswith("*"):
            table = line[1:].strip()
            continue
        if not line.startswith("-A "):
            continue
        try:
            words = _without_text(shlex.split(line))
        except ValueError:  # an unbalanced quote: not a line xtables writes
            continue
        if len(words) < 2:
            continue
        chain = words[1]
        target = _option(words, "-j") or ""
        if target in ("DNAT", "SNAT", "MASQUERADE"):
            negated, name = False, None
            if "-i" in words:
                at = words.index("-i")
                name = _option(words, "-i")
                negated = at > 0 and words[at - 1] == "!"
            option = "--to-destination" if target == "DNAT" else "--to-source"
            nat.append(
                NatRule(
                    source,
                    family,
                    table,
                    chain,
                    NatAction(target),
                    _option(words, option) or "",
                    name,
                    negated,
                    local_only=chain == "OUTPUT",
                    text=line,
                )
            )
        bits = _match_bits(words)
        if target in ("MARK", "CONNMARK"):
            bits |= _target_bits(words[words.index("-j") :])
        if bits:
            marks.append(MarkUser(source, table, chain, bits, line))
    return nat, marks


# -- nft -j list ruleset --------------------------------------------------------------------


def walk(node: Any) -> Iterator[Any]:
    """Every node of a parsed nft JSON expression, depth first."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def items(ruleset: Any, kind: str) -> Iterator[dict[str, Any]]:
    """The objects of one kind ("rule", "chain", "flowtable") in a parsed ruleset."""
    for item in ruleset.get("nftables", []) if isinstance(ruleset, dict) else []:
        if isinstance(item, dict) and isinstance(item.get(kind), dict):
            yield item[kind]


def _is_mark(node: Any) -> bool:
    return isinstance(node, dict) and any(
        isinstance(node.get(k), dict) and node[k].get("key") == "mark" for k in ("meta", "ct")
    )


def _bits(left: Any, right: Any) -> int:
    """The mark bits a match or a mangle reads or writes: a mask (`mark & 0xff00`), an OR or
    XOR (`mark | 0x4000`, with the bits an inner `& KEEP` clears), or every bit (`mark set 1`)."""
    if isinstance(left, dict) and "&" in left:
        values = [v for v in left["&"] if isinstance(v, int)]
        return values[0] if values else ALL
    if not isinstance(right, dict):
        return ALL
    for op in ("|", "^"):
        if op in right:
            bits = 0
            for part in right[op]:
                if isinstance(part, int):
                    bits |= part
                elif isinstance(part, dict) and "&" in part:
                    keep = [v for v in part["&"] if isinstance(v, int)]
                    bits |= ALL & ~keep[0] if keep else ALL
            return bits
    if "&" in right:
        values = [v for v in right["&"] if isinstance(v, int)]
        return ALL & ~values[0] if values else ALL
    return ALL


def _node_bits(node: dict[str, Any]) -> int:
    """The mark bits one expression node matches or mangles (0: none)."""
    if "match" in node and isinstance(node["match"], dict):
        left, right = node["match"].get("left"), node["match"].get("right")
        inner = left["&"][0] if isinstance(left, dict) and "&" in left else left
        if _is_mark(inner):
            if isinstance(left, dict) and "&" in left:
                return _bits(left, right)
            return right if isinstance(right, int) else ALL
    elif isinstance(node.get("mangle"), dict) and _is_mark(node["mangle"].get("key")):
        return _bits(None, node["mangle"].get("value"))
    return 0


def _iifname(expr: Iterable[Any]) -> tuple[str | None, bool]:
    """A rule's input-interface match: (name, negated); (None, False) when it has none."""
    for node in expr:
        match = node.get("match") if isinstance(node, dict) else None
        if not isinstance(match, dict):
            continue
        left, right = match.get("left"), match.get("right")
        meta = left.get("meta") if isinstance(left, dict) else None
        iifname = isinstance(meta, dict) and meta.get("key") == "iifname"
        if iifname and isinstance(right, str):
            name = right[:-1] + "+" if right.endswith("*") else right
            return name, match.get("op") == "!="
    return None, False


def _nat_node(node: Any) -> tuple[NatAction, str] | None:
    if not isinstance(node, dict):
        return None
    for key, action in (("dnat", NatAction.DNAT), ("snat", NatAction.SNAT)):
        body = node.get(key)
        if isinstance(body, dict):
            addr = body.get("addr")
            port = body.get("port")
            to = addr if isinstance(addr, str) else ""
            if to and isinstance(port, int):
                to = f"[{to}]:{port}" if ":" in to else f"{to}:{port}"
            return action, to
    if "masquerade" in node:
        return NatAction.MASQUERADE, ""
    return None


def parse_nft(ruleset: Any, skip: Iterable[tuple[str, str]] = ()) -> tuple[
    list[NatRule], list[MarkUser]
]:
    """The NAT rules and mark users of native nftables tables (multihome's own aside, and the
    tables in `skip`: (family, name) of iptables-nft's, which iptables-save reads)."""
    skipped = set(skip)
    hooks = {
        (c.get("family"), c.get("table"), c.get("name")): str(c.get("hook", ""))
        for c in items(ruleset, "chain")
    }
    nat: list[NatRule] = []
    marks: list[MarkUser] = []
    for rule in items(ruleset, "rule"):
        family, table, chain = rule.get("family"), rule.get("table"), rule.get("chain")
        if table == OWN_TABLE or (family, table) in skipped:
            continue
        expr = rule.get("expr", [])
        expr = expr if isinstance(expr, list) else []
        bits = 0
        for node in walk(expr):
            if isinstance(node, dict):
                bits |= _node_bits(node)
                found = _nat_node(node)
                if found is not None:
                    name, negated = _iifname(expr)
                    nat.append(
                        NatRule(
                            Source.NFT,
                            6 if family == "ip6" else 4,
                            f"{family} {table}",
                            str(chain),
                            found[0],
                            found[1],
                            name,
                            negated,
                            local_only=hooks.get((family, table, chain)) == "output",
                            text=f"handle {rule.get('handle')}",
                        )
                    )
        if bits:
            marks.append(MarkUser(Source.NFT, str(table), str(chain), bits, family=str(family)))
    return nat, marks


def read(
    saves: Iterable[tuple[Source, int, str]],
    ruleset: Any,
    tools: Iterable[str] = (),
    unreadable: Iterable[str] = (),
) -> Firewall:
    """The firewall from the tools' outputs: (source, family, iptables-save text) each, and
    the parsed nft ruleset (None: nft not installed or not readable); the names of the
    tools that answered and of those that failed."""
    nat: list[NatRule] = []
    marks: list[MarkUser] = []
    skip: set[tuple[str, str]] = set()
    for source, family, text in saves:
        found_nat, found_marks = parse_save(text, source, family)
        nat += found_nat
        marks += found_marks
        if source is Source.IPTABLES_NFT:
            nft_family = "ip6" if family == 6 else "ip"
            skip |= {
                (nft_family, line[1:].strip()) for line in save_lines(text) if line.startswith("*")
            }
    if ruleset is not None:
        found_nat, found_marks = parse_nft(ruleset, skip)
        nat += found_nat
        marks += found_marks
    return Firewall(tuple(nat), tuple(marks), tuple(tools), tuple(unreadable))
