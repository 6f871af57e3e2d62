"""Which rule the kernel deletes for a rule delete request, through the changes of a write.

The kernel deletes the first rule, in list order, that matches every field the request
names; a field the request leaves out, or leaves 0, matches anything, and the `not` flag is
not compared (fib_rules.c, rule_find; measured on 6.18: `ip rule del from 10.0.0.1 lookup
100` deletes an `ipproto tcp` or a `not` rule of that source ahead of the plain one). A
request cannot say "and no ipproto", so no request names multihome's rule alone while a
foreign rule with the same fields and more selectors sits ahead of it. The list starts as
a dump lists the rules (the kernel's order) and follows the write: an added rule goes after
every rule of its priority (fib_nl_newrule).
"""

from __future__ import annotations

from collections.abc import Iterable

from multihome.core.model import Family, IPNetwork, Rule

Entry = list[object]  # [rule, alive]: an entry outlives its deletion; lists keep their order


class RuleList:
    """The rules of a namespace, in the kernel's order, as a write changes them."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        # by what every request of multihome names: family and priority, and the source
        self.by_priority: dict[tuple[Family, int], list[Entry]] = {}
        self.by_source: dict[tuple[Family, int, IPNetwork | None], list[Entry]] = {}
        for rule in rules:
            self.add(rule)

    def add(self, rule: Rule) -> None:
        entry: Entry = [rule, True]
        self.by_priority.setdefault((rule.family, rule.priority), []).append(entry)
        self.by_source.setdefault((rule.family, rule.priority, rule.src), []).append(entry)

    def target(self, rule: Rule) -> Rule | None:
        """The rule a delete request naming `rule` (objects.rule_message) removes, if any."""
        if rule.src is not None:
            candidates = self.by_source.get((rule.family, rule.priority, rule.src), [])
        else:  # a request without a source matches rules of every source
            candidates = self.by_priority.get((rule.family, rule.priority), [])
        for entry in candidates:
            found = entry[0]
            assert isinstance(found, Rule)
            if entry[1] and matches(rule, found):
                return found
        return None

    def delete(self, rule: Rule) -> Rule | None:
        """Delete what a request naming `rule` deletes; that rule."""
        found = self.target(rule)
        if found is not None:
            for entry in self.by_source[found.family, found.priority, found.src]:
                if entry[1] and entry[0] is found:
                    entry[1] = False
                    break
        return found


def matches(request: Rule, rule: Rule) -> bool:
    """Whether the kernel takes `rule` for the one a delete request naming `request` means
    (family, priority and source as the lists hold them)."""
    return (
        (not request.table or rule.table == request.table)
        and (request.src is None or rule.src == request.src)
        and (
            request.suppress_prefixlen is None
            or rule.suppress_prefixlen == request.suppress_prefixlen
        )
        and (not request.fwmark or (rule.fwmark or 0) == request.fwmark)
        and (not request.fwmask or (rule.fwmask or 0) == request.fwmask)
        and (not request.protocol or rule.protocol == request.protocol)
    )
