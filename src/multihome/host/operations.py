"""The commands' work, without printing: observe -> plan -> diff -> apply, and remove.

The cli package parses arguments and prints; the lab and tests call these the same way.
"""

from __future__ import annotations

import os
from ipaddress import IPv4Address, IPv4Network

from multihome.core.config import DEFAULT_PATH, Config
from multihome.core.diff import diff
from multihome.core.model import Action, Change, Desired, Family, HostState, Route, Rule, Sysctl
from multihome.core.plan import plan
from multihome.core.records import record, replace
from multihome.errors import MultihomeError, PrivilegeError, StateError
from multihome.host import configfile as config_file
from multihome.host import state
from multihome.kernel import discover, namespace

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:  # show and plan import this module; only apply and export need these
    from typing import Any

    from multihome.render import Rendered

if TYPE_CHECKING:
    from multihome.core.firewall import Firewall
    from multihome.kernel.nftables import TableChange
    from multihome.kernel.reader import Decoded


@record(frozen=True)
class Outcome:
    """What a command found or did."""

    config: Config
    host: HostState
    desired: Desired
    changes: tuple[Change, ...]
    warnings: tuple[str, ...] = ()  # it worked, but the user should know
    table: TableChange | None = None  # gateway mode: multihome's nftables table
    table_refused: str = ""  # reconcile: why the table was left as it was (a mark overlap)
    # apply handed to the running `multihome watch`: its pid and the changes it made
    watch_pid: int = 0
    by_watch: tuple[str, ...] = ()
    # apply with inbound pinning: port-forwarded connections open before it that got their
    # uplink's mark (None: none were looked for)
    remarked: int | None = None
    firewall: Firewall | None = None  # the NAT and mark rules the plan read (host mode)

    @property
    def changed(self) -> bool:
        """Whether anything changes (or changed): routing, sysctls or the nftables table."""
        return bool(self.changes) or self.table is not None or bool(self.by_watch)


def with_pd_records(cfg: Config, host: HostState) -> HostState:
    """The host's state with the PD clients' records, where gateway mode routes IPv6."""
    if cfg.gateway is None or not cfg.ipv6:
        return host
    from multihome.core.records import replace
    from multihome.host import pd

    return replace(host, pd_records=pd.read_leases(cfg.gateway.pd_lease_dir))


def recognising(cfg: Config) -> Config:
    """The config, its ownership knowing the layout `multihome install` persisted on this
    host (its manifest): after a reboot the stack brings that layout back under its own
    protocol, and multihome takes it for its plan's without adding or removing it."""
    from multihome import INSTALL_MANIFEST

    if not os.path.exists(os.path.join("/", INSTALL_MANIFEST)):  # no import, no read: most hosts
        return cfg
    from multihome.core.records import replace
    from multihome.host.install import installed_layout

    try:
        layout = installed_layout("/")
    except MultihomeError:  # damaged or unreadable: install and uninstall say so; the rest
        return cfg  # works as without an install (remove above all)
    return replace(cfg, ownership=replace(cfg.ownership, installed=layout)) if layout else cfg


def observe(config_path: str | None) -> tuple[Config, HostState, state.Record]:
    cfg = recognising(config_file.load(config_path))
    host = with_pd_records(cfg, discover.read_state())
    return cfg, host, state.load(host.netns_id, namespace.cookie())


UNREADABLE_RULESET = (
    "the nftables ruleset is readable by root only: gateway mode's table and the forwarding"
    " checks were skipped (run as root to see them)"
)


def read_firewall(cfg: Config, host: HostState) -> Firewall | None:
    """The host's NAT and mark rules, where inbound pinning may need them: host mode with
    pin_inbound on a host that forwards (None elsewhere: nothing is read)."""
    if cfg.gateway is not None or not cfg.pin_inbound:
        return None
    from multihome.core import gateway

    if host.sysctls.get(gateway.FORWARDING) != "1":
        return None
    from multihome.kernel import firewall

    return firewall.read()


def preview(config_path: str | None) -> Outcome:
    """What `apply` would do (reads only; other software's marks are the doctor's to report,
    and a ruleset a non-root user cannot read is a warning)."""
    cfg, host, record = observe(config_path)
    found = read_firewall(cfg, host)
    desired = _planned(cfg, host, firewall=found)
    changes = tuple(diff(desired, host, record.sysctl_originals))
    try:
        table = _table_change(cfg, host, desired, record, refuse=False)
    except PrivilegeError:
        return Outcome(cfg, host, desired, changes, (UNREADABLE_RULESET,), firewall=found)
    return Outcome(cfg, host, desired, changes, table=table, firewall=found)


