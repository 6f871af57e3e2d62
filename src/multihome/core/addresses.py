"""`ipaddress` objects made from integers, as netlink's codec reads them, without parsing.

A host with 1,000 source addresses has every run read 1,000 interface addresses, 2,000
rules and their host networks, and plan as many again. `ipaddress.IPv4Interface((value,
prefixlen))` splits its argument, checks it, builds the address and a network through their
own __init__s, and costs several times what decoding the netlink message does. The objects
here are the very classes of `ipaddress` with the very attributes their __init__ sets
(the address's integer, the network's address, netmask and prefix length, the interface's
network), set directly from values that are valid by construction: the callers pass what
the kernel reported, or what was read from such an object.

Whether this interpreter's `ipaddress` keeps those attributes is checked once, at import:
if an object made here differs from the one `ipaddress` makes (a future version that keeps
other state), every function falls back to the ordinary constructors.
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

from multihome.core.recent import Recent

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any  # the objects' private attributes are not in the stubs

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
IPInterface = IPv4Interface | IPv6Interface

_new = object.__new__
_V4: Any = IPv4Network  # its netmask cache, _make_netmask(prefixlen): (netmask, prefixlen)
_V6: Any = IPv6Network


def _address4(value: int) -> IPv4Address:
    address: Any = _new(IPv4Address)
    address._ip = value
    made: IPv4Address = address
    return made


def _address6(value: int) -> IPv6Address:
    address: Any = _new(IPv6Address)
    address._ip = value
    address._scope_id = None
    made: IPv6Address = address
    return made


_masks: dict[tuple[int, int], int] = {}  # (version, length): the network's bits


def _mask(version: int, prefixlen: int) -> int:
    mask = _masks.get((version, prefixlen))
    if mask is None:
        bits = 32 if version == 4 else 128
        mask = _masks[version, prefixlen] = ((1 << bits) - 1) ^ ((1 << (bits - prefixlen)) - 1)
    return mask


_netmasks: dict[tuple[int, int], object] = {}  # (version, length): the netmask's object


def _netmask(version: int, prefixlen: int) -> object:
    netmask = _netmasks.get((version, prefixlen))
    if netmask is None:
        made = (_V4 if version == 4 else _V6)._make_netmask(prefixlen)[0]
        netmask = _netmasks[version, prefixlen] = made
    return netmask


def _network(version: int, value: int, prefixlen: int) -> IPNetwork:
    """The network of `value` (its host bits cleared) with this prefix length."""
    mask = _mask(version, prefixlen)
    network: Any
    if version == 4:
        network = _new(IPv4Network)
        network.network_address = _address4(value & mask)
        if prefixlen >= 31:  # what __init__ adds for these two: hosts()
            network.hosts = network.__iter__ if prefixlen == 31 else lambda: [IPv4Address(value)]
    else:
        network = _new(IPv6Network)
        network.network_address = _address6(value & mask)
        if prefixlen >= 127:
            network.hosts = network.__iter__ if prefixlen == 127 else lambda: [IPv6Address(value)]
    network.netmask = _netmask(version, prefixlen)
    network._prefixlen = prefixlen
    result: IPNetwork = network
    return result


def _interface(version: int, value: int, prefixlen: int, network: IPNetwork) -> IPInterface:
    """The interface address, in `network`."""
    interface: Any
    if version == 4:
        interface = _new(IPv4Interface)
        interface._ip = value
    else:
        interface = _new(IPv6Interface)
        interface._ip = value
        interface._scope_id = None
    interface.network = network
    interface.netmask = interface.network.netmask
    interface._prefixlen = prefixlen
    result: IPInterface = interface
    return result


def _same(mine: object, theirs: object) -> bool:
    """Equal, equally hashed and printed, with the same attributes (hosts() by its result)."""
    state = [
        (name, getattr(obj, name, None))
        for obj in (mine, theirs)
        for name in ("_ip", "_scope_id", "_prefixlen", "network_address", "netmask", "network")
    ]
    half = len(state) // 2
    extra = {
        name
        for obj in (mine, theirs)
        for name in getattr(obj, "__dict__", {})
        if name not in ("network_address", "netmask", "_prefixlen", "network", "hosts")
    }
    # __init__ sets hosts() on /31 and /32 networks (two addresses at most) only
    own = [vars(obj).get("hosts") for obj in (mine, theirs) if hasattr(obj, "__dict__")]
    first, second = [*own, None, None][:2]
    if first is not None and second is not None:
        hosts_same = list(first()) == list(second())
    else:
        hosts_same = first is None and second is None
    return (
        type(mine) is type(theirs)
        and mine == theirs
        and hash(mine) == hash(theirs)
        and str(mine) == str(theirs)
        and state[:half] == state[half:]
        and not extra
        and hosts_same
    )


def _matches() -> bool:
    """A few objects of each kind against ipaddress's own (tests/unit/test_addresses.py
    compares thousands)."""
    v4, v6 = 0xC000020A, 0x20010DB8 << 96 | 0x10
    try:
        samples: list[tuple[object, object]] = [
            (_address4(v4), IPv4Address(v4)),
            (_address6(v6), IPv6Address(v6)),
            (_network(4, v4, 24), IPv4Network((v4, 24), False)),
            (_network(4, v4, 32), IPv4Network((v4, 32))),
            (_network(6, v6, 128), IPv6Network((v6, 128))),
            (_interface(4, v4, 24, _network(4, v4, 24)), IPv4Interface((v4, 24))),
            (_interface(6, v6, 64, _network(6, v6, 64)), IPv6Interface((v6, 64))),
        ]
        return all(_same(mine, theirs) for mine, theirs in samples)
    except (AttributeError, TypeError, ValueError):
        return False


FAST = _matches()


def address_of(version: int, value: int) -> IPAddress:
    """192.0.2.10 from its integer."""
    if not FAST:
        return IPv4Address(value) if version == 4 else IPv6Address(value)
    return _address4(value) if version == 4 else _address6(value)


def network_of(version: int, value: int, prefixlen: int) -> IPNetwork:
    """192.0.2.0/24 from an address's integer in it and the prefix length."""
    if not FAST:
        if version == 4:
            return IPv4Network((value, prefixlen), strict=False)
        return IPv6Network((value, prefixlen), strict=False)
    return _network(version, value, prefixlen)


# by version, network address and prefix length
_networks: Recent[tuple[int, int, int], IPNetwork] = Recent()


def shared_network(version: int, value: int, prefixlen: int) -> IPNetwork:
    """network_of(), one object per distinct network while the kernel reports it
    (recent.py): thousands of addresses, rules and routes name a few subnets, and each
    source address's host network twice (its two rules)."""
    key = (version, value & _mask(version, prefixlen), prefixlen)
    network = _networks.get(key)
    if network is None:
        network = _networks.put(key, network_of(version, value, prefixlen))
    return network


def interface_of(version: int, value: int, prefixlen: int) -> IPInterface:
    """192.0.2.10/24 from the address's integer and the prefix length."""
    if not FAST:
        if version == 4:
            return IPv4Interface((value, prefixlen))
        return IPv6Interface((value, prefixlen))
    # its network shared with every other address in it
    return _interface(version, value, prefixlen, shared_network(version, value, prefixlen))
