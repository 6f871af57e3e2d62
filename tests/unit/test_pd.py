"""dhcpcd's DHCPv6 leases as the PD clients' records (host/pd.py): read from a directory only
root may write, links and other files skipped."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from multihome.errors import MultihomeError
from multihome.host import pd
from tests.unit.test_delegation import dhcpv6_reply


def test_leases_are_read_by_interface(tmp_path: Path) -> None:
    (tmp_path / "eth1.lease6").write_bytes(dhcpv6_reply("2001:db8:b::/48"))
    (tmp_path / "eth0.lease").write_bytes(b"an IPv4 lease")
    (tmp_path / "junk.lease6").write_bytes(b"\x07\x00")
    os.symlink(tmp_path / "eth1.lease6", tmp_path / "eth9.lease6")
    assert pd.read_leases(str(tmp_path)) == (("eth1", ipaddress.ip_network("2001:db8:b::/48")),)
    assert pd.read_leases(str(tmp_path / "missing")) == ()


def test_a_directory_others_may_write_is_refused(tmp_path: Path) -> None:
    (tmp_path / "eth1.lease6").write_bytes(dhcpv6_reply("2001:db8:b::/48"))
    tmp_path.chmod(0o777)
    with pytest.raises(MultihomeError):
        pd.read_leases(str(tmp_path))
