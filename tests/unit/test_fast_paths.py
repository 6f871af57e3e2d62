"""The faster representations give the same answers as the plain ones they replace.

Speed work (issue 14) replaced object comparisons by integer keys, per-pair scans by indexes
and one-call encodings; each is checked here against the straightforward definition.
"""

from __future__ import annotations

import copy
import ipaddress
import pickle
import shutil
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from multihome import cli
from multihome.cli import persist
from multihome.core import plan
from multihome.core.config import Config, UplinkConfig
from multihome.core.model import (
    TABLE_MAIN,
    Address,
    Family,
    GatewaySource,
    HostState,
    Interface,
    Route,
    Rule,
    Uplink,
    interface_of,
    interface_order,
)
from multihome.kernel import codec, objects
from multihome.kernel.echoes import echoes_of, only_echoes
from multihome.render import registry

v4 = st.integers(0, 2**32 - 1)
v6 = st.integers(0, 2**128 - 1)
interfaces = st.one_of(
    st.tuples(st.just(4), v4, st.integers(0, 32)),
    st.tuples(st.just(6), v6, st.integers(0, 128)),
)


@given(st.lists(interfaces, max_size=40))
def test_address_order_by_integers_is_the_order_of_the_objects(
    values: list[tuple[int, int, int]],
) -> None:
    # discover sorts addresses by integers; the objects sort by network, netmask, address.
    by_objects = sorted((interface_of(*v) for v in values), key=lambda i: (i.version, i))
    by_integers = [interface_of(*v) for v in sorted(values, key=lambda v: interface_order(*v))]
    assert by_integers == by_objects


@pytest.mark.parametrize(
    "text",
    [
        "2001:db8::10/64",
        "2001:db8:0:0:1::1/64",  # the longest run of zeros is compressed, not the first
        "2001:db8:0:1:0:0:0:1/128",
        "2001:0:0:1:0:0:0:1/48",  # equal runs: the first is compressed
        "::1/128",
        "::/0",
        "2001:db8::/128",
        "fe80::1/64",
        "::ffff:192.0.2.1/96",
        "192.0.2.10/24",
        "192.0.2.10/32",
        "0.0.0.0/0",
    ],
)
def test_addresses_decoded_from_netlink_print_as_ip_prints_them(text: str) -> None:
    expected = ipaddress.ip_interface(text)
    family = 2 if expected.version == 4 else 10
    attr = codec.attr(codec.IFA_LOCAL, expected.ip.packed)
    body = codec.IFADDRMSG.pack(family, expected.network.prefixlen, 0, 0, 7) + attr
    info = objects.address_info(body, 0, len(body))
    assert info is not None
    decoded = interface_of(info.version, info.value, info.prefixlen)
    assert decoded == expected and str(decoded) == str(expected)
    assert str(decoded.ip) == str(expected.ip) and decoded.network.prefixlen == info.prefixlen
    assert info.address == expected.ip


def test_an_address_with_a_scope_id_is_the_address_netlink_carries() -> None:
    # netlink carries no scope id: the decoded address prints without one, as `ip` does,
    # and the integer of a scoped address is the address alone.
    scoped = ipaddress.ip_interface("fe80::1%eth0/64")
    assert str(scoped) == "fe80::1%eth0/64"
    decoded = interface_of(6, int(scoped.ip), 64)
    assert str(decoded) == "fe80::1/64" and int(decoded.ip) == int(scoped.ip)
    assert isinstance(decoded, ipaddress.IPv6Interface) and decoded.ip.scope_id is None


def _rules() -> list[Rule]:
    net = ipaddress.ip_network
    return [
        Rule(Family.INET, 1000, 100, net("192.0.2.10/32"), 0, 77),
        Rule(Family.INET, 1000, 100, net("192.0.2.10/32"), None, 77),
        Rule(Family.INET, 1002, 100, net("192.0.2.10/32"), None, 77),
        Rule(Family.INET6, 1000, 100, net("2001:db8::10/128"), 0, 77),
        Rule(Family.INET, 1001, TABLE_MAIN, None, 0, 77),
    ]


def _routes() -> list[Route]:
    net, addr = ipaddress.ip_network, ipaddress.ip_address
    return [
        Route(Family.INET, 100, net("192.0.2.0/24"), dev="eth0", prefsrc=addr("192.0.2.10")),
        Route(Family.INET, 100, net("192.0.2.0/24"), dev="eth1", prefsrc=addr("192.0.2.10")),
        Route(Family.INET, 100, net("0.0.0.0/0"), dev="eth0", gateway=addr("192.0.2.1")),
        Route(Family.INET6, 100, net("::/0"), dev="eth0", gateway=addr("2001:db8::1")),
    ]


