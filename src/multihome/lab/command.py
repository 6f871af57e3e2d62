"""`multihome lab`: the command, its options and its progress bar."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from multihome.cli import Command
from multihome.cli.output import EXIT_OK, print_json
from multihome.errors import MultihomeError
from multihome.lab import MAX_NICS, SCENARIO_NAMES

if TYPE_CHECKING:
    from multihome.lab.run import LabOptions


class ProgressBar:
    """One line per phase on a terminal: [#####.....] 12000/20000 requests."""

    def __init__(self) -> None:
        self.phase = ""

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase != self.phase:
            if self.phase:
                sys.stderr.write("\n")
            self.phase = phase
        filled = int(30 * done / total) if total else 30
        bar = "#" * filled + "." * (30 - filled)
        sys.stderr.write(f"\r{phase:>11} [{bar}] {done}/{total} requests")
        if done >= total:
            sys.stderr.write("\n")
            self.phase = ""
        sys.stderr.flush()


PHASE_TITLES = {
    "destination": "phase destination: stock routing (by destination only)",
    "policy": "phase policy: after `multihome apply` in the server namespace",
}


def _options(args: argparse.Namespace) -> LabOptions:
    from multihome.lab.run import LabOptions
    from multihome.lab.units import parse_rate, parse_size

    try:
        size = parse_size(args.size)
        rate = parse_rate(args.link_rate) if args.link_rate else None
    except ValueError as error:
        raise MultihomeError(str(error)) from None
    if not 2 <= args.nics <= MAX_NICS:
        raise MultihomeError(f"--nics must be 2-{MAX_NICS}, not {args.nics}")
    if args.requests < 1 or args.concurrency < 1 or size < 1:
        raise MultihomeError("--requests, --concurrency and --size must be positive")
    return LabOptions(
        scenario=args.scenario,
        nics=args.nics,
        size=size,
        requests=args.requests,
        concurrency=args.concurrency,
        link_rate_bps=rate,
        keep=args.keep,
    )


def cmd_lab(args: argparse.Namespace) -> int:
    # The lab needs pyroute2 and more; other commands should not pay for importing it.
    from multihome.lab import plot as lab_plot
    from multihome.lab import report as lab_report
    from multihome.lab import run as lab_run

    if args.netns:
        raise MultihomeError("the lab builds its own namespaces; --netns does not apply")
    if args.scenario == "clean":
        removed = lab_run.clean()
        if args.json:
            print_json({"removed": removed})
        else:
            print(f"removed {len(removed)} lab namespaces" + (": " if removed else ""))
            print("\n".join(f"  {name}" for name in removed)) if removed else None
        return EXIT_OK
    if args.scenario == "gateway":
        return _gateway(args)
    options = _options(args)
    interactive = sys.stderr.isatty() and not args.json

    def quiet(phase: str, done: int, total: int) -> None:
        return None

    result, kept = lab_run.run(options, ProgressBar() if interactive else quiet)
    if args.plot:
        lab_plot.write_png(result, args.plot)
    if args.json:
        print_json(lab_report.to_json(result))
    else:
        rate = (
            f", tbf {options.link_rate_bps / 1e6:g} Mbit/s per NIC" if options.link_rate_bps else ""
        )
        print(
            f"multihome lab {options.scenario}: {options.nics} server NICs, "
            f"{options.requests} requests of {options.size} bytes, "
            f"{options.concurrency} in parallel{rate}"
        )
        for phase in result.phases:
            print(f"\n== {PHASE_TITLES[phase.name]}\n")
            print("\n".join(lab_report.listing(phase)))
        print("== summary (share of the server's packets per NIC)\n")
        print("\n".join(lab_report.summary(result)))
        if args.plot:
            print(f"\nplot written to {args.plot}")
    if kept is not None:
        print(
            f"\nthe network is still up (--keep); enter the server with\n"
            f"  ip netns exec {kept.ns('server')} bash\n"
            f"namespaces: {' '.join(kept.ns(h) for h in kept.topology.hosts)}\n"
            "remove it with: multihome lab clean",
            file=sys.stderr if args.json else sys.stdout,
        )
    return EXIT_OK


def _gateway(args: argparse.Namespace) -> int:
    """`multihome lab gateway`: round-robin SNAT, then gateway mode, then a failover."""
    from multihome.lab import gateway_run
    from multihome.lab.run import check_privileges

    check_privileges()
    if not 2 <= args.nics <= MAX_NICS:
        raise MultihomeError(f"--nics must be 2-{MAX_NICS}, not {args.nics}")
    options = gateway_run.GatewayOptions(nics=args.nics)
    phases = gateway_run.run(options)
    if args.plot:
        gateway_run.write_png(phases, args.plot)
    if args.json:
        print_json(gateway_run.to_json(options, phases))
        return EXIT_OK
    print(
        f"multihome lab gateway: a router with {options.nics} uplinks, {options.sessions}"
        f" long-lived sessions and {options.rate:g} new connections/s for {options.seconds:g} s"
        " per phase"
    )
    for phase in phases:
        print(f"\n== phase {phase.name}\n")
        print("\n".join(gateway_run.listing(phase)))
    print("\n== summary (share of the router's TX packets per uplink, connections)\n")
    print("\n".join(gateway_run.summary(phases)))
    if args.plot:
        print(f"\nplot written to {args.plot}")
    return EXIT_OK


def _arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "scenario",
        nargs="?",
        default="seed",
        choices=(*SCENARIO_NAMES, "gateway", "clean"),
        help="seed (default): the article's NICs on one switch; two-isp: one ISP per NIC, "
        "with anti-spoofing; gateway: a router balancing a LAN over its uplinks "
        "(round-robin SNAT, gateway mode, failover); clean: remove lab networks left behind",
    )
    cmd.add_argument("--nics", type=int, default=2, help="server NICs, 2-8 (default 2)")
    cmd.add_argument("--size", default="90KB", help="file size (default 90KB = 92,160 bytes)")
    cmd.add_argument("--requests", type=int, default=20000, help="per phase (default 20000)")
    cmd.add_argument("--concurrency", type=int, default=40, help="in parallel (default 40)")
    cmd.add_argument(
        "--link-rate", metavar="RATE", help="rate-limit every server NIC (tc tbf), e.g. 100mbit"
    )
    cmd.add_argument("--plot", metavar="FILE.png", help="write a figure of both phases")
    cmd.add_argument(
        "--keep", action="store_true", help="leave the last phase's network up to explore"
    )


COMMANDS = (
    Command(
        "lab",
        cmd_lab,
        "reproduce the two-NIC web-serving experiment in network namespaces",
        "Build a test network in network namespaces (server, switch, router, client; "
        "documentation addresses only), serve a file many times over every server address, "
        "and compare the server's per-NIC counters with stock routing (phase destination) "
        "and after `multihome apply` (phase policy). Needs root; the host's own network is "
        "never touched. `multihome lab clean` removes networks left behind.",
        _arguments,
    ),
)
