"""The only module that writes rules, routes and sysctls: a list of changes, all or nothing.

Rules and routes go to the kernel in batches, each request answered on its own
(transport.py). After a refusal, the changes that took effect are known from the answers,
and exactly those are undone, in reverse order, before the error is reported: what to undo
is decided from what this write did (the state read before it, the answers), never from a
later read, which would also show what others changed meanwhile. Sysctls are written last,
one by one, under the same rule. A failed write leaves the kernel as it was.

A rule delete is sent only where the kernel can take it for no other rule (rulelist.py):
one that would remove a foreign rule ahead of multihome's is refused before anything is
written, and an undo that would is left undone and reported.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Sequence

from multihome import RT_PROTOS
from multihome.core.model import Action, Change, Family, HostState, Route, Rule, Sysctl
from multihome.errors import KernelError, PrivilegeError
from multihome.kernel.codec import RTM_DELROUTE, RTM_DELRULE, RTM_NEWROUTE, RTM_NEWRULE
from multihome.kernel.discover import SYSCTL_ROOT
from multihome.kernel.objects import route_request, rule_request
from multihome.kernel.rulelist import RuleList
from multihome.kernel.transport import Refusal, RtnlSocket, TransportError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import NoReturn

RT_PROTOS_DIR = "/etc/iproute2/rt_protos.d"


def _encode(change: Change, ifindex: dict[str, int]) -> bytes:
    obj = change.obj
    if isinstance(obj, Rule):
        return rule_request(RTM_NEWRULE if change.action is Action.ADD else RTM_DELRULE, obj)
    assert isinstance(obj, Route)
    for dev in obj.devices():  # the route's own device, or each nexthop's
        if dev not in ifindex:
            raise KernelError(
                f"cannot {change.action.value} route {obj.ip_args()}: interface {dev} is gone",
                hint="the interfaces changed while multihome ran; run the command again",
            )
    kind = RTM_NEWROUTE if change.action is Action.ADD else RTM_DELROUTE
    return route_request(kind, obj, ifindex)


def _command(change: Change) -> str:
    """A change of a rule or route as the `ip` command that makes it."""
    obj = change.obj
    assert isinstance(obj, Rule | Route)
    kind = "rule" if isinstance(obj, Rule) else "route"
    return f"ip -{obj.family.version} {kind} {change.action.value} {obj.ip_args()}"


def write_sysctl(sysctl: Sysctl) -> None:
    with open(f"{SYSCTL_ROOT}/{sysctl.path}", "w", encoding="ascii") as file:
        file.write(sysctl.value)


def _follow(rules: RuleList, change: Change) -> None:
    """Follow one change of a rule in the list (routes and sysctls: nothing to follow)."""
    if isinstance(change.obj, Rule):
        if change.action is Action.ADD:
            rules.add(change.obj)
        else:
            rules.delete(change.obj)


def _deleted_rules(changes: Sequence[Change]) -> set[Rule]:
    return {c.obj for c in changes if c.action is Action.DELETE and isinstance(c.obj, Rule)}


def _rule_list(state: HostState, deleted: set[Rule]) -> RuleList | None:
    """The rules a delete of `deleted` could take, in the kernel's order; None where every
    one of them is a rule that is deleted too (then which goes first changes nothing)."""
    touched = {(r.family, r.priority) for r in deleted}  # a request names the priority
    rules = [r for r in state.rules if (r.family, r.priority) in touched]
    if all(r in deleted for r in rules):
        return None
    return RuleList(rules)


def _check_deletes(routing: Sequence[Change], state: HostState) -> None:
    """Refuse the write, before any of it, if a rule delete would remove a rule that this
    write does not delete."""
    deleted = _deleted_rules(routing)
    rules = _rule_list(state, deleted) if deleted else None
    if rules is None:
        return
    for change in routing:
        rule = change.obj
        if not isinstance(rule, Rule):
            continue
        target = rules.target(rule)
        if change.action is Action.DELETE and target is not None and target not in deleted:
            raise KernelError(
                f"cannot delete rule `{rule.ip_args()}`: the kernel deletes the first"
                f" rule that matches a delete request, and that is `{_foreign(target)}`,"
                " ahead of it, which a request cannot tell apart (it does not name the"
                " selectors a rule lacks); nothing was changed",
                hint="that rule is not multihome's: delete it and add it again (it then comes"
                " after multihome's rules of its priority), or give it another priority",
            )
        _follow(rules, change)


def _foreign(rule: Rule) -> str:
    text = rule.ip_args()
    return text + " and selectors multihome does not write" if rule.other_selectors else text


def apply(changes: Sequence[Change], state: HostState) -> None:
    """Make every change, or none: on the first failure, undo what was done and raise.
    `state` is what was read before the changes were planned, in the kernel's order."""
    ifindex = {i.name: i.index for i in state.interfaces}
    routing = [c for c in changes if not isinstance(c.obj, Sysctl)]
    sysctls = [c for c in changes if isinstance(c.obj, Sysctl)]
    requests = [_encode(c, ifindex) for c in routing]
    _check_deletes(routing, state)
    with RtnlSocket() as rtnl:
        try:
            verdicts = rtnl.transact(requests) if requests else []
        except TransportError as error:
            done = [c for c, v in zip(routing, error.verdicts, strict=False) if v is None]
            lost = routing[error.answered : error.sent]
            cause = (
                f"talking to the kernel failed after {error.answered} of {len(routing)}"
                f" rule and route changes: {error.strerror or error}"
            )
            _undo(done, state, ifindex, cause, lost)
        done = [c for c, v in zip(routing, verdicts, strict=True) if v is None]
        refused = [(n, v) for n, v in enumerate(verdicts) if v is not None]
        if refused:
            number, refusal = refused[0]
            if refusal.errno == errno.EPERM and not done:
                raise PrivilegeError("changing rules and routes needs CAP_NET_ADMIN", "run as root")
            more = f", and {len(refused) - 1} more were refused" if len(refused) > 1 else ""
            _undo(
                done,
                state,
                ifindex,
                f"the kernel refused `{_command(routing[number])}` (request {number + 1} of"
                f" {len(routing)}{more}): {refusal}",
                hint=_refusal_hint(routing[number], refusal),
            )
        for change in sysctls:
            try:
                write_sysctl(change.obj)  # type: ignore[arg-type]
            except OSError as error:
                _undo(
                    done,
                    state,
                    ifindex,
                    f"writing `{change.describe()[2:]}` failed: {error.strerror or error}",
                )
            done.append(change)
    if routing:
        register_protocol_name()


