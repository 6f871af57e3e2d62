"""Commands that keep the plan across reboots: export, install, uninstall."""

from __future__ import annotations

import argparse
import os
import sys

from multihome.cli import Command
from multihome.cli.output import EXIT_OK, print_json
from multihome.errors import MultihomeError


def cmd_export(args: argparse.Namespace) -> int:
    from multihome.host import files, operations

    overrides = {}
    for item in args.network_file:
        name, _, file = item.partition("=")
        if not name or not file.endswith(".network") or "/" in file:
            raise MultihomeError(
                f"--network-file takes IFACE=NAME.network, not {item!r}",
                hint="e.g. --network-file eth0=10-netplan-eth0.network",
            )
        overrides[name] = file
    rendered = operations.export(args.config, args.format, overrides, _executable())
    to_dir = args.output not in (None, "", "-")  # `-o -`: standard output, as without -o
    written = files.write_tree(args.output, rendered.files) if to_dir else []
    if args.json:
        print_json(
            {
                "format": args.format,
                "files": rendered.files,
                "written": written,
                "notes": rendered.notes,
            }
        )
        return EXIT_OK
    for note in rendered.notes:
        print(f"note: {note}", file=sys.stderr)
    if written:
        print("\n".join(f"wrote {path}" for path in written))
    else:
        for path, text in sorted(rendered.files.items()):
            print(f"# ==> {path} <==\n{text}")
    return EXIT_OK


def _executable() -> str:
    """The multihome that is running (units written by install must run this one, not
    another on PATH); for `python -m multihome`, the one on PATH."""
    import shutil

    running = os.path.abspath(sys.argv[0])
    if os.path.basename(running) == "multihome" and os.access(running, os.X_OK):
        return running
    return shutil.which("multihome") or running


def cmd_install(args: argparse.Namespace) -> int:
    from multihome.host import operations

    done = operations.install_files(args.config, args.format, args.root, _executable())
    if args.json:
        print_json(done)
        return EXIT_OK
    print(f"install: {', '.join(done.formats)} ({'; '.join(done.reasons)})")
    for path in done.backups:
        print(f"  kept aside {path}")
    for path in done.written:
        print(f"  wrote {path}")
    for path in done.removed:
        print(f"  removed {path} (from an earlier install)")
    for note in done.notes:
        print(f"note: {note}")
    return EXIT_OK


def cmd_uninstall(args: argparse.Namespace) -> int:
    from multihome.host import install as install_module

    done = install_module.uninstall(args.root)
    removed = done.removed
    if args.json:
        print_json(
            {
                "removed": removed,
                "kept": done.kept,
                "directories": done.directories,
                "kernel": done.kernel,
            }
        )
        return EXIT_OK
    for path in done.kept:
        print(f"  kept {path}")
    for line in done.kernel:
        print(f"  took out of the kernel: {line}")
    if removed:
        print("\n".join(f"  removed {path}" for path in removed))
        connections = sum(1 for r in removed if r.startswith("NetworkManager connection"))
        files = len(removed) - connections
        parts = [f"{files} files removed"] if files else []
        if connections:
            parts.append(f"multihome's items taken out of {connections} NetworkManager connections")
        if done.directories:
            parts.append(f"{len(done.directories)} directories it made")
        print(f"uninstall: {'; '.join(parts)}")
    elif not done.kept:
        print("uninstall: nothing installed")
    return EXIT_OK


# render.registry()'s formats and what each is for, spelled out so that building the parser
# does not import every renderer (a unit test checks that the two agree).
FORMATS = {
    "ip": "a shell script of ip/sysctl commands (idempotent, set -e)",
    "networkd": "systemd-networkd .network drop-ins, one per uplink",
    "netplan": "a netplan YAML that merges with the host's own",
    "systemd": "multihome.service (apply at boot), multihome-watch.service, sysctl.d",
    "networkmanager": "nmcli commands for the uplinks' connections",
    "ifupdown": "post-up/pre-down stanzas for interfaces.d",
}


def _formats() -> dict[str, str]:
    return FORMATS


def _export_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--format",
        required=True,
        choices=sorted(_formats()),
        help="the network stack to render for: "
        + "; ".join(f"{name}: {what}" for name, what in sorted(_formats().items())),
    )
    cmd.add_argument(
        "-o", "--output", metavar="DIR", help="write the files under DIR (-: print them)"
    )
    cmd.add_argument(
        "--network-file",
        action="append",
        default=[],
        metavar="IFACE=NAME",
        help="networkd: the .network file managing IFACE (default: as networkd "
        "reports it, else 10-IFACE.network)",
    )


def _root_argument(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--root", default="/", metavar="DIR", help="install under DIR (default /)")


def _install_arguments(cmd: argparse.ArgumentParser) -> None:
    _root_argument(cmd)
    cmd.add_argument(
        "--format",
        default="auto",
        choices=("auto", *sorted(_formats())),
        help="auto (default): the stack that manages the uplinks",
    )


COMMANDS = (
    Command(
        "export",
        cmd_export,
        "render the plan for a network stack, to keep it across reboots",
        "Render the plan for the host's network stack: "
        + "; ".join(f"{name}: {text}" for name, text in _formats().items())
        + ". Without -o the files are printed; with -o DIR they are written under DIR "
        "(ip: multihome.sh; networkd: NAME.network.d/90-multihome.conf per uplink; netplan: "
        "90-multihome.yaml; networkmanager: multihome-nmcli.sh; ifupdown: multihome; systemd: "
        "multihome.service, multihome-watch.service and, when the plan sets sysctls, "
        "90-multihome.conf for sysctl.d). Scripts are written executable.",
        _export_arguments,
    ),
    Command(
        "install",
        cmd_install,
        "write the plan into the host's network stack, to survive reboots",
        "Detect which stack manages the uplinks (systemd-networkd, also under netplan; "
        "NetworkManager; ifupdown; none) and write the plan where it reads it, atomically, "
        "keeping aside any file it replaces; no stack or a mix gets multihome-watch.service "
        "(enabled: it starts before the network). "
        "Files multihome did not write are never edited. `multihome uninstall` removes "
        "exactly what was written.",
        _install_arguments,
    ),
    Command(
        "uninstall",
        cmd_uninstall,
        "remove what `multihome install` wrote",
        "Remove every file the last install wrote (as listed in its manifest under "
        "var/lib/multihome) and put back what they replaced.",
        _root_argument,
    ),
)