# where nft is missing, the nft form's uplinks keep their prefix rules (a rule each, slower,
# but working): no uplink has as many prefixes as this
NO_SETS = 2**32


def _planned(
    cfg: Config,
    host: HostState,
    down: frozenset[str] = frozenset(),
    down6: frozenset[str] = frozenset(),
    firewall: Firewall | None = None,
) -> Desired:
    """plan(), without what only nft(8) can write where it is not installed (host mode:
    gateway mode needs it and says so): inbound pinning is left out, and the nft form of
    source selection falls back to a rule pair per prefix, each said in a note."""
    desired = plan(cfg, host, down, down6, firewall)
    layout = desired.gateway
    if layout is None or cfg.gateway is not None:
        return desired
    from multihome.kernel import tools

    if tools.find("nft") is not None:
        return desired
    notes = []
    if layout.marks:
        firewall = None
        notes.append(
            "nft is not installed: inbound pinning is left out, so port-forwarded"
            " connections answer by main's default route only; apt-get install nftables"
        )
    sets_above = None
    if layout.sources is not None:
        sets_above = NO_SETS  # no uplink has as many prefixes
        notes.append(
            "nft is not installed: the uplinks whose addresses need more prefixes than rules"
            " serve well keep a rule pair per prefix (slower lookups); apt-get install nftables"
        )
    desired = plan(cfg, host, down, down6, firewall, sets_above=sets_above)
    return replace(desired, notes=(*desired.notes, *notes))


class MarkOverlapError(MultihomeError):
    """Other software uses bits of the mark mask: apply refuses to write the table."""


def _overlap_error(cfg: Config, users: list[str]) -> MultihomeError:
    return MarkOverlapError(
        f"the mark bits of mark_mask 0x{cfg.mark_mask:08X} are used"
        " by other software: " + "; ".join(users),
        hint="set [multihome] mark_mask to bits nobody else uses (the README's section"
        " \"Gateway mode\" lists which software uses which mark bits)",
    )


def _table_change(
    cfg: Config,
    host: HostState,
    desired: Desired,
    record: state.Record,
    refuse: bool = True,
    remove: bool = False,
) -> TableChange | None:
    """Gateway mode: what to do to multihome's nftables table (with `refuse`, raises when
    other software uses the bits of the mark mask). Without [gateway] and no table applied,
    nothing to read; but `remove` looks for the table wherever the kernel has it, since an
    exported script may have made it without apply's record."""
    if desired.gateway is None and not record.nft_table:
        if not remove:
            return None
        from multihome.kernel import nfnetlink  # (asked over netlink first: no nft process)

        if nfnetlink.exists() is False:
            return None
        from multihome.kernel import tools

        if not tools.find("nft"):
            return None
    from multihome.core import gateway
    from multihome.kernel import nftables

    ruleset = nftables.ruleset()
    if cfg.gateway is not None and desired.gateway is not None and refuse:
        # (host mode's pinning checked the overlap when it was planned, and left itself out)
        from multihome.kernel import firewall

        users = gateway.overlaps(cfg, host.rules, firewall.read(ruleset))
        if users:
            raise _overlap_error(cfg, users)
    written = state.read_json(host.netns_id, NFT_CONTENT) or {}
    return nftables.change_for(
        desired.gateway, nftables.current(ruleset), str(written.get("content", ""))
    )


# The content of multihome's nftables table as the kernel had it after multihome wrote
# it (a digest): an edit by anyone else is drift, whatever it keeps of the table's shape.
NFT_CONTENT = "nft.json"


def _remember_table(netns_id: int, table: TableChange) -> None:
    from multihome.kernel import nftables

    if table.layout is None:
        state.remove(netns_id, NFT_CONTENT)
    elif not table.elements:  # (source sets' elements are not in the content: nothing new)
        state.write_json(netns_id, NFT_CONTENT, {"content": nftables.content_now()}, 0o600)


