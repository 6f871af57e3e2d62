"""The only writer of NPTv6 (RFC 6296): stateless, checksum-neutral prefix translation per
uplink, as ip6tables' SNPT and DNPT targets (nftables has no stateless NPT: its prefix NAT is
stateful).

What multihome owns: two chains of the mangle table, MULTIHOME-NPT-PRE (DNPT, jumped to from
PREROUTING) and MULTIHOME-NPT-POST (SNPT, from POSTROUTING), one of the raw table,
MULTIHOME-NPT-RAW (the translated flows untracked, from PREROUTING), and those three jumps.
They are replaced whole, in one ip6tables-restore transaction (--noflush: every other chain and rule
stays as it is), and removed the same way, like multihome's nftables table; nothing else is
named.
"""

from __future__ import annotations

import re
import shlex

from multihome.core.firewall import save_lines
from multihome.core.model import NptMapping
from multihome.errors import KernelError, MultihomeError
from multihome.kernel import tools

PRE, POST, RAW = "MULTIHOME-NPT-PRE", "MULTIHOME-NPT-POST", "MULTIHOME-NPT-RAW"
# each chain's table and the built-in chain that jumps to it
CHAINS = {
    RAW: ("raw", "PREROUTING"),
    PRE: ("mangle", "PREROUTING"),
    POST: ("mangle", "POSTROUTING"),
}
TIMEOUT = 10.0
NAME = re.compile(r"^[A-Za-z0-9_.:@-]+$")  # what may stand unquoted in ip6tables-restore


def rules(mappings: tuple[NptMapping, ...]) -> list[str]:
    """The chains' rules as ip6tables-save prints them. The translated flows are not
    tracked (raw table): conntrack would take a reply, which arrives for the outside prefix,
    for a new flow, and the connection's next packets for invalid ones."""
    found = []
    for m in mappings:
        if not NAME.match(m.uplink):
            raise MultihomeError(
                f"interface {m.uplink!r} has a name ip6tables-restore cannot take",
                hint=f"rename it: ip link set dev {shlex.quote(m.uplink)} name NEWNAME",
            )
        found += [
            f"-A {PRE} -d {m.outside} -i {m.uplink} -j DNPT --src-pfx {m.outside}"
            f" --dst-pfx {m.inside}",
            f"-A {POST} -s {m.inside} -o {m.uplink} -j SNPT --src-pfx {m.inside}"
            f" --dst-pfx {m.outside}",
            f"-A {RAW} -d {m.outside} -i {m.uplink} -j CT --notrack",
        ]
    found += sorted({f"-A {RAW} -s {m.inside} -j CT --notrack" for m in mappings})
    return sorted(set(found))


def _tool(name: str) -> str:
    return tools.require(name, "NPTv6 ([gateway] npt)", "apt install iptables")


def current() -> tuple[list[str], set[str], set[str]]:
    """The rules of multihome's chains, the chains there, and the chains jumped to."""
    result = tools.run(_tool("ip6tables-save"), [], TIMEOUT)
    if result.returncode != 0:
        raise KernelError(f"ip6tables-save failed: {result.stderr.strip()}")
    found, chains, jumps = [], set(), set()
    table = ""
    for line in save_lines(result.stdout):  # (a comment cannot forge a line)
        if line.startswith("*"):
            table = line[1:]
            continue
        for chain, (home, builtin) in CHAINS.items():
            if table != home:
                continue
            if line.startswith(f":{chain} "):
                chains.add(chain)
            elif line.startswith(f"-A {chain} "):
                found.append(line)
            elif line == f"-A {builtin} -j {chain}":
                jumps.add(chain)
    return sorted(found), chains, jumps & chains  # (no jump to a chain that is not there)


def script(mappings: tuple[NptMapping, ...], chains: set[str], jumps: set[str]) -> str:
    """ip6tables-restore --noflush input that makes multihome's chains hold `mappings` (none:
    removes the chains and their jumps)."""
    wanted = rules(mappings)
    lines = []
    for home in ("raw", "mangle"):
        lines.append(f"*{home}")
        mine = [c for c, (t, _) in CHAINS.items() if t == home]
        if mappings:
            lines += [f":{c} - [0:0]" for c in mine]  # created, or flushed
            lines += [r for r in wanted if r.split()[1] in mine]
            # first in the built-in chain: a rule of others that accepts must not skip it
            lines += [f"-I {CHAINS[c][1]} 1 -j {c}" for c in mine if c not in jumps]
        else:
            lines += [f"-D {CHAINS[c][1]} -j {c}" for c in mine if c in jumps]
            lines += [f"-F {c}" for c in mine if c in chains]
            lines += [f"-X {c}" for c in mine if c in chains]
        lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def apply(mappings: tuple[NptMapping, ...]) -> bool:
    """Make multihome's chains hold `mappings` (none: remove them), in one transaction;
    whether anything changed. Raises KernelError when ip6tables refuses (nothing changed)."""
    if not mappings and tools.find("ip6tables-save") is None:
        return False  # no ip6tables: there is nothing of multihome's to remove
    found, chains, jumps = current()
    if mappings and found == rules(mappings) and chains == jumps == set(CHAINS):
        return False
    if not mappings and not (found or chains or jumps):
        return False
    text = script(mappings, chains, jumps)
    result = tools.run(_tool("ip6tables-restore"), ["--noflush"], TIMEOUT, stdin=text)
    if result.returncode != 0:
        raise KernelError(
            f"ip6tables-restore refused multihome's NPTv6 chains: {result.stderr.strip()}",
            hint="is the kernel's ip6t_NPT module available? (modprobe ip6t_NPT)",
        )
    return True
