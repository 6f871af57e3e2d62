"""Records: classes of named fields, as `dataclasses` makes them, made without it.

Every command imports a few dozen such classes (the model, the config, the state file), and
`import dataclasses` alone imports `inspect` (with ast, dis, tokenize, ...), while
`dataclass()` then writes and compiles up to eleven methods per class: together more than a
third of the start-up of `multihome show` beyond the interpreter's own. A record is made
from closures over its fields instead, and its `__init__` is compiled when its first object
is made.

The subset of dataclasses multihome uses, with the same behaviour: `record(frozen=,
slots=, order=)` for `dataclass(...)`, `field(default=, default_factory=, compare=, hash=,
repr=)`, `fields`, `replace`, `asdict`, `is_record` (`is_dataclass`) and
`FrozenInstanceError`. Equality compares the fields of objects of the same class, in
order; a frozen record hashes them (an unfrozen one is unhashable), unless the class
defines `__hash__`; `order=True` compares them as tuples; `repr` shows them. A subclass of
`CachedHash` computes its hash once, when it is made. tests/unit/test_records.py holds each
of these against a real dataclass of the same fields; type checkers see dataclasses.
"""

from __future__ import annotations

__all__ = [
    "CachedHash",
    "FrozenInstanceError",
    "asdict",
    "field",
    "fields",
    "is_record",
    "record",
    "replace",
]

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable


class CachedHash:
    """A base for frozen records whose hash is computed once, when they are made (every rule
    and route goes through several sets, and hashing one hashes each field, an address's
    hash in Python code each time)."""

    __slots__ = ("_hash",)
    _hash: int
    __record_hash_key__: Callable[[object], tuple[object, ...]]  # set by record()

    def __hash__(self) -> int:
        try:
            return self._hash
        except AttributeError:  # a copy made without __init__ (pickle, copy)
            value = hash(self.__record_hash_key__(self))
            object.__setattr__(self, "_hash", value)
            return value


if TYPE_CHECKING:
    from dataclasses import FrozenInstanceError, asdict, field, fields, replace
    from dataclasses import dataclass as record
    from dataclasses import is_dataclass as is_record