def _record_after(record: state.Record, changes: tuple[Change, ...]) -> state.Record:
    """Remember the first original value of each sysctl set; forget restored ones."""
    originals = dict(record.sysctl_originals)
    for change in changes:
        if change.action is Action.SET and isinstance(change.obj, Sysctl):
            path = change.obj.path
            if path not in originals and change.previous is not None:
                originals[path] = change.previous
            elif originals.get(path) == change.obj.value:
                del originals[path]
    return state.Record(sysctl_originals=originals)


def owned_after(
    cfg: Config, host: HostState, changes: tuple[Change, ...]
) -> tuple[list[Rule], list[Route]]:
    """What multihome owns once `changes` are made on `host` (no second read needed)."""
    deleted = {c.obj for c in changes if c.action is Action.DELETE}
    added = [c.obj for c in changes if c.action is Action.ADD]
    owned_rules, owned_routes = cfg.ownership.owned(host)
    if deleted:  # (a watch reconcile that only adds need not look up 2,000 rules)
        owned_rules = [r for r in owned_rules if r not in deleted]
        owned_routes = [r for r in owned_routes if r not in deleted]
    rules, routes = owned_rules, owned_routes
    rules += [r for r in added if isinstance(r, Rule)]
    routes += [r for r in added if isinstance(r, Route)]
    return rules, routes


def _converge(
    config_path: str | None,
    remove: bool,
    confirm_seconds: float | None,
    down: frozenset[str] = frozenset(),
    down6: frozenset[str] = frozenset(),
    keep_table_on_overlap: bool = False,
    decoded: Decoded | None = None,
    config: Config | None = None,
    remark: bool = False,
) -> Outcome:
    from multihome.host import confirm
    from multihome.kernel import writer

    cfg = recognising(config if config is not None else config_file.load(config_path))
    refused = ""
    netns_id = namespace.identity()
    with state.lock(netns_id):
        confirm.refuse_if_pending(netns_id)
        host = discover.read_state(decoded, addresses=not remove)
        if not remove:  # (remove needs only what multihome owns: no lease is read)
            host = with_pd_records(cfg, host)
        cookie = namespace.cookie()
        record = state.load(netns_id, cookie)
        found = None if remove else read_firewall(cfg, host)
        desired = Desired(cfg.ownership) if remove else _planned(cfg, host, down, down6, found)
        changes = tuple(diff(desired, host, record.sysctl_originals))
        try:
            table = _table_change(cfg, host, desired, record, remove=remove)
        except MarkOverlapError as error:
            if not keep_table_on_overlap:
                raise
            # watch: the routing part (the failover of the balancing route) still goes in;
            # the table stays as it is until the overlap is gone
            table, refused = None, error.message
        if changes:
            writer.apply(changes, host)  # all or nothing: from here on, every change is made
        if table is not None:
            _replace_table(table, changes, host)
        if cfg.gateway is not None or remove:  # NPTv6 (gateway mode's [gateway] npt)
            _replace_npt(desired, changes, host, table)
        if changes or table is not None:
            rules, routes = owned_after(cfg, host, changes)
            after = _record_after(record, changes)
            after.netns_cookie = cookie
            after.nft_table = record.nft_table if refused else desired.gateway is not None
            _record_or_undo(netns_id, after, rules, routes, changes, host, table)
            if table is not None:  # (its own record: without it drift is judged by shape)
                _remember_table(netns_id, table)
            if confirm_seconds is not None:  # inside the lock: no other apply comes between
                owned_rules, owned_routes = cfg.ownership.owned(host)
                snapshot = confirm.Snapshot(
                    cfg.ownership,
                    rules=tuple(owned_rules),
                    routes=tuple(owned_routes),
                    sysctls=tuple(
                        Sysctl(c.obj.path, c.previous)
                        for c in changes
                        if isinstance(c.obj, Sysctl) and c.previous is not None
                    ),
                    record=record,
                    nft_previous=table.previous if table is not None else None,
                )
                confirm.arm(netns_id, snapshot, confirm_seconds)
    warnings = _announce(desired, changes)
    remarked = None
    if remark and desired.gateway is not None and not refused:
        remarked, trouble = remark_connections(desired, host, found)
        warnings += trouble
    return Outcome(cfg, host, desired, changes, warnings, table, refused, remarked=remarked)


