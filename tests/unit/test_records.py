"""records.py against dataclasses: the same declarations behave the same."""

from __future__ import annotations

import copy
import dataclasses
import operator
import pickle
import subprocess
import sys
from typing import Any

import pytest

from multihome.core import records


def _declare(decorator: Any, field: Any, frozen: bool, slots: bool, order: bool) -> type:
    @decorator(frozen=frozen, slots=slots, order=order)
    class Thing:
        name: str
        size: int = 3
        tags: tuple[str, ...] = field(default_factory=tuple)
        note: str = field(default="", compare=False)
        hidden: int = field(default=0, repr=False)
        extra: dict[str, int] = field(default_factory=dict, compare=False, hash=False)

    return Thing


KINDS = [
    (frozen, slots, order)
    for frozen in (True, False)
    for slots in (True, False)
    for order in (True, False)
]


@pytest.mark.parametrize("frozen,slots,order", KINDS)
def test_a_record_behaves_as_the_dataclass_of_the_same_declaration(
    frozen: bool, slots: bool, order: bool
) -> None:
    mine = _declare(records.record, records.field, frozen, slots, order)
    theirs = _declare(dataclasses.dataclass, dataclasses.field, frozen, slots, order)
    arguments: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        (("a",), {}),
        (("a", 3), {}),
        (("a", 4), {"tags": ("x",)}),
        ((), {"name": "b", "note": "not compared", "hidden": 7}),
        (("a",), {"extra": {"k": 1}}),
    ]
    pairs = [(mine(*a, **k), theirs(*a, **k)) for a, k in arguments]
    for one, reference in pairs:
        assert repr(one) == repr(reference)
        assert records.asdict(one) == dataclasses.asdict(reference)
        assert [f.name for f in records.fields(one)] == [
            f.name for f in dataclasses.fields(reference)
        ]
        changed = records.replace(one, size=9)
        assert changed.size == 9 and changed.name == one.name and changed is not one
        assert hasattr(one, "__dict__") == hasattr(reference, "__dict__")  # slots or not
        if frozen:
            with pytest.raises(records.FrozenInstanceError):
                one.size = 1
            with pytest.raises(AttributeError):  # FrozenInstanceError is one
                del one.name
            assert hash(one) == hash(reference)
        else:
            with pytest.raises(TypeError):
                hash(one)
            with pytest.raises(TypeError):
                hash(reference)
        for other, other_reference in pairs:
            assert (one == other) == (reference == other_reference)
            for compare in (operator.lt, operator.le, operator.gt, operator.ge):
                if order:
                    assert compare(one, other) == compare(reference, other_reference)
                else:
                    with pytest.raises(TypeError):
                        compare(one, other)
        twin = copy.deepcopy(one)
        assert twin == one and copy.copy(one) == one
        if frozen:
            assert hash(twin) == hash(one)
    assert pairs[0][0] != pairs[0][1] and pairs[0][0] != ("a", 3)  # other classes: never equal
    with pytest.raises(TypeError):
        mine()  # a field without a default is required
    with pytest.raises(TypeError):
        mine("a", nonsense=1)


# pickle needs the classes at module level
@records.record(frozen=True, slots=True)
class Pickled(records.CachedHash):
    name: str
    size: int = 0


@records.record(frozen=True)
class Outer:
    inner: tuple[Pickled, ...]
    table: dict[str, Pickled]


def test_cached_hash_pickle_and_nested_asdict() -> None:
    one = Pickled("a", 2)
    assert hash(one) == hash(("a", 2))
    for twin in (pickle.loads(pickle.dumps(one)), copy.copy(one), copy.deepcopy(one)):
        assert twin == one and hash(twin) == hash(one)
    outer = Outer((one,), {"k": one})
    assert records.asdict(outer) == {
        "inner": ({"name": "a", "size": 2},),
        "table": {"k": {"name": "a", "size": 2}},
    }
    with pytest.raises(TypeError):
        records.asdict(Outer)  # type: ignore[call-overload]  # a class