@pytest.mark.parametrize("objects", [_rules(), _routes()], ids=["rules", "routes"])
def test_cached_hashes_are_the_dataclass_hashes_also_for_copies(
    objects: list[Rule] | list[Route],
) -> None:
    from multihome.core.records import fields, replace

    for obj in objects:
        values = tuple(getattr(obj, f.name) for f in fields(obj))
        assert hash(obj) == hash(values)
        text = obj.ip_args()
        assert obj.ip_args() is text  # made once
        for twin in (copy.copy(obj), copy.deepcopy(obj), pickle.loads(pickle.dumps(obj))):
            assert twin == obj and hash(twin) == hash(obj) and twin.ip_args() == text
        assert hash(replace(obj)) == hash(obj)
        assert [f.name for f in fields(obj)][-1] != "_hash"  # the cache is not a field
    assert len(set(objects)) == len(objects)
    first = objects[0]
    changed = replace(first, protocol=78)
    assert changed.ip_args() == first.ip_args().replace(f"proto {first.protocol}", "proto 78")
    assert changed != first and hash(changed) == hash(
        tuple(getattr(changed, f.name) for f in fields(changed))
    )


def test_family_hashes_as_the_number_it_equals() -> None:
    assert hash(Family.INET) == hash(2) and hash(Family.INET6) == hash(10)
    assert {2: "v4"}[Family.INET] == "v4" and Family.INET in {2}


def test_addresses_of_follows_the_state_it_is_asked_about() -> None:
    def address(name: str, text: str) -> Address:
        return Address(name, ipaddress.ip_interface(text))

    first = HostState(
        interfaces=(Interface(2, "eth0"), Interface(3, "eth1")),
        addresses=(
            address("eth0", "192.0.2.10/24"),
            address("eth1", "198.51.100.10/24"),
            address("eth0", "2001:db8::10/64"),
            address("eth0", "192.0.2.11/24"),
        ),
    )
    second = HostState(addresses=(address("eth1", "203.0.113.5/24"),))
    for state in (first, second, first):
        for name in ("eth0", "eth1", "eth9"):
            for family in (None, Family.INET, Family.INET6):
                assert state.addresses_of(name, family) == tuple(
                    a
                    for a in state.addresses
                    if a.ifname == name and (family is None or a.family == family)
                )


def test_main_default_gateway_lowest_metric_first_seen_on_a_tie() -> None:
    net, addr = ipaddress.ip_network, ipaddress.ip_address
    default = net("0.0.0.0/0")
    routes = (
        Route(Family.INET, TABLE_MAIN, default, dev="eth0", gateway=addr("192.0.2.1"), metric=200),
        Route(Family.INET, TABLE_MAIN, default, dev="eth0", gateway=addr("192.0.2.2"), metric=100),
        Route(Family.INET, TABLE_MAIN, default, dev="eth0", gateway=addr("192.0.2.3"), metric=100),
        Route(Family.INET, 100, default, dev="eth1", gateway=addr("198.51.100.9"), metric=1),
        Route(Family.INET, TABLE_MAIN, net("192.0.2.0/24"), dev="eth1", metric=0),
        Route(
            Family.INET6, TABLE_MAIN, net("::/0"), dev="eth0", gateway=addr("fe80::1"), protocol=9
        ),
    )
    state = HostState(
        interfaces=(Interface(2, "eth0"), Interface(3, "eth1")),
        addresses=(
            Address("eth0", ipaddress.ip_interface("192.0.2.10/24")),
            Address("eth0", ipaddress.ip_interface("2001:db8::10/64")),
            Address("eth1", ipaddress.ip_interface("198.51.100.10/24")),
        ),
        routes=routes,
    )
    uplinks = {u.name: u for u in plan.plan(Config(uplinks=(UplinkConfig("eth0"),)), state).uplinks}
    eth0 = uplinks["eth0"]
    assert (eth0.gateway4, eth0.source4) == (addr("192.0.2.2"), GatewaySource.MAIN_DEFAULT)
    assert (eth0.gateway6, eth0.source6) == (addr("fe80::1"), GatewaySource.RA)


subnet = st.builds(
    lambda v, n: ipaddress.IPv4Interface((v, n)),
    st.integers(0xC0000200, 0xC0000200 + 600),  # overlapping prefixes around 192.0.2.0
    st.integers(20, 32),
)