def remark_connections(
    desired: Desired, host: HostState, found: Firewall | None
) -> tuple[int | None, tuple[str, ...]]:
    """Inbound pinning (and gateway mode), once on apply: the port-forwarded connections
    open before it (their conntrack entries carry no mark) get the mark of the uplink whose
    address they came to, so their replies stop leaving by main's default route. How many,
    and warnings (apply has worked either way: only those older connections keep leaking).
    `found`: the firewall as the plan read it (read here in gateway mode)."""
    from multihome.core import gateway
    from multihome.kernel import conntrack, firewall, tools

    layout = desired.gateway
    if layout is None or not layout.marks:  # no pinning: the source sets alone mark nothing
        return None, ()
    if tools.find("conntrack") is None:
        return None, (
            "conntrack(8) is not installed: port-forwarded connections open before apply"
            " keep their old path until they end (apt-get install conntrack)",
        )
    if found is None:
        found = firewall.read()
    names = {u.name for u in desired.uplinks}
    local = gateway.LocalTargets(host)
    # where the port forwards lead (a connection whose reply comes from there was DNATed)
    targets = sorted(
        {
            r.address
            for r in found.dnat()
            if isinstance(r.address, IPv4Address) and local.of(r.address, names) is not None
        }
    )
    count = 0
    for uplink in desired.uplinks:
        value = layout.mark_of(uplink.name)
        if value is None:
            continue
        # an uplink selected by an nft set has no source prefixes: its addresses, each
        prefixes = uplink.sources or tuple(
            IPv4Network(a.ip.ip) for a in uplink.addresses_in(Family.INET)
        )
        for prefix in prefixes:
            if not isinstance(prefix, IPv4Network):
                continue
            for target in targets:
                try:
                    count += conntrack.remark(prefix, target, value, layout.mask)
                except MultihomeError as error:
                    note = f"re-marking the connections open before apply: {error.message}"
                    return count, (note,)
    return count, ()


def _replace_table(table: TableChange, changes: tuple[Change, ...], host: HostState) -> None:
    """Write the nftables part after the routing part; if nftables refuses, undo the routing
    part, so that both are as before."""
    from multihome.kernel import nftables, writer

    try:
        nftables.apply(table)
    except MultihomeError as error:
        if changes:
            try:
                writer.apply([c.inverse() for c in reversed(changes)], host)
            except MultihomeError as undo:  # the first error stays the one reported
                error.message += (
                    f"; undoing the {len(changes)} routing changes also failed: {undo.message}"
                )
                error.hint = (
                    "the routing changes are in place but NOT recorded, the nftables table"
                    " is as before; run `multihome apply` again once nft works"
                )
            else:
                error.message += f"; the {len(changes)} routing changes made were undone"
            error.args = (error.message,)
        raise


def _replace_npt(
    desired: Desired, changes: tuple[Change, ...], host: HostState, table: TableChange | None
) -> None:
    """Write the NPTv6 chains after the routing part and the nftables table; if ip6tables
    refuses, undo those two, so that all three are as before."""
    from multihome.kernel import npt

    try:
        npt.apply(desired.npt)
    except MultihomeError as error:
        # (imported for the undo only: remove asks on every host, nftables.py brings much)
        from multihome.kernel import nftables, writer

        undone = []
        try:
            if table is not None:
                nftables.undo(table)
                undone.append("the nftables table")
            if changes:
                writer.apply([c.inverse() for c in reversed(changes)], host)
                undone.append(f"the {len(changes)} routing changes")
        except MultihomeError as undo:  # the first error stays the one reported
            error.message += f"; undoing the change failed: {undo.message}"
        else:
            if undone:
                error.message += f"; {' and '.join(undone)} were undone"
        error.args = (error.message,)
        raise