def test_post_init_explicit_methods_and_inheritance() -> None:
    @records.record(frozen=True)
    class Base:
        a: int
        b: int = 2

        def __post_init__(self) -> None:
            object.__setattr__(self, "seen", self.a + self.b)

        def __hash__(self) -> int:
            return 42

        def __repr__(self) -> str:
            return "mine"

    @records.record(frozen=True)
    class Child(Base):
        c: int = 5

    base = Base(1)
    assert base.seen == 3 and hash(base) == 42 and repr(base) == "mine"  # type: ignore[attr-defined]
    child = Child(1, 2, 3)
    assert [f.name for f in records.fields(child)] == ["a", "b", "c"]
    assert child.seen == 3  # type: ignore[attr-defined]
    assert child != Base(1, 2)


def test_a_redefined_field_keeps_its_place() -> None:
    @records.record
    class Base:
        a: int = 1
        b: int = 2

    @records.record
    class Child(Base):
        a: int = 5
        c: int = 3

    @dataclasses.dataclass
    class ReferenceBase:
        a: int = 1
        b: int = 2

    @dataclasses.dataclass
    class Reference(ReferenceBase):
        a: int = 5
        c: int = 3

    names = [f.name for f in records.fields(Child)]
    assert names == [f.name for f in dataclasses.fields(Reference)] == ["a", "b", "c"]
    child, reference = Child(10, 20), Reference(10, 20)
    assert (child.a, child.b, child.c) == (reference.a, reference.b, reference.c) == (10, 20, 3)


def test_declaration_errors_are_dataclass_errors() -> None:
    with pytest.raises(ValueError, match="mutable default"):

        @records.record
        class Mutable:
            items: list[int] = []  # noqa: RUF012

    with pytest.raises(TypeError, match="non-default argument"):

        @records.record
        class Order:
            a: int = 1
            b: int  # type: ignore[misc]

    with pytest.raises(ValueError):
        records.field(default=1, default_factory=int)  # type: ignore[call-overload]


def test_the_commands_do_not_import_dataclasses() -> None:
    # the point of records.py: `import dataclasses` imports inspect, ast, dis, tokenize...
    code = (
        "import sys, multihome.cli, multihome.host.operations, multihome.kernel.writer, multihome.host.confirm;"
        "import multihome.cli.routing, multihome.cli.persist, multihome.cli.daemon;"
        "print(sorted(m for m in ('dataclasses', 'inspect', 'typing') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    (("a",), {}),
    (("a", 4, ("t",)), {"note": "n"}),
    ((), {"name": "a", "hidden": 1}),
    (("a",), {"extra": {"k": 1}, "size": 2}),
    ((), {}),  # missing name
    (("a", 1, (), "", 0, {}, "too many"), {}),
    (("a",), {"name": "twice"}),
    (("a",), {"nonsense": 1}),
]


@pytest.mark.parametrize("frozen,slots", [(True, True), (True, False), (False, False)])
def test_arguments_bind_as_a_dataclass_before_and_after_compiling(
    frozen: bool, slots: bool
) -> None:
    # the first object of a class compiles its __init__: the arguments bind (and are
    # refused) as the dataclass's own __init__ binds them, for the first call and later ones
    mine = _declare(records.record, records.field, frozen, slots, False)
    theirs = _declare(dataclasses.dataclass, dataclasses.field, frozen, slots, False)
    for _round in range(2):
        for args, kwargs in CALLS:
            try:
                expected: object = theirs(*args, **kwargs)
            except TypeError as error:
                with pytest.raises(TypeError) as raised:
                    mine(*args, **kwargs)
                assert (
                    str(raised.value).split("__init__() ")[1] == str(error).split("__init__() ")[1]
                )
            else:
                made = mine(*args, **kwargs)
                assert repr(made) == repr(expected)
                if frozen:
                    assert hash(made) == hash(expected)
    assert vars(mine)["__init__"].__code__.co_varnames[0] == "__self"  # compiled
