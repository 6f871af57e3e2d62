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


def read(ruleset: Any = None) -> Firewall:
    """The firewall now. `ruleset`: an `nft -j list ruleset` the caller already read (it is
    read here otherwise)."""
    saves: list[tuple[Source, int, str]] = []
    answered: list[str] = []
    failed: list[str] = []
    for name, source, family in SAVERS:
        text = _output(name, [], failed)
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
    if ruleset is None:
        text = _output("nft", ["-j", "list", "ruleset"], failed)
        try:
            ruleset = json.loads(text) if text else None
        except ValueError:
            ruleset = None
        if ruleset is not None:
            answered.append("nft")
    else:
        answered.append("nft")
    return firewall.read(saves, ruleset, answered, failed)