def _record_or_undo(
    netns_id: int,
    record: state.Record,
    rules: list[Rule],
    routes: list[Route],
    changes: tuple[Change, ...],
    host: HostState,
    table: TableChange | None,
) -> None:
    """The change and its record succeed or fail together: without the record, `remove`
    could not put the original sysctls back, so a change that cannot be recorded is undone
    (the nftables table and the routing part); an undo that fails is added to the message,
    never raised instead of it."""
    try:
        state.save(netns_id, record, rules, routes)
    except StateError as error:
        left: list[str] = []  # what is still in place
        failures: list[str] = []
        if table is not None:
            from multihome.kernel import nftables

            try:
                nftables.undo(table)
            except MultihomeError as undo:
                left.append("the nftables table")
                failures.append(f"undoing the nftables table failed: {undo.message}")
        if changes:
            from multihome.kernel import writer

            try:
                writer.apply([c.inverse() for c in reversed(changes)], host)
            except MultihomeError as undo:
                left.append(f"the {len(changes)} routing changes")
                failures.append(f"undoing the routing changes failed: {undo.message}")
        if failures:
            raise StateError(
                f"{error.message}; " + "; ".join(failures),
                hint=" and ".join(left) + " are in place but NOT recorded (the rest was"
                " undone); fix the state directory, then run `multihome apply` again",
            ) from None
        raise StateError(
            f"{error.message}; the change was undone (the host is as before)", hint=error.hint
        ) from None


def _announce(desired: Desired, changes: tuple[Change, ...]) -> tuple[str, ...]:
    """After the ARP sysctls changed, correct the neighbours' caches at once."""
    warnings: list[str] = []
    fixed = {
        c.obj.interface
        for c in changes
        if isinstance(c.obj, Sysctl) and c.obj.path.endswith("/arp_ignore")
    }
    if not fixed:
        return ()
    from multihome.kernel import announce  # imports socket: only when there is something to say

    for uplink in desired.uplinks:
        if uplink.name in fixed:
            addresses = [a.ip.ip for a in uplink.addresses_in(Family.INET)]
            try:
                announce.gratuitous_arp(uplink.name, addresses)  # type: ignore[arg-type]
            except OSError as error:  # the routing is right; only the neighbours' caches lag
                warnings.append(
                    f"could not announce {uplink.name}'s addresses ({error.strerror}):"
                    " neighbours update when their ARP entries expire"
                )
    return tuple(warnings)


def apply(config_path: str | None, confirm_seconds: float | None = None) -> Outcome:
    """Make the kernel match the plan; no change when it already does. With
    `confirm_seconds`, the change is reverted unless `confirm_pending` follows in time.
    While `multihome watch` runs here, it gets the request: it owns the routing (and its
    failover goes on while it guards a change awaiting confirmation)."""
    from multihome.host import handoff

    request = {
        "action": "apply",
        "config": os.path.abspath(config_path or DEFAULT_PATH),  # the default is a path too
        "confirm": confirm_seconds,
    }
    handed = handoff.ask_watch(namespace.identity(), request)
    if handed is None:
        return _converge(
            config_path, remove=False, confirm_seconds=confirm_seconds, remark=True
        )
    pid, answer = handed
    if answer.get("error"):
        raise MultihomeError(
            f"multihome watch (pid {pid}) keeps this namespace's routing: {answer['error']}",
            hint=str(answer.get("hint") or handoff.how_to_stop(pid)),
        )
    cfg, host, _ = observe(config_path)
    found = read_firewall(cfg, host)
    desired = _planned(cfg, host, firewall=found)
    remarked, warnings = remark_connections(desired, host, found)
    return Outcome(
        cfg,
        host,
        desired,
        (),
        warnings,
        watch_pid=pid,
        by_watch=tuple(str(line) for line in answer.get("changes", ())),
        remarked=remarked,
    )


def remove(config_path: str | None, confirm_seconds: float | None = None) -> Outcome:
    """Remove every rule and route multihome owns and restore the sysctls it changed. A
    `multihome watch` running here is stopped first (it would put everything back), and
    none starts until the removal is over."""
    from multihome.host import handoff

    held, stopped = handoff.stop_watch(namespace.identity())
    try:
        outcome = _converge(config_path, remove=True, confirm_seconds=confirm_seconds)
    finally:
        held.release()
    notes = _installed_stays(outcome)
    if notes:
        outcome = Outcome(
            outcome.config,
            outcome.host,
            outcome.desired,
            outcome.changes,
            (*outcome.warnings, *notes),
            outcome.table,
            outcome.table_refused,
        )
    if stopped:
        note = (
            f"multihome watch (pid {stopped}) was stopped first, so that it does not put the"
            " routing back; start it again (systemctl start multihome-watch) to re-apply"
        )
        return Outcome(
            outcome.config,
            outcome.host,
            outcome.desired,
            outcome.changes,
            (*outcome.warnings, note),
            outcome.table,
            outcome.table_refused,
        )
    return outcome


