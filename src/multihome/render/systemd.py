"""PURE: multihome.service, which runs `multihome apply` once the network is online (the
fallback for what a stack cannot express, and the whole fix where no stack manages the
uplinks); multihome-watch.service, the daemon (Type=notify, with a watchdog), to enable
instead where the host changes; and a sysctl.d file for the sysctls."""

from __future__ import annotations

import re

from multihome.core.model import Desired, Sysctl
from multihome.render import HEADER, Options, Rendered


def render(desired: Desired, options: Options) -> Rendered:
    unit = f"""# {HEADER}
[Unit]
Description=multihome: source-based policy routing for a multi-homed host
After=network-online.target
Wants=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={options.executable} apply
ExecStop={options.executable} remove

[Install]
WantedBy=multi-user.target
"""
    watch = f"""# {HEADER}
[Unit]
Description=multihome watch: keep source-based policy routing right as the host changes
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
ExecStart={options.executable} watch
Restart=on-failure
RestartSec=2
WatchdogSec=30

[Install]
WantedBy=multi-user.target
"""
    files = {"multihome.service": unit, "multihome-watch.service": watch}
    notes = []
    if desired.sysctls:
        lines = [f"# {HEADER}"]
        for sysctl in desired.sysctls:
            if sysctl_d_key(sysctl) is None:
                notes.append(
                    f"{sysctl.path} is left out of sysctl.d: a name with `=` or `\\` cannot"
                    " be written there; multihome.service (`multihome apply`) sets it"
                )
            else:
                lines.append(f"{sysctl_d_key(sysctl)} = {sysctl.value}")
        files["90-multihome.conf"] = "\n".join(lines) + "\n"
    return Rendered(files, tuple(notes))


def sysctl_d_key(sysctl: Sysctl) -> str | None:
    """The sysctl's key as sysctl.d(5) takes it, or None when it cannot be written there.
    systemd-sysctl and `sysctl -p` read a key with `*`, `?` or `[` as a glob over all keys
    (`up*` would set upA's too), and a backslash before one of them as that character
    itself; a key ends at the first `=`."""
    if "=" in sysctl.path or "\\" in sysctl.path:
        return None
    return re.sub(r"([*?[])", r"\\\1", sysctl.name)
