"""The only module that writes to the kernel: apply a list of changes, all or nothing.

Rules and routes go to the kernel in batches (netlink.py); the kernel answers every request,
so after a refusal exactly the changes that took effect are known, and they are undone in
reverse order before the error is reported. Sysctls are written last, one by one, under the
same journal. A failed apply leaves the kernel as it was.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence

from multihome import RT_PROTOS
from multihome.core.model import Action, Change, HostState, Route, Rule, Sysctl
from multihome.core.records import record
from multihome.errors import KernelError, PrivilegeError
from multihome.kernel.discover import SYSCTL_ROOT
from multihome.kernel.netlink import (
    RTM_DELROUTE,
    RTM_DELRULE,
    RTM_NEWROUTE,
    RTM_NEWRULE,
    Refusal,
    RtnlSocket,
    encode_route,
    encode_rule,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import NoReturn

RT_PROTOS_DIR = "/etc/iproute2/rt_protos.d"


@record(frozen=True)
class Failure:
    change: Change
    reason: str


def _encode(change: Change, ifindex: dict[str, int]) -> bytes:
    obj = change.obj
    if isinstance(obj, Rule):
        return encode_rule(RTM_NEWRULE if change.action is Action.ADD else RTM_DELRULE, obj)
    assert isinstance(obj, Route)
    for dev in obj.devices():  # the route's own device, or each nexthop's
        if dev not in ifindex:
            raise KernelError(
                f"cannot {change.action.value} route {obj.ip_args()}: interface {dev} is gone",
                hint="the interfaces changed while multihome ran; run the command again",
            )
    index = ifindex.get(obj.dev) if obj.dev is not None else None
    kind = RTM_NEWROUTE if change.action is Action.ADD else RTM_DELROUTE
    return encode_route(kind, obj, index, 0, ifindex)


def write_sysctl(sysctl: Sysctl) -> None:
    with open(f"{SYSCTL_ROOT}/{sysctl.path}", "w", encoding="ascii") as file:
        file.write(sysctl.value)


def _send(
    rtnl: RtnlSocket, changes: Sequence[Change], ifindex: dict[str, int]
) -> list[Refusal | None]:
    return rtnl.transact([_encode(c, ifindex) for c in changes])


def apply(changes: Sequence[Change], state: HostState) -> None:
    """Make every change, or none: on the first failure, undo what was done and raise."""
    ifindex = {i.name: i.index for i in state.interfaces}
    routing = [c for c in changes if not isinstance(c.obj, Sysctl)]
    sysctls = [c for c in changes if isinstance(c.obj, Sysctl)]
    with RtnlSocket() as rtnl:
        try:
            verdicts = _send(rtnl, routing, ifindex) if routing else []
        except OSError as error:
            # The transport failed (ENOBUFS, EINTR, a socket error), maybe after earlier
            # batches were made, maybe during one whose acks are lost: the kernel itself
            # tells which changes took effect.
            _recover(routing, ifindex, error)
        done = [c for c, v in zip(routing, verdicts, strict=True) if v is None]
        refused = [Failure(c, str(v)) for c, v in zip(routing, verdicts, strict=True) if v]
        if not refused:
            for change in sysctls:
                try:
                    write_sysctl(change.obj)  # type: ignore[arg-type]
                except OSError as error:
                    refused.append(Failure(change, error.strerror or str(error)))
                    break
                done.append(change)
        if refused:
            cause = refused[0]
            _undo(
                rtnl,
                done,
                ifindex,
                f"the kernel refused `{cause.change.describe()[2:]}`: {cause.reason}",
            )
    if routing:
        register_protocol_name()


def _recover(routing: list[Change], ifindex: dict[str, int], error: OSError) -> NoReturn:
    """After a transport failure: undo the changes the kernel shows as made, and raise."""
    from multihome.kernel import discover

    now = discover.read_state()
    present = set(now.rules) | set(now.routes)
    done = [c for c in routing if (c.obj in present) == (c.action is Action.ADD)]
    if isinstance(error, PermissionError) and not done:
        raise PrivilegeError("changing rules and routes needs CAP_NET_ADMIN", "run as root")
    with RtnlSocket() as fresh:  # the failed socket may still hold the lost batch's acks
        _undo(fresh, done, ifindex, f"talking to the kernel failed: {error.strerror or error}")


def _undo(rtnl: RtnlSocket, done: list[Change], ifindex: dict[str, int], cause: str) -> NoReturn:
    undo = [c.inverse() for c in reversed(done)]
    undo_routing = [c for c in undo if not isinstance(c.obj, Sysctl)]
    leftovers: list[str] = []
    for change in (c for c in undo if isinstance(c.obj, Sysctl)):
        try:
            write_sysctl(change.obj)  # type: ignore[arg-type]
        except OSError as error:
            leftovers.append(f"{change.describe()}: {error.strerror}")
    if undo_routing:
        try:
            verdicts = _send(rtnl, undo_routing, ifindex)
        except OSError as error:
            leftovers.append(f"{len(undo_routing)} rules and routes: {error.strerror or error}")
        else:
            for change, verdict in zip(undo_routing, verdicts, strict=True):
                if verdict is not None:
                    leftovers.append(f"{change.describe()}: {verdict}")
    if leftovers:
        raise KernelError(
            cause + "; rolling back also failed for: " + "; ".join(leftovers),
            hint="the host is NOT as before; `multihome remove` deletes what multihome owns",
        )
    raise KernelError(
        cause + f"; all {len(done)} changes already made were undone",
        hint="nothing was changed; check the interfaces and addresses named above",
    )


def register_protocol_name() -> None:
    """Let `ip` show 'multihome' instead of the protocol number, where iproute2 allows it."""
    if not os.path.isdir(RT_PROTOS_DIR):
        return
    path = os.path.join(RT_PROTOS_DIR, "multihome.conf")
    if os.path.exists(path):
        return
    # Only cosmetics: where /etc is read-only, `ip` shows the number instead of the name.
    with contextlib.suppress(OSError), open(path, "w", encoding="ascii") as file:
        file.write(RT_PROTOS)