@given(st.lists(st.lists(subnet, max_size=4), min_size=1, max_size=8))
def test_subnet_sharing_by_one_pass_is_every_pair_compared(
    addresses: list[list[ipaddress.IPv4Interface]],
) -> None:
    uplinks = [
        Uplink(f"eth{k}", 100 + k, tuple(Address(f"eth{k}", a) for a in mine))
        for k, mine in enumerate(addresses)
    ]
    every_pair = {
        u.name
        for u in uplinks
        for o in uplinks
        if o is not u
        for mine in u.addresses
        for theirs in o.addresses
        if mine.ip.network.overlaps(theirs.ip.network)
    }
    every_address = (a for u in uplinks for a in u.addresses)
    assert {n for _, names in plan.shared_subnets(every_address) for n in names} == every_pair


def test_export_formats_spelled_out_for_the_parser_are_the_registry() -> None:
    assert {name: text for name, (_, text) in registry().items()} == persist.FORMATS


@pytest.mark.parametrize("columns", [None, "", "abc", "0", "-3", "60", "200"])
def test_terminal_width_is_the_one_argparse_would_use(
    columns: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert cli.terminal_columns() == shutil.get_terminal_size().columns


def test_an_uplinks_addresses_by_family_are_its_addresses_of_that_family() -> None:
    texts = ["192.0.2.10/24", "2001:db8::10/64", "192.0.2.11/24", "2001:db8::11/64"]
    addresses = tuple(Address("eth0", ipaddress.ip_interface(t)) for t in texts)
    for uplink in (Uplink("eth0", 100, addresses), Uplink("eth0", 100, addresses[:1])):
        for family in Family:
            assert uplink.addresses_in(family) == tuple(
                a for a in uplink.addresses if a.family == family
            )


def _samples() -> list[list[object]]:
    """Two or three objects of every model class, some equal, some not."""
    from multihome.core import model

    addr, iface = ipaddress.ip_address, ipaddress.ip_interface
    a, b = iface("192.0.2.10/24"), iface("192.0.2.9/25")
    rules, routes = _rules(), _routes()
    own = model.Ownership()
    return [
        [Interface(2, "eth0"), Interface(2, "eth0", up=False), Interface(1, "eth1")],
        [model.Counters(1, 2, 3, 4), model.Counters(1, 2, 3, 4), model.Counters(0, 2, 3, 4)],
        [Address("eth0", a), Address("eth0", b), Address("eth0", a)],
        [model.NextHop("eth0", addr("192.0.2.1")), model.NextHop("eth1"), model.NextHop(None)],
        list(routes[:3]),
        list(rules[:3]),
        [model.Sysctl("net/a", "1"), model.Sysctl("net/a", "0"), model.Sysctl("net/b", "1")],
        [own, model.Ownership(table_min=50), model.Ownership()],
        [
            model.Lookup(addr("203.0.113.1"), addr("192.0.2.10"), dev="eth0"),
            model.Lookup(addr("203.0.113.1"), addr("192.0.2.10"), error="unreachable"),
        ],
        [
            Uplink("eth0", 100, (Address("eth0", a),), addr("192.0.2.1")),
            Uplink("eth0", 100, (Address("eth0", a),)),
        ],
        [model.Desired(own, rules=tuple(rules)), model.Desired(own)],
        [
            model.Change(model.Action.ADD, rules[0]),
            model.Change(model.Action.SET, model.Sysctl("net/a", "1"), "0"),
            model.Change(model.Action.ADD, rules[0]),
        ],
        [HostState(sysctls={"a": "1"}), HostState(sysctls={"a": "1"}), HostState()],
    ]


def _records_as_dicts(value: object) -> object:
    from multihome.core import records

    if records.is_record(value) and not isinstance(value, type):
        return records.asdict(value)
    if isinstance(value, tuple | list):
        return type(value)(_records_as_dicts(v) for v in value)
    return value


@pytest.mark.parametrize("objects", _samples(), ids=lambda objs: type(objs[0]).__name__)
def test_model_classes_behave_as_the_dataclasses_they_were(objects: list[object]) -> None:
    # The model's classes are records (records.py), not dataclasses; a plain frozen
    # dataclass with the same fields is the reference for each of them.
    import dataclasses
    import operator

    from multihome.core import records

    cls = type(objects[0])
    assert records.is_record(cls)
    order = "__lt__" in cls.__dict__
    reference = dataclasses.make_dataclass(
        cls.__name__,
        [
            (f.name, object, dataclasses.field(compare=f.compare, hash=f.hash, repr=f.repr))
            for f in records.fields(cls)
        ],
        frozen=True,
        order=order,
    )

    def twin(obj: object) -> object:
        return reference(**{f.name: getattr(obj, f.name) for f in records.fields(cls)})

    compares: list[Callable[[Any, Any], bool]] = [
        operator.lt,
        operator.le,
        operator.gt,
        operator.ge,
    ]
    for one in objects:
        assert repr(one) == repr(twin(one))
        # the reference's fields that are records (an uplink's addresses) are not its dataclasses
        assert records.asdict(one) == {  # type: ignore[call-overload]
            name: _records_as_dicts(value)
            for name, value in dataclasses.asdict(twin(one)).items()  # type: ignore[call-overload]
        }
        assert records.replace(one) == one  # type: ignore[type-var]
        with pytest.raises(records.FrozenInstanceError):
            setattr(one, records.fields(cls)[0].name, None)
        try:
            expected_hash: int | None = hash(twin(one))
        except TypeError:  # a field that cannot be hashed (HostState.sysctls)
            expected_hash = None
        if expected_hash is None:
            with pytest.raises(TypeError):
                hash(one)
        else:
            assert hash(one) == expected_hash
        assert one != object() and (one == 1) is False
        for other in objects:
            assert (one == other) == (twin(one) == twin(other))
            if order:
                for compare in compares:
                    assert compare(one, other) == compare(twin(one), twin(other))
    if order:
        with pytest.raises(TypeError):
            objects[0] < object()  # type: ignore[operator]  # noqa: B015


def test_the_watch_skips_exactly_the_echoes_of_its_own_changes() -> None:
    rules, routes = _rules(), _routes()
    names = {7: "eth0", 8: "eth1"}

    def event(kind: int, obj: Rule | Route) -> bytes:
        if isinstance(obj, Rule):
            return objects.rule_request(kind, obj)
        return objects.route_request(kind, obj, {"eth0": 7, "eth1": 8})

    echoes = echoes_of([(True, rules[0]), (False, rules[1]), (True, routes[0])])
    # the echo of an addition, in a datagram of its own: skipped, and expected no more
    assert only_echoes(event(codec.RTM_NEWRULE, rules[0]), echoes, names)
    assert not only_echoes(event(codec.RTM_NEWRULE, rules[0]), echoes, names)
    # the same rule deleted is not the echo of its addition
    assert not only_echoes(event(codec.RTM_DELRULE, rules[2]), echoes, names)
    assert not only_echoes(event(codec.RTM_NEWRULE, rules[1]), echoes, names)
    # a datagram with an echo and something else: not only echoes (the echo is used up)
    mixed = event(codec.RTM_DELRULE, rules[1]) + event(codec.RTM_NEWROUTE, routes[1])
    assert not only_echoes(mixed, echoes, names)
    assert only_echoes(event(codec.RTM_NEWROUTE, routes[0]), echoes, names)
    assert echoes == {}
    # anything else (an address, a link) is news
    address = codec.message(codec.RTM_NEWADDR, 0, bytes(8))
    assert not only_echoes(address, echoes_of([(True, rules[0])]), names)


def test_a_lazily_built_command_parser_is_the_eagerly_built_one() -> None:
    from multihome.cli.manpage import subcommands

    eager = subcommands(cli.build_parser())
    for name, parser in eager.items():
        argv = ["--netns", "x", name, "--help"]
        assert cli.chosen_command(argv) == name
        built = subcommands(cli.build_parser(only=cli.chosen_command(argv), lazy=True))[name]
        assert built.format_help() == parser.format_help()
        assert [a.option_strings for a in built.arguments] == [
            a.option_strings for a in parser.arguments
        ]
        with pytest.raises(SystemExit):
            cli.build_parser(only=name, lazy=True).parse_args(argv)  # prints its help
    assert cli.chosen_command(["-c", "apply", "show"]) == "show"  # -c's value is no command
    assert cli.chosen_command(["--version"]) is None


def test_distinct_networks_also_of_objects_made_as_it_goes() -> None:
    # an id() is unique only while its object lives: a network dropped as a duplicate must
    # not lend its id to the next one (a generator of fresh objects)
    from multihome.core.model import distinct_networks

    # subnets A, A, B, B, C, D: D's network may be made where A's second one was
    nets = [f"10.{n // 256}.{n % 256}" for n in range(400)]
    texts = []
    for a, b, c, d in zip(nets[0::4], nets[1::4], nets[2::4], nets[3::4], strict=True):
        texts += [f"{a}.1/24", f"{a}.2/24", f"{b}.1/24", f"{b}.2/24", f"{c}.1/24", f"{d}.1/24"]
    found = distinct_networks(Address("eth0", ipaddress.ip_interface(text)) for text in texts)
    assert [str(n) for _, n in found] == [f"{net}.0/24" for net in nets]
