"""The watch's own changes recognised in the events the kernel multicasts for them.

They need no reconcile of their own (it would read, plan and diff everything again, to find
nothing to do)."""

from __future__ import annotations

from collections.abc import Iterable

from multihome.core.model import Route, Rule
from multihome.kernel import codec, objects

Echoes = dict[tuple[int, Rule | Route], int]  # (message type, object) -> events to come


def echoes_of(changes: Iterable[tuple[bool, Rule | Route]]) -> Echoes:
    """The events the kernel will multicast for these changes, (added?, rule or route) each."""
    echoes: Echoes = {}
    for added, obj in changes:
        if isinstance(obj, Rule):
            kind = codec.RTM_NEWRULE if added else codec.RTM_DELRULE
        else:
            kind = codec.RTM_NEWROUTE if added else codec.RTM_DELROUTE
        echoes[kind, obj] = echoes.get((kind, obj), 0) + 1
    return echoes


def only_echoes(data: bytes, echoes: Echoes, names: dict[int, str]) -> bool:
    """Whether every message of this datagram of events is one of `echoes` (each of those it
    holds is taken off)."""
    try:
        return _only_echoes(data, echoes, names)
    except ValueError:  # a malformed message: news, which a reconcile reads for itself
        return False


def _only_echoes(data: bytes, echoes: Echoes, names: dict[int, str]) -> bool:
    mine = True
    for offset, length, kind, _flags, _seq in codec.messages(data):
        start, end = offset + codec.HEADER.size, offset + length
        obj: Rule | Route | None = None
        if kind in (codec.RTM_NEWRULE, codec.RTM_DELRULE):
            obj = objects.rule_of(codec.decode_rule(data, start, end))
        elif kind in (codec.RTM_NEWROUTE, codec.RTM_DELROUTE):
            obj = objects.route_of(codec.decode_route(data, start, end), names)
        count = echoes.get((kind, obj), 0) if obj is not None else 0
        if obj is not None and count:
            if count == 1:
                del echoes[kind, obj]
            else:
                echoes[kind, obj] = count - 1
        else:
            mine = False
    return mine
