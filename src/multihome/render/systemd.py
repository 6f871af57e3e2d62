"""PURE: multihome.service, which runs `multihome apply` once the network is online (the
fallback for what a stack cannot express, and the whole fix where no stack manages the
uplinks); multihome-watch.service, the daemon (Type=notify, with a watchdog), to enable
instead where the host changes; and a sysctl.d file for the sysctls."""

from __future__ import annotations

from multihome.core.model import Desired
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
    if desired.sysctls:
        lines = [f"# {HEADER}"] + [f"{s.name} = {s.value}" for s in desired.sysctls]
        files["90-multihome.conf"] = "\n".join(lines) + "\n"
    return Rendered(files)
