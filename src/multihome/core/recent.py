"""Caches of what the kernel reports, kept while it keeps reporting it.

On a host with 1,000 source addresses every read decodes 2,000 rules and 1,000 addresses,
and every plan makes those rules again. The codec, the model and the planner therefore share
one object per distinct message, address, network and rule: `multihome watch` decodes each
once, not once per reconcile, and the planned rules are the very objects read, so comparing
them is an identity check.

The daemon runs for months while addresses come and go, so a cache keeps only what the
recent reads met: the entries used since the current read began (`now`) and those of the
read before (`before`). `advance()`, called as each read of the kernel begins
(discover.read_state), forgets the older ones. Memory follows the host's state, not its
history; a command that reads once loses nothing.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any, Generic, TypeVar

    K = TypeVar("K")
    V = TypeVar("V")

    class _Generic(Generic[K, V]):
        pass

else:

    class _Generic:  # Recent[K, V] for the type checker, a plain class here
        def __class_getitem__(cls, _item: object) -> type:
            return cls

    K = V = None


class Recent(_Generic[K, V]):
    """One cache: what this read and the one before met (None is never a value)."""

    __slots__ = ("before", "now")

    def __init__(self) -> None:
        self.now: dict[K, V] = {}
        self.before: dict[K, V] = {}
        _caches.append(self)

    def get(self, key: K) -> V | None:
        """The value of `key` if this read or the one before met it (then kept for the
        next read too)."""
        value = self.now.get(key)
        if value is None:
            value = self.before.get(key)
            if value is not None:
                self.now[key] = value
        return value

    def put(self, key: K, value: V) -> V:
        self.now[key] = value
        return value

    def __len__(self) -> int:
        return len(self.now.keys() | self.before.keys())


_caches: list[Recent[Any, Any]] = []  # every cache, each a module's (they live on)


def advance() -> None:
    """A new read begins: what the read before last met and the last did not is forgotten."""
    for cache in _caches:
        cache.before = cache.now
        cache.now = {}