else:
    import operator

    class _Missing:
        __slots__ = ()

        def __repr__(self) -> str:
            return "MISSING"

    MISSING = _Missing()

    class FrozenInstanceError(AttributeError):
        """Assigning to a field of a frozen record."""

    class Field:
        """A field of a record: its name, default and whether it is compared, hashed, shown."""

        __slots__ = ("compare", "default", "default_factory", "hash", "name", "repr")

        def __init__(self, default, default_factory, compare, hash, repr):
            if default is not MISSING and default_factory is not MISSING:
                raise ValueError("cannot specify both default and default_factory")
            self.name = ""
            self.default = default
            self.default_factory = default_factory
            self.compare = compare
            self.hash = hash
            self.repr = repr

        def __repr__(self):
            return f"Field(name={self.name!r}, default={self.default!r})"

    def field(*, default=MISSING, default_factory=MISSING, compare=True, hash=None, repr=True):
        """A field with a default, a default factory, or left out of comparison or repr."""
        return Field(default, default_factory, compare, hash, repr)

    def fields(obj_or_class):
        """The fields of a record or of its class, in order."""
        try:
            return obj_or_class.__record_fields__
        except AttributeError:
            raise TypeError("must be called with a record type or instance") from None

    def is_record(obj):
        return hasattr(obj, "__record_fields__")

    def replace(obj, /, **changes):
        """A copy of a record with some fields changed."""
        for f in fields(obj):
            if f.name not in changes:
                changes[f.name] = getattr(obj, f.name)
        return obj.__class__(**changes)

    _ATOMS = (str, int, float, bool, bytes, type(None))

    def asdict(obj):
        """A record as a dict of its fields, records inside made dicts too (recursively)."""
        if not is_record(obj) or isinstance(obj, type):
            raise TypeError("asdict() should be called on record instances")
        return _plain(obj)

    def _plain(value):
        if is_record(value) and not isinstance(value, type):
            return {f.name: _plain(getattr(value, f.name)) for f in value.__record_fields__}
        if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
            return type(value)(*[_plain(v) for v in value])
        if isinstance(value, list | tuple):
            return type(value)(_plain(v) for v in value)
        if isinstance(value, dict):
            return type(value)((_plain(k), _plain(v)) for k, v in value.items())
        if isinstance(value, _ATOMS):
            return value
        import copy  # what dataclasses.asdict does with any other value

        return copy.deepcopy(value)

    def record(cls=None, /, *, frozen=False, slots=False, order=False):
        """`dataclass(cls, frozen=..., slots=..., order=...)`, made without dataclasses."""

        def wrap(cls):
            return _process(cls, frozen, slots, order)

        return wrap if cls is None else wrap(cls)

    def _is_classvar(annotation):
        text = annotation if isinstance(annotation, str) else repr(annotation)
        return text.startswith(("ClassVar", "typing.ClassVar"))

    def _process(cls, frozen, slots, order):
        inherited = {}
        for base in reversed(cls.__mro__[1:]):
            for f in base.__dict__.get("__record_fields__", ()):
                inherited[f.name] = f
        own = []
        annotations = cls.__dict__.get("__annotations__", {})  # noqa: RUF063 - not inspect
        for name, annotation in annotations.items():
            if _is_classvar(annotation):
                continue
            value = cls.__dict__.get(name, MISSING)
            f = value if isinstance(value, Field) else Field(value, MISSING, True, None, True)
            f.name = name
            if f.default is not MISSING and type(f.default).__hash__ is None:
                raise ValueError(
                    f"mutable default {type(f.default)} for field {name} is not allowed:"
                    " use default_factory"
                )
            if isinstance(value, Field):  # the class attribute is the default, or nothing
                if f.default is MISSING:
                    delattr(cls, name)
                else:
                    setattr(cls, name, f.default)
            own.append(f)
            inherited[name] = f  # a base's field redefined keeps its place, as in dataclasses
        all_fields = tuple(inherited.values())
        seen_default = False
        for f in all_fields:
            has_default = f.default is not MISSING or f.default_factory is not MISSING
            if seen_default and not has_default:
                raise TypeError(f"non-default argument {f.name!r} follows default argument")
            seen_default = seen_default or has_default
        if slots:
            cls = _with_slots(cls, own, frozen)
        cls.__record_fields__ = all_fields
        _set(cls, "__match_args__", tuple(f.name for f in all_fields))
        _set(cls, "__init__", _lazy_init(cls, frozen))
        compared = [f.name for f in all_fields if f.compare]
        key = _tuple_getter(compared)
        hashed = _tuple_getter(
            [f.name for f in all_fields if (f.compare if f.hash is None else f.hash)]
        )
        cls.__record_hash_key__ = staticmethod(hashed)

        def __eq__(self, other):
            if other.__class__ is self.__class__:
                return key(self) == key(other)
            return NotImplemented

        _set(cls, "__eq__", __eq__)
        if issubclass(cls, CachedHash):
            pass  # CachedHash.__hash__, the value computed by __init__
        elif "__hash__" not in cls.__dict__ or cls.__dict__["__hash__"] is None:
            if frozen:
                cls.__hash__ = lambda self: hash(hashed(self))
            else:
                cls.__hash__ = None
        shown = [f.name for f in all_fields if f.repr]

        def __repr__(self):
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
            return f"{self.__class__.__qualname__}({values})"

        _set(cls, "__repr__", __repr__)
        if order:
            for name, compare in (
                ("__lt__", operator.lt),
                ("__le__", operator.le),
                ("__gt__", operator.gt),
                ("__ge__", operator.ge),
            ):
                setattr(cls, name, _comparison(key, compare, name))
        if frozen:
            names = frozenset(f.name for f in all_fields)

            def __setattr__(self, name, value):
                if type(self) is cls or name in names:
                    raise FrozenInstanceError(f"cannot assign to field {name!r}")
                super(cls, self).__setattr__(name, value)

            def __delattr__(self, name):
                if type(self) is cls or name in names:
                    raise FrozenInstanceError(f"cannot delete field {name!r}")
                super(cls, self).__delattr__(name)

            cls.__setattr__ = __setattr__
            cls.__delattr__ = __delattr__
        return cls

    def _set(cls, name, value):
        """Set a method the class does not define itself (as dataclass() does)."""
        if name not in cls.__dict__:
            setattr(cls, name, value)

    def _with_slots(cls, own, frozen):
        """The class made anew with a slot per field (defaults live in __init__)."""
        namespace = dict(cls.__dict__)
        names = tuple(f.name for f in own)
        namespace["__slots__"] = names
        for name in (*names, "__dict__", "__weakref__"):
            namespace.pop(name, None)
        new = type(cls)(cls.__name__, cls.__bases__, namespace)
        new.__qualname__ = cls.__qualname__
        if frozen:  # copy and pickle cannot set the slots of a frozen object themselves

            def __getstate__(self):
                return [getattr(self, f.name) for f in self.__record_fields__]

            def __setstate__(self, state):
                for f, value in zip(self.__record_fields__, state, strict=True):
                    object.__setattr__(self, f.name, value)

            new.__getstate__ = __getstate__
            new.__setstate__ = __setstate__
        return new

    def _tuple_getter(names):
        """The fields' values as a tuple, in one C call (attrgetter gives a bare value for
        one name)."""
        if len(names) == 1:
            single = operator.attrgetter(names[0])
            return lambda obj: (single(obj),)
        if not names:
            return lambda obj: ()
        return operator.attrgetter(*names)

    def _comparison(key, compare, name):
        def method(self, other):
            if other.__class__ is self.__class__:
                return compare(key(self), key(other))
            return NotImplemented

        method.__name__ = name
        return method

    def _lazy_init(cls, frozen):
        """An __init__ that compiles the class's own on the first object made (compiling
        costs ~0.2 ms a class, and a run makes objects of only some of its classes)."""

        def __init__(self, *args, **kwargs):
            real = _make_init(cls, frozen)
            type.__setattr__(cls, "__init__", real)
            real(self, *args, **kwargs)

        return __init__

    def _make_init(cls, frozen):
        """The class's __init__, compiled: one assignment per field, then __post_init__ and
        the cached hash. A slot is set through its descriptor (a third faster than
        object.__setattr__: rules and routes are made by the thousand)."""
        scope = {"__missing": MISSING, "__set": object.__setattr__, "__hash": hash}
        params, lines = [], []
        for f in cls.__record_fields__:
            value = f.name
            if f.default_factory is not MISSING:
                scope[f"__factory_{f.name}"] = f.default_factory
                params.append(f"{f.name}=__missing")
                value = f"__factory_{f.name}() if {f.name} is __missing else {f.name}"
            elif f.default is not MISSING:
                scope[f"__default_{f.name}"] = f.default
                params.append(f"{f.name}=__default_{f.name}")
            else:
                params.append(f.name)
            slot = _slot(cls, f.name)
            if slot is not None:
                scope[f"__slot_{f.name}"] = slot.__set__
                lines.append(f"__slot_{f.name}(__self, {value})")
            elif frozen:
                lines.append(f"__set(__self, {f.name!r}, {value})")
            else:
                lines.append(f"__self.{f.name} = {value}")
        post_init = hasattr(cls, "__post_init__")
        if post_init:
            lines.append("__self.__post_init__()")
        if issubclass(cls, CachedHash):
            hashed = "".join(
                f"{f.name}, "
                for f in cls.__record_fields__
                if (f.compare if f.hash is None else f.hash)
            )
            if post_init or any(f.default_factory is not MISSING for f in cls.__record_fields__):
                scope["__key"] = cls.__record_hash_key__
                lines.append("__set(__self, '_hash', __hash(__key(__self)))")
            else:  # the arguments are the fields' values
                lines.append(f"__set(__self, '_hash', __hash(({hashed})))")
        source = f"def __init__(__self, {', '.join(params)}):\n"
        source += "".join(f"    {line}\n" for line in lines or ["pass"])
        exec(source, scope)
        init = scope["__init__"]
        init.__qualname__ = f"{cls.__qualname__}.__init__"
        return init

    _MemberDescriptor = type(CachedHash._hash)

    def _slot(cls, name):
        """The slot descriptor of a field, if the field is a slot."""
        for klass in cls.__mro__:
            if name in klass.__dict__:
                found = klass.__dict__[name]
                return found if isinstance(found, _MemberDescriptor) else None
        return None
