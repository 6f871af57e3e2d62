"""PURE: multihome.service, which runs `multihome apply` once the network is online (the
fallback for what a stack cannot express); multihome-watch.service, the daemon (Type=notify,
with a watchdog), which starts before the network (Before=network-pre.target: the stacks
start after it is ready) and sets each uplink's rules as its address and route arrive, so
that no reply leaves unprotected while the network comes up (`install` enables it where no
stack manages the uplinks); and a sysctl.d file for the sysctls."""

from __future__ import annotations

import re

from multihome.core.model import Desired, Sysctl
from multihome.render import HEADER, Options, Rendered

# What multihome needs, and nothing more, as systemd-networkd and keepalived sandbox
# themselves; each permission says why it is there. A later feature that needs more (say,
# signalling an RA daemon) adds its own line here, with its reason.
SANDBOX = """
# -- sandbox: what multihome needs, and why --------------------------------------------
# routes, rules, nftables, conntrack and the per-interface sysctls: CAP_NET_ADMIN; the
# health probes (raw ICMP sockets) and gratuitous ARP after an apply (a packet socket):
# CAP_NET_RAW. A --metrics port below 1024 would also need CAP_NET_BIND_SERVICE: add it
# with `systemctl edit` if you choose one.
CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW
NoNewPrivileges=yes
# netlink (routes, rules, events, nft and conntrack), IPv4 and IPv6 (probes, metrics),
# unix (sd_notify), packet (gratuitous ARP)
RestrictAddressFamilies=AF_NETLINK AF_INET AF_INET6 AF_UNIX AF_PACKET
# The whole file system read-only but what multihome writes: its state (what it created,
# to undo it exactly) under /run/multihome, and the name of its routing protocol for `ip`
# in /etc/iproute2/rt_protos.d (written only where that directory exists: "-"). /proc/sys
# stays writable: apply sets ARP and rp_filter sysctls there, so no ProtectKernelTunables.
ProtectSystem=strict
RuntimeDirectory=multihome
RuntimeDirectoryMode=0755
RuntimeDirectoryPreserve=yes
ReadWritePaths=-/etc/iproute2/rt_protos.d
# nothing below is used: no home directories, no temporary files, no devices, no kernel
# modules (the kernel loads nf_tables itself), no clock, no other namespaces
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RemoveIPC=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
UMask=0022
# a known bound: the daemon holds a few descriptors (netlink, a probe socket per uplink
# and family, at most 16 metrics connections); a peer cannot make it need more
LimitNOFILE=1024
"""


# where the units' sandbox cannot see a program: ProtectHome hides /home, /root and
# /run/user; PrivateTmp gives the units /tmp and /var/tmp of their own
HIDDEN = ("/home/", "/root/", "/run/user/", "/tmp/", "/var/tmp/")


def _writable(options: Options) -> str:
    """ReadWritePaths= for what the watch writes besides its state: the RA daemon's
    configuration where [gateway] ra_daemon is set (RFC 8475 deprecation)."""
    return "".join(f"ReadWritePaths=-{command(path)}\n" for path in options.writable)


def command(executable: str, *args: str) -> str:
    """An Exec*= command line: `%` and `$` doubled (systemd reads %x as a specifier and
    expands $VAR), the path in double quotes with `\\` and `"` escaped when it holds a space
    or a quote."""
    words = []
    for word in (executable, *args):
        word = word.replace("%", "%%").replace("$", "$$")
        if re.search(r"[\s\"'\\;]", word):
            word = '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
        words.append(word)
    return " ".join(words)


def render(desired: Desired, options: Options) -> Rendered:
    unit = f"""# {HEADER}
[Unit]
Description=multihome: source-based policy routing for a multi-homed host
After=network-online.target
Wants=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={command(options.executable, 'apply')}
ExecStop={command(options.executable, 'remove')}
{SANDBOX}
[Install]
WantedBy=multi-user.target
"""
    watch = f"""# {HEADER}
[Unit]
Description=multihome watch: keep source-based policy routing right as the host changes
# ready before any network stack starts: each address is routed by its source as it comes
Before=network-pre.target
Wants=network-pre.target
# after the firewall's own rules are loaded (Debian's nftables.conf begins with `flush
# ruleset`, which would take multihome's table out again)
After=nftables.service

[Service]
Type=notify
ExecStart={command(options.executable, 'watch')}
Restart=on-failure
RestartSec=2
WatchdogSec=30
{SANDBOX}{_writable(options)}
[Install]
WantedBy=multi-user.target
"""
    files = {"multihome.service": unit, "multihome-watch.service": watch}
    notes = []
    hidden = next((d for d in HIDDEN if options.executable.startswith(d)), None)
    if hidden is not None and options.check_executable:
        notes.append(
            f"the units run {options.executable}, under {hidden}, which their sandbox hides"
            " (ProtectHome=yes, PrivateTmp=yes): they would fail at boot; install multihome"
            " elsewhere (the Debian package puts it in /usr/bin; or a virtualenv under /opt)"
            " and run install again from there"
        )
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