def _installed_stays(outcome: Outcome) -> tuple[str, ...]:
    """remove leaves what `multihome install` persisted to the stack that brings it back at
    every boot (whole: its rules keep their tables); say so, and what takes it out."""
    own = outcome.config.ownership
    if not own.installed:
        return ()
    deleted = {c.obj for c in outcome.changes if c.action is Action.DELETE}
    present: list[Rule | Route] = [*outcome.host.rules, *outcome.host.routes]
    stays = [o for o in present if own.is_installed(o) and o not in deleted]
    if not stays:
        return ()
    return (
        f"{len(stays)} rules and routes stay: `multihome install` wrote them into the host's"
        " network stack, which brings them back at every boot; `multihome uninstall` takes"
        " them out (files and kernel)",
    )


def refuse_while_watched(what: str) -> None:
    """`install` on the live host: refused while `multihome watch` owns the routing here."""
    from multihome.host import handoff

    pid = state.holder(namespace.identity(), state.WATCH_LOCK, handoff.WATCH)
    if pid is not None:
        raise MultihomeError(
            f"multihome watch (pid {pid or '?'}) keeps this namespace's routing: {what} would"
            " change it under its feet",
            hint=handoff.how_to_stop(pid),
        )


def reconcile(
    config_path: str | None,
    down: frozenset[str],
    down6: frozenset[str] = frozenset(),
    config: Config | None = None,
    decoded: Decoded | None = None,
) -> Outcome:
    """One round of `multihome watch`: apply the plan for the uplinks' current health (`down`:
    dead over IPv4, `down6`: over IPv6), with `config` instead of the file's when given. A
    mark overlap leaves the nftables table as it is (Outcome.table_refused) instead of
    failing the round. `decoded`: the watch's own (reader.Decoded)."""
    return _converge(
        config_path,
        remove=False,
        confirm_seconds=None,
        down=down,
        down6=down6,
        keep_table_on_overlap=True,
        config=config,
        decoded=decoded,
    )


def confirm_pending(keep: bool = True) -> tuple[str, float | None]:
    """`multihome confirm`: keep the change awaiting confirmation in this namespace (or
    revert it now); the outcome, and the time of a revert."""
    from multihome.host import confirm

    return confirm.confirm(namespace.identity(), keep=keep)


def diagnose(config_path: str | None) -> Any:
    """`multihome doctor`: findings from the live state and the kernel's own route lookups."""
    from multihome.core import doctor  # only this command needs it
    from multihome.core.plan import roles, uplink_names

    outcome = preview(config_path)
    uplinks = uplink_names(roles(outcome.config, outcome.host))
    from multihome.core.sourcemarks import marks_by_address

    marks = marks_by_address(outcome.desired)  # where an nft set selects the sources
    lookups = discover.route_lookups(outcome.host, doctor.probes(outcome.host, uplinks), marks)
    report = doctor.diagnose(
        outcome.host,
        lookups,
        outcome.desired,
        list(outcome.changes),
        uplinks,
        _table_drift(outcome.table),
    )
    return _ipv6_router_findings(outcome, _forwarding_findings(outcome, report))


def _ipv6_router_findings(outcome: Outcome, report: Any) -> Any:
    """A router with delegated IPv6 prefixes: where each prefix's traffic leaves, and whether
    the RA daemon deprecates a dead uplink's prefix (gateway_doctor.py)."""
    from multihome.core import doctor, gateway_doctor
    from multihome.host import ra

    gateway = outcome.config.gateway
    if gateway is None or not outcome.desired.delegations:
        return report
    target = doctor.off_link_targets(outcome.host).get(Family.INET6)
    probes = gateway_doctor.delegation_probes(outcome.host, outcome.desired, target)
    lookups = discover.route_lookups(outcome.host, probes)
    notes = report.notes
    drop_in = None
    if gateway.ra_daemon:
        where = gateway.ra_config if gateway.ra_daemon == "radvd" else gateway.ra_conf_dir
        try:
            drop_in = ra.read_config(gateway.ra_daemon, where)
        except MultihomeError as error:
            notes = (*notes, f"the RA daemon's configuration: {error.message}")
    extra = gateway_doctor.ipv6_router_findings(
        outcome.host, outcome.desired, lookups, target, drop_in, gateway.ra_daemon
    )
    merged = sorted(
        [*report.findings, *extra], key=lambda f: f.severity is not doctor.Severity.ERROR
    )
    return doctor.Report(findings=tuple(merged), notes=notes)


