"""HostState builders for unit tests: a host in a few lines, no kernel."""

from __future__ import annotations

import ipaddress

from multihome.core.model import (
    TABLE_MAIN,
    Address,
    Family,
    HostState,
    Interface,
    Route,
)


def host(
    links: dict[str, list[str]],
    defaults: list[tuple[str, str, int]] = (),  # type: ignore[assignment]
    routes: tuple[Route, ...] = (),
    rules: tuple[object, ...] = (),
    sysctls: dict[str, str] | None = None,
) -> HostState:
    """links: {ifname: ["192.0.2.10/24", ...]}; defaults: [(ifname, gateway, metric)]."""
    interfaces = [Interface(1, "lo", loopback=True)]
    addresses = []
    for index, (name, addrs) in enumerate(links.items(), start=2):
        interfaces.append(Interface(index, name))
        addresses += [Address(name, ipaddress.ip_interface(a)) for a in addrs]
    main = [
        Route(
            Family.of(ipaddress.ip_address(gw)),
            TABLE_MAIN,
            Family.of(ipaddress.ip_address(gw)).any,
            dev=dev,
            gateway=ipaddress.ip_address(gw),
            protocol=16 if ipaddress.ip_address(gw).version == 4 else 9,  # DHCP; RA for IPv6
            metric=metric,
        )
        for dev, gw, metric in defaults
    ]
    conf = {}
    for name in ["all", *links]:
        for key in ("arp_ignore", "arp_announce", "rp_filter"):
            conf[f"net/ipv4/conf/{name}/{key}"] = "0"
    conf.update(sysctls or {})
    return HostState(
        interfaces=tuple(interfaces),
        addresses=tuple(addresses),
        routes=tuple(main) + tuple(routes),
        rules=tuple(rules),  # type: ignore[arg-type]
        sysctls=conf,
        netns_id=4026531840,
    )
