"""The address types of the model, and making them from the integers netlink carries.

One data model: the standard library's `ipaddress` classes, made through their public
constructors. Integers go in as (value, prefix length) tuples, which the constructors take
without parsing text.
"""

from __future__ import annotations

from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
IPInterface = IPv4Interface | IPv6Interface


def address_of(version: int, value: int) -> IPAddress:
    """192.0.2.10 from its integer."""
    return IPv4Address(value) if version == 4 else IPv6Address(value)


def network_of(version: int, value: int, prefixlen: int) -> IPNetwork:
    """192.0.2.0/24 from the integer of any address in it and the prefix length (the host
    bits are cleared: the kernel keeps a rule's source as given and matches its network)."""
    if version == 4:
        return IPv4Network((value, prefixlen), strict=False)
    return IPv6Network((value, prefixlen), strict=False)


def interface_of(version: int, value: int, prefixlen: int) -> IPInterface:
    """192.0.2.10/24 from the address's integer and the prefix length."""
    if version == 4:
        return IPv4Interface((value, prefixlen))
    return IPv6Interface((value, prefixlen))
