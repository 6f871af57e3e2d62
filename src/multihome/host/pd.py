"""The DHCPv6-PD clients' records of which uplink was delegated which prefix, read for the
planner (core/delegation.py): dhcpcd keeps each interface's last DHCPv6 reply as
IFNAME.lease6 in its lease directory (/var/lib/dhcpcd on Debian). systemd-networkd keeps no
such file; its delegations are learnt otherwise or configured.

The directory is reached through no link and must be root's and writable by no one else (a
file planted there would choose where the LAN's traffic goes); a lease that is not a regular
file is skipped, and at most 64 KiB of one is read.
"""

from __future__ import annotations

import os

from multihome.core import delegation, names
from multihome.core.model import IPNetwork
from multihome.host import files

SUFFIX = ".lease6"
MAX_LEASE = 1 << 16


def read_leases(directory: str) -> tuple[tuple[str, IPNetwork], ...]:
    """(interface, delegated prefix) from every dhcpcd lease in `directory` (none when it
    does not exist). Raises MultihomeError (UnsafePath) for a directory others may write."""
    if not os.path.isdir(directory):
        return ()
    fd = files.open_root(directory)
    try:
        found: list[tuple[str, IPNetwork]] = []
        for entry in sorted(os.listdir(fd)):
            ifname = entry.removesuffix(SUFFIX)
            if not entry.endswith(SUFFIX) or names.problem(ifname) is not None:
                continue
            try:
                lease_fd, _ = files.open_regular(entry, fd)
            except (OSError, files.NotRegular):
                continue  # gone meanwhile, a link or not a file: not a record
            with os.fdopen(lease_fd, "rb") as lease:
                data = lease.read(MAX_LEASE)
            found += [(ifname, p) for p in delegation.dhcpv6_prefixes(data)]
        return tuple(found)
    finally:
        os.close(fd)
