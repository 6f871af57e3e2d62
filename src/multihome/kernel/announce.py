"""Gratuitous ARP: tell the neighbours which NIC owns each address, now.

With ARP flux before the fix, a router may have learnt every address of the host at one
NIC's MAC; arp_ignore/arp_announce stop new wrong answers, but the router keeps its cache
entries until they expire, and the other NIC receives nothing meanwhile. One gratuitous ARP
request per address, sent from the NIC that owns it, updates those entries at once (Linux
neighbours update an entry they have on any ARP from that address, whatever arp_accept).
"""

from __future__ import annotations

import ipaddress
import socket
import struct

ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6


def frame(mac: bytes, address: ipaddress.IPv4Address) -> bytes:
    """An Ethernet broadcast ARP request announcing `address` at `mac`."""
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)  # Ethernet, IPv4, request
    arp += mac + address.packed + b"\0" * 6 + address.packed
    return BROADCAST + mac + struct.pack("!H", ETH_P_ARP) + arp


def gratuitous_arp(ifname: str, addresses: list[ipaddress.IPv4Address]) -> None:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as sock:
        sock.bind((ifname, ETH_P_ARP))
        mac = sock.getsockname()[4]
        for address in addresses:
            sock.send(frame(mac, address))
