"""Read the host's firewall as it is (read only): `iptables-save` and `ip6tables-save`, their
`-legacy` forms where installed, and `nft -j list ruleset`; core/firewall.py parses them.

Each tool runs without a shell and with a timeout; a tool that is not installed is read as
nothing (a host without iptables has no iptables rules), one that fails or is refused too
(the reading serves plans and findings; it must not stop apply), and the tools that answered
are named in the result.
"""

from __future__ import annotations

import json
from typing import Any

from multihome.core import firewall
from multihome.core.firewall import Firewall, Source
from multihome.errors import KernelError
from multihome.kernel import tools

TIMEOUT = 10
SAVERS = (
    ("iptables-save", Source.IPTABLES_NFT, 4),
    ("ip6tables-save", Source.IPTABLES_NFT, 6),
    ("iptables-legacy-save", Source.IPTABLES_LEGACY, 4),
    ("ip6tables-legacy-save", Source.IPTABLES_LEGACY, 6),
)


def _output(name: str, args: list[str], failed: list[str]) -> str | None:
    """A tool's standard output, or None when it is missing, fails or hangs (then its name
    goes to `failed`)."""
    path = tools.find(name)
    if path is None:
        return None
    try:
        result = tools.run(path, args, TIMEOUT)
    except KernelError:
        failed.append(name)
        return None
    if result.returncode != 0:
        failed.append(name)
        return None
    return result.stdout


# the kernel's legacy x_tables of each family in this namespace, one name a line (what the
# legacy iptables-save lists)
LEGACY_NAMES = {4: "/proc/net/ip_tables_names", 6: "/proc/net/ip6_tables_names"}


def _legacy_tables(family: int) -> bool | None:
    """Whether this namespace has legacy iptables tables of the family (None: unknown)."""
    try:
        with open(LEGACY_NAMES[family], "rb") as file:
            return bool(file.read().strip())
    except OSError:  # no ip_tables module (nothing to say), or not root
        return None


def _prints_nothing(source: Source, family: int, ruleset: Any) -> bool:
    """Whether a saver would print nothing, known without starting it: no legacy table of its
    family, and for iptables-save (the nft or the legacy one, as the system chose) no table
    of iptables' in the nft ruleset either. On a host whose firewall is nft's alone (or none)
    show, plan and apply then start nft alone, not five processes; the tables the savers
    would print are read as before."""
    if _legacy_tables(family) is not False:
        return False
    if source is Source.IPTABLES_LEGACY:
        return True
    if ruleset is None:  # nft missing or refused: iptables-nft's tables unknown
        return False
    nft_family = "ip6" if family == 6 else "ip"
    return not any(
        table.get("family") == nft_family and table.get("name") in firewall.IPTABLES_TABLES
        for table in firewall.items(ruleset, "table")
    )


def read(ruleset: Any = None) -> Firewall:
    """The firewall now. `ruleset`: an `nft -j list ruleset` the caller already read (it is
    read here otherwise, first: a saver it shows has nothing to print is not started)."""
    saves: list[tuple[Source, int, str]] = []
    answered: list[str] = []
    failed: list[str] = []
    nft_failed: list[str] = []
    if ruleset is None:
        text = _output("nft", ["-j", "list", "ruleset"], nft_failed)
        try:
            ruleset = json.loads(text) if text else None
        except ValueError:
            ruleset = None
        nft_answered = ruleset is not None
    else:
        nft_answered = True
    for name, source, family in SAVERS:
        if tools.find(name) is None:
            continue
        text = "" if _prints_nothing(source, family, ruleset) else _output(name, [], failed)
        if text is None:
            continue
        answered.append(name)
        # where iptables is the legacy one, iptables-save prints what iptables-legacy-save
        # does: its header ("(nf_tables)" or not) tells, and a second reading is dropped
        header = text.partition("\n")[0]
        if header.startswith("#") and "(nf_tables)" not in header:
            source = Source.IPTABLES_LEGACY
        if any(s == source and f == family for s, f, _ in saves):
            continue
        saves.append((source, family, text))
    if nft_answered:
        answered.append("nft")
    return firewall.read(saves, ruleset, answered, failed + nft_failed)