def _refusal_hint(change: Change, refusal: Refusal) -> str:
    """What to do about a refused change, where more can be said than in general: a kernel
    built without IPV6_SUBTREES refuses every IPv6 route from a prefix with EINVAL (its
    extended ack says "Specifying source address requires IPV6_SUBTREES to be enabled")."""
    obj = change.obj
    if (
        refusal.errno == errno.EINVAL
        and ("IPV6_SUBTREES" in refusal.message or not refusal.message)
        and change.action is Action.ADD
        and isinstance(obj, Route)
        and obj.family is Family.INET6
        and obj.source is not None
    ):
        return (
            "nothing was changed; this kernel takes no IPv6 route from a prefix (it lacks"
            " IPV6_SUBTREES): set `ipv6_source_routes = false` in [multihome] of the config"
        )
    return ""


def _undo(
    done: list[Change],
    state: HostState,
    ifindex: dict[str, int],
    cause: str,
    lost: Sequence[Change] = (),
    hint: str = "",
) -> NoReturn:
    """Undo `done`, the changes this write made (in order), and raise what happened (with
    `hint` where everything was undone, else what is said then)."""
    undo = [c.inverse() for c in reversed(done)]
    deleted = _deleted_rules(undo)
    rules = _rule_list(state, deleted) if deleted else None
    if rules is not None:
        for change in done:
            _follow(rules, change)
    leftovers: list[str] = []
    undo_routing: list[Change] = []
    for change in undo:
        if isinstance(change.obj, Sysctl):
            try:
                write_sysctl(change.obj)
            except OSError as error:
                leftovers.append(f"{change.describe()}: {error.strerror}")
            continue
        if rules is not None and isinstance(change.obj, Rule):
            target = rules.target(change.obj)
            if change.action is Action.DELETE and target is not None and target not in deleted:
                leftovers.append(
                    f"{change.describe()}: not sent, the kernel would delete"
                    f" `{_foreign(target)}` ahead of it instead"
                )
                continue
            _follow(rules, change)
        undo_routing.append(change)
    if undo_routing:
        try:
            with RtnlSocket() as rtnl:  # a new socket: the one that failed may be broken
                verdicts = rtnl.transact([_encode(c, ifindex) for c in undo_routing])
        except OSError as error:
            leftovers.append(f"{len(undo_routing)} rules and routes: {error.strerror or error}")
        else:
            for change, verdict in zip(undo_routing, verdicts, strict=True):
                if verdict is not None:
                    leftovers.append(f"{change.describe()}: {verdict}")
    if lost:
        leftovers.append(
            f"{len(lost)} changes whose answers were lost, so it is not known whether the kernel"
            f" made them: {'; '.join(c.describe() for c in lost[:10])}"
            + (" ..." if len(lost) > 10 else "")
        )
    if leftovers:
        raise KernelError(
            cause + "; rolling back also failed for: " + "; ".join(leftovers),
            hint="the host is NOT as before; `multihome remove` deletes what multihome owns",
        )
    raise KernelError(
        cause + f"; all {len(done)} changes already made were undone",
        hint=hint or "nothing was changed; check the interfaces and addresses named above",
    )


def register_protocol_name() -> None:
    """Let `ip` show 'multihome' instead of the protocol number, where iproute2 allows it."""
    if not os.path.isdir(RT_PROTOS_DIR):
        return
    # Only cosmetics: where /etc is read-only, `ip` shows the number instead of the name.
    # Created, never replaced (O_EXCL: an existing file or a link planted there stays as it
    # is), with its mode whatever the umask.
    path = os.path.join(RT_PROTOS_DIR, "multihome.conf")
    with contextlib.suppress(OSError):
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644
        )
        try:
            os.fchmod(fd, 0o644)
            os.write(fd, RT_PROTOS.encode("ascii"))
        finally:
            os.close(fd)
