"""multihome watch's part in RFC 8475: after each reconcile, the LAN prefixes of the dead
uplinks' delegations are announced deprecated by the RA daemon (host/ra.py), and announced
again when the uplinks are back; when watch stops, the daemon's configuration is put back.

An uplink counts as dead for its delegations when its IPv6 probes found it dead, or, when it
is not probed over IPv6 (a PD router's WAN often has no global IPv6 address to probe from),
when its IPv4 probes did.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from multihome.core import delegation
from multihome.core.config import Config
from multihome.core.model import Desired
from multihome.errors import MultihomeError
from multihome.host import ra


class Deprecator:
    """The RA daemon's drop-in while watch runs; `log` hears what changed and what failed
    (a failure once until it changes), `hand` runs a restart off the probing thread."""

    def __init__(self, log: Callable[[str], None], hand: Callable[[Callable[[], None]], None]):
        self.log = log
        self.hand = hand
        self.drop_in: ra.RaDropIn | ra.RadvdConfig | None = None
        self.restart: tuple[str, ...] = ()
        self.failure = ""

    def update(
        self,
        config: Config,
        desired: Desired,
        down4: Collection[str],
        down6: Collection[str],
        probed6: Collection[str],
    ) -> None:
        gateway = config.gateway
        if gateway is None or not gateway.ra_daemon:
            self.stop()  # turned off in the config: the daemon's configuration put back
            return
        where = gateway.ra_config if gateway.ra_daemon == "radvd" else gateway.ra_conf_dir
        if self.drop_in is None or self.drop_in.conf_dir != where:
            self.stop()
            self.drop_in = (
                ra.RadvdConfig(where) if gateway.ra_daemon == "radvd" else ra.RaDropIn(where)
            )
        self.restart = gateway.ra_restart
        down = set(down6) | {name for name in down4 if name not in probed6}
        dead = delegation.dead_uplinks(desired, down)
        networks = delegation.deprecated(desired.delegations, dead)
        try:
            changed = self.drop_in.update(networks)
        except MultihomeError as error:
            if error.message != self.failure:
                self.log(f"RA daemon: {error.message}")
            self.failure = error.message
            return
        self.failure = ""
        if changed:
            words = ", ".join(map(str, networks)) or "none"
            self.log(f"RA daemon: prefixes announced deprecated: {words}; restarting it")
            self.hand(self._restart_job(self.restart))

    def _restart_job(self, argv: tuple[str, ...]) -> Callable[[], None]:
        def job() -> None:
            problem = ra.restart(argv)
            if problem is not None:
                self.log(f"RA daemon: {problem}")

        return job

    def stop(self) -> None:
        """Remove the drop-in this watch wrote and restart the daemon (at once)."""
        drop_in, self.drop_in = self.drop_in, None
        if drop_in is None or drop_in.written is None:
            return
        try:
            drop_in.update([])
        except MultihomeError as error:
            self.log(f"RA daemon: {error.message}")
            return
        self.log("RA daemon: its configuration put back; restarting it")
        problem = ra.restart(self.restart)
        if problem is not None:
            self.log(f"RA daemon: {problem}")