def _table_drift(table: TableChange | None) -> str | None:
    """How multihome's nftables table differs from the plan, for the doctor's drift check."""
    if table is None:
        return None
    name = "nftables table inet multihome"
    if table.layout is None:
        return f"{name} is left over (the plan has no [gateway])"
    if not table.previous:
        return f"{name} is missing (deleted, or flushed by `nft flush ruleset`)"
    return f"{name} differs from the plan (a rule or chain changed)"


def _forwarding_findings(outcome: Outcome, report: Any) -> Any:
    """On a host that forwards, gateway mode's checks too (they read the firewall: the
    nftables ruleset and iptables' rules), and the route each port forward's replies take."""
    from multihome.core import doctor, gateway, gateway_doctor
    from multihome.kernel import firewall, nftables, tools

    if outcome.host.sysctls.get(gateway.FORWARDING) != "1":
        return report
    cfg, host, desired = outcome.config, outcome.host, outcome.desired
    ruleset = None
    if tools.find(nftables.NFT) is not None:
        try:
            ruleset = nftables.ruleset()
        except PrivilegeError:
            notes = (*report.notes, UNREADABLE_RULESET)
            return doctor.Report(findings=report.findings, notes=notes)
    found = outcome.firewall if outcome.firewall is not None else firewall.read(ruleset)
    # the marks replies carry: those of multihome's table when the kernel has it as planned
    live = desired.gateway if outcome.table is None else None
    probes = gateway_doctor.reply_probes(host, [u.name for u in desired.uplinks], found, live)
    # (one lookup per reply path: a container's many published ports share theirs)
    keys = list(dict.fromkeys(p.key for p in probes))
    lookups = discover.forwarded_lookups(host, keys) if keys else {}
    extra = gateway_doctor.findings(
        host,
        ruleset,
        cfg.mark_mask,
        cfg.gateway is not None,
        cfg.ownership,
        found,
        (probes, lookups),
        cfg.pin_inbound,
    )
    if not extra:
        return report
    merged = sorted(
        [*report.findings, *extra], key=lambda f: f.severity is not doctor.Severity.ERROR
    )
    return doctor.Report(findings=tuple(merged), notes=report.notes)


def export(
    config_path: str | None, format_name: str, overrides: dict[str, str], executable: str
) -> Rendered:
    """`multihome export`: the plan rendered for one network stack."""
    from multihome.render import Options, registry

    renderer, _ = registry()[format_name]
    outcome = preview(config_path)
    names = {**discover.network_files(outcome.host), **overrides}
    options = Options(executable, names, kinds(outcome.host), ra_writable(outcome.config))
    return renderer(outcome.desired, options)


def ra_writable(cfg: Config) -> tuple[str, ...]:
    """What the watch writes of the RA daemon's configuration ([gateway] ra_daemon): the
    drop-in directory of dnsmasq, the directory of radvd.conf (written by a rename)."""
    gateway = cfg.gateway
    if gateway is None or not gateway.ra_daemon:
        return ()
    if gateway.ra_daemon == "radvd":
        return (os.path.dirname(gateway.ra_config) or "/",)
    return (gateway.ra_conf_dir,)


def kinds(host: HostState) -> dict[str, str]:
    """Each interface's rtnetlink kind (bond, vlan, bridge, ...), for the renderers."""
    return {i.name: i.kind for i in host.interfaces}


def install_files(config_path: str | None, format_name: str, root: str, executable: str) -> Any:
    """`multihome install`: the plan, in the files of the stack that manages the uplinks."""
    from multihome.host import install as installer
    from multihome.render import Options

    if root == "/":  # NetworkManager's copies of an earlier install look like another owner's
        refuse_while_watched("install")
        installer.uninstall_networkmanager(root, settle=10.0)  # (no protocol): out first
    outcome = preview(config_path)
    if not outcome.desired.uplinks:
        raise MultihomeError(
            "nothing to install: " + ("; ".join(outcome.desired.notes) or "no uplinks"),
        )
    options = Options(
        executable,
        kinds=kinds(outcome.host),
        writable=ra_writable(outcome.config),
        check_executable=root == "/",
    )
    return installer.install(outcome.desired, outcome.host, root, format_name, options)
