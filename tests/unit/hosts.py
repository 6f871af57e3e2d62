"""HostState builders for unit tests: a host in a few lines, no kernel."""

from __future__ import annotations

import ipaddress

from multihome.core.model import (
    SCOPE_LINK,
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
    # the kernel's own route to each address's subnet (`proto kernel`), once per device
    connected = {
        (a.ip.network, a.ifname, a.ip.ip)
        for a in addresses
        if a.ip.network.prefixlen < a.ip.max_prefixlen
    }
    seen = set()
    for network, dev, ip in sorted(connected, key=str):
        if (network, dev) in seen:
            continue
        seen.add((network, dev))
        v4 = network.version == 4
        main.append(
            Route(
                Family.of(ip),
                TABLE_MAIN,
                network,
                dev=dev,
                prefsrc=ip if v4 else None,
                scope=SCOPE_LINK if v4 else 0,
                protocol=2,  # kernel
                metric=0 if v4 else 256,
            )
        )
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
