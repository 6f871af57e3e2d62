

def test_a_route_from_a_prefix_goes_to_the_kernel_and_back_with_its_source() -> None:
    """RTA_SRC and rtm_src_len both ways: a delete without them would take main's own default."""
    import ipaddress

    from multihome.core.model import TABLE_MAIN, Family, Route
    from multihome.kernel import codec as c
    from multihome.kernel import objects

    route = Route(
        Family.INET6,
        TABLE_MAIN,
        ipaddress.ip_network("::/0"),
        dev="eth1",
        gateway=ipaddress.ip_address("fe80::1"),
        protocol=77,
        metric=1024,
        source=ipaddress.ip_network("2001:db8:1::/64"),
    )
    data = objects.route_request(c.RTM_DELROUTE, route, {"eth1": 3})
    message = c.decode_route(data, 16, len(data))
    assert message.src_len == 64 and message.attrs[c.RTA_SRC] == route.source.network_address.packed  # type: ignore[union-attr]
    assert objects.route_of(message, {3: "eth1"}) == route
