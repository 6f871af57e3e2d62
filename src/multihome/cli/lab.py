"""`multihome lab`: the command, its options and its progress reports."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from multihome.cli import Command
from multihome.cli.output import EXIT_OK, print_json
from multihome.errors import MultihomeError
from multihome.lab import MAX_NICS, SCENARIO_NAMES

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from multihome.lab.run import LabOptions

DEFAULT_NAME = "demo"  # `--keep` alone: namespaces demo-server, demo-client, ...
# Requests per phase by scenario: in two-isp, half of them fail, and each failure waits for
# the connect timeout, so fewer of them make the run take about as long as the seed's.
DEFAULT_REQUESTS = {"seed": 20000, "two-isp": 4000, "load": 400}
DEFAULT_CONCURRENCY = 40  # lab docker's is its own (lab.docker.DockerOptions)
PROGRESS_EVERY = 5.0  # seconds between progress lines when stderr is not a terminal


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


class ProgressLines:
    """Without a terminal (a log, a pipe, CI): a line every few seconds, and one at the end of
    each phase."""

    def __init__(
        self, every: float = PROGRESS_EVERY, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.every = every
        self.clock = clock
        self.phase = ""
        self.start = self.last = 0.0

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = self.clock()
        if phase != self.phase:
            self.phase, self.start, self.last = phase, now, now
        if done >= total:
            print(
                f"lab: {phase}: {done}/{total} requests done in {now - self.start:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            self.phase = ""
        elif now - self.last >= self.every:
            self.last = now
            print(
                f"lab: {phase}: {done}/{total} requests, {now - self.start:.0f} s",
                file=sys.stderr,
                flush=True,
            )


def _progress() -> ProgressBar | ProgressLines:
    return ProgressBar() if sys.stderr.isatty() else ProgressLines()


PHASE_TITLES = {
    "destination": "phase destination: stock routing (by destination only)",
    "policy": "phase policy: after `multihome apply` in the server namespace",
}


def lab_options(args: argparse.Namespace) -> LabOptions:
    from multihome.core.units import parse_rate, parse_size
    from multihome.lab.run import LabOptions

    try:
        size = parse_size(args.size)
        rate = parse_rate(args.link_rate) if args.link_rate else None
    except ValueError as error:
        raise MultihomeError(str(error)) from None
    _check_nics(args)
    requests = DEFAULT_REQUESTS[args.scenario] if args.requests is None else args.requests
    concurrency = DEFAULT_CONCURRENCY if args.concurrency is None else args.concurrency
    if requests < 1 or concurrency < 1 or size < 1:
        raise MultihomeError("--requests, --concurrency and --size must be positive")
    return LabOptions(
        scenario=args.scenario,
        nics=args.nics,
        size=size,
        requests=requests,
        concurrency=concurrency,
        link_rate_bps=rate,
        keep=args.keep,
    )


def duration_note(options: LabOptions) -> str | None:
    """How long the two-isp destination phase waits for its failing requests."""
    from multihome.lab.workload import CONNECT_TIMEOUT

    if options.scenario != "two-isp":
        return None
    failing = options.requests * (options.nics - 1) // options.nics
    seconds = failing * CONNECT_TIMEOUT / options.concurrency
    return (
        f"lab: two-isp: with stock routing {failing} of the {options.requests} requests fail, "
        f"each after a {CONNECT_TIMEOUT:g} s connect timeout, {options.concurrency} at a time: "
        f"the destination phase takes about {seconds:.0f} s more"
    )


def _kept_text(name: str, host: str = "") -> str:
    """How to use a kept network; `host`: where multihome runs (the server, or the gateway
    lab's router)."""
    from multihome.lab.scenarios import CLIENT, SERVER

    host = host or SERVER
    server = f"{name}-{host}"
    commands = [
        (f"multihome --netns {server} show", f"any multihome command, in the {host}"),
        (f"ip netns exec {server} bash", f"a shell in the {host}"),
        (f"ip netns exec {name}-{CLIENT} bash", "a shell in the client"),
        (f"multihome lab load {name} --requests 400", "downloads over every server address"),
        (f"multihome lab clean {name}", "remove it"),
    ]
    width = max(len(c) for c, _ in commands)
    return "\n".join(
        [
            f"\nlab network {name} is up (--keep): a fresh copy of the lab network with stock "
            "routing, nothing applied, no load yet",
            *(f"  {c.ljust(width)}  # {why}" for c, why in commands),
        ]
    )


def cmd_lab(args: argparse.Namespace) -> int:
    # The lab needs pyroute2 and more; other commands should not pay for importing it.
    from multihome.lab import plot as lab_plot
    from multihome.lab import report as lab_report
    from multihome.lab import run as lab_run

    if args.netns:
        raise MultihomeError("the lab builds its own namespaces; --netns does not apply")
    if args.scenario in ("load", "clean"):
        ignored = [
            option
            for option, value in (
                ("--keep", args.keep),
                ("--plot", args.plot),
                ("--link-rate", args.link_rate),
                ("--all", args.all and args.scenario == "load"),
            )
            if value
        ]
        if ignored:
            raise MultihomeError(f"{', '.join(ignored)} does not go with `lab {args.scenario}`")
    if args.scenario == "clean":
        return _clean(args)
    if args.scenario == "load":
        return _load(args)
    if args.name is not None:
        raise MultihomeError(
            f"unexpected argument {args.name!r}",
            hint=f"to name the network left up: multihome lab {args.scenario} --keep {args.name}",
        )
    if args.all:
        raise MultihomeError("--all goes with `multihome lab clean`")
    _refuse_scenario_as_name(args)
    if args.ipv6 and args.scenario != "gateway":
        raise MultihomeError("--ipv6 goes with `multihome lab gateway`")
    if args.scenario == "gateway" and args.ipv6:
        return _gateway6(args)
    if args.scenario == "gateway":
        return _gateway(args)
    if args.scenario == "docker":
        return _docker(args)
    if args.fail:
        return _failover(args)
    options = lab_options(args)
    if args.plot:
        lab_plot.check(args.plot)  # before the run: a bad path must not cost the results
    note = duration_note(options)
    if note:
        print(note, file=sys.stderr, flush=True)
    result = lab_run.run(options, _progress())
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
        print("\n".join(lab_report.summary(result)), flush=True)
    if options.keep is not None:
        lab_run.keep(options, options.keep)
        print(_kept_text(options.keep), file=sys.stderr if args.json else sys.stdout, flush=True)
    if args.plot:
        lab_plot.write_png(result, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr if args.json else sys.stdout)
    return EXIT_OK


def _load(args: argparse.Namespace) -> int:
    from multihome.core.units import parse_size
    from multihome.lab import run as lab_run

    name = args.name or DEFAULT_NAME
    requests = DEFAULT_REQUESTS["load"] if args.requests is None else args.requests
    try:
        size = parse_size(args.size)
    except ValueError as error:
        raise MultihomeError(str(error)) from None
    concurrency = DEFAULT_CONCURRENCY if args.concurrency is None else args.concurrency
    if requests < 1 or concurrency < 1 or size < 1:
        raise MultihomeError("--requests, --concurrency and --size must be positive")
    outcome = lab_run.load(name, requests, concurrency, size, _progress())
    ok, failed = outcome["ok"], outcome["failed"]
    assert isinstance(ok, dict) and isinstance(failed, dict)
    if args.json:
        print_json({"network": name, "requests": requests, "size": size, **outcome})
        return EXIT_OK
    seconds = outcome["seconds"]
    assert isinstance(seconds, float)
    print(f"lab load {name}: {requests} requests of {size} bytes in {seconds:.1f} s")
    for address in ok:
        print(f"  {address}: {ok[address]} ok, {failed[address]} failed")
    return EXIT_OK


def _clean(args: argparse.Namespace) -> int:
    from multihome.lab import run as lab_run
    from multihome.lab.topology import damaged_records, lab_networks

    names = (args.name,) if args.name else ()
    removed = lab_run.clean(names, everything=args.all)
    left = [r.name for r in lab_networks() if r.kept]
    damaged = damaged_records()
    if args.json:
        print_json(
            {
                "removed": [n for r in removed for n in r.namespaces],
                "networks": [
                    {"name": r.name, "kept": r.kept, "namespaces": list(r.namespaces)}
                    for r in removed
                ],
                "kept": left,
                "damaged": [{"path": p, "namespaces": list(n)} for p, n in damaged],
            }
        )
        return EXIT_OK
    for path, namespaces in damaged:
        shown = " ".join(namespaces) if namespaces else "none can be read from it"
        print(
            f"damaged lab record {path} (left alone): its namespaces: {shown}; remove them"
            " with `ip netns del NAME` if no run uses them, then the file",
            file=sys.stderr,
        )
    for record in removed:
        why = "kept with --keep" if record.kept else f"its run, pid {record.pid}, is gone"
        print(f"removed lab network {record.name} ({why}): {' '.join(record.namespaces)}")
    if not removed:
        print("no lab network to remove")
    if left:
        print(
            f"left up (kept with --keep): {', '.join(left)}; remove one with "
            "`multihome lab clean NAME`, all with `multihome lab clean --all`"
        )
    return EXIT_OK


def _failover(args: argparse.Namespace) -> int:
    """`multihome lab two-isp --fail eth1@10s`: an uplink's ISP dies under load, live."""
    from multihome.lab import failover
    from multihome.lab.run import check_privileges

    if args.scenario != "two-isp":
        raise MultihomeError("--fail goes with `multihome lab two-isp`")
    _refuse(args, ("--keep", "--link-rate", "--requests", "--plot"), "--fail")
    check_privileges()
    _check_nics(args)
    uplink, at, back = failover.parse_fail(args.fail, args.nics)
    options = failover.FailOptions(uplink=uplink, at=at, back=back, nics=args.nics)
    result = failover.run(
        options, lambda text: print(f"lab two-isp --fail: {text}", file=sys.stderr, flush=True)
    )
    if args.json:
        print_json(failover.to_json(result))
        return EXIT_OK
    print(
        f"multihome lab two-isp --fail {args.fail}: {options.nics} uplinks, multihome watch"
        f" with balance = true and the default health settings; the server opens"
        f" {options.rate:g} connections/s ({options.size // 1024} KB each way) and keeps"
        f" {options.sessions} long-lived sessions\n"
    )
    print("\n".join(failover.listing(result)))
    return EXIT_OK


def _refuse(args: argparse.Namespace, options: tuple[str, ...], what: str) -> None:
    """Options a run of `what` does not take, refused together in one line."""
    given = [o for o in options if getattr(args, o.lstrip("-").replace("-", "_"))]
    if given:
        raise MultihomeError(f"{', '.join(given)} does not go with {what}")


def _refuse_scenario_as_name(args: argparse.Namespace) -> None:
    """`lab --keep two-isp` is the seed kept under the name two-isp (argparse gives --keep
    the word): refused, since the user meant `lab two-isp --keep`."""
    if args.keep in (*SCENARIO_NAMES, "gateway", "load", "clean"):
        raise MultihomeError(
            f"--keep {args.keep}: {args.keep!r} names a scenario, not a network to keep",
            hint=f"to keep the {args.keep} network: multihome lab {args.keep} --keep [NAME]",
        )


def _check_nics(args: argparse.Namespace) -> None:
    if not 2 <= args.nics <= MAX_NICS:
        raise MultihomeError(f"--nics must be 2-{MAX_NICS}, not {args.nics}")


def _gateway(args: argparse.Namespace) -> int:
    """`multihome lab gateway`: round-robin SNAT, then gateway mode, then a failover."""
    from multihome.lab import gateway_run
    from multihome.lab.run import check_privileges

    check_privileges()
    _check_nics(args)
    _refuse(args, ("--link-rate", "--requests"), "`lab gateway`")
    if args.keep is not None:  # before the run: a name that is taken must not cost it
        from multihome.lab.run import check_name

        check_name(args.keep)
    options = gateway_run.GatewayOptions(nics=args.nics)
    phases = gateway_run.run(
        options, lambda text: print(f"lab gateway: {text}", file=sys.stderr, flush=True)
    )
    if args.plot:
        gateway_run.write_png(phases, args.plot)
    if args.json:
        print_json(gateway_run.to_json(options, phases))
        _keep_gateway(args)
        return EXIT_OK
    print(
        f"multihome lab gateway: a router with {options.nics} uplinks, {options.sessions}"
        f" long-lived sessions and {options.rate:g} new connections/s for {options.seconds:g} s"
        " per phase"
    )
    for phase in phases:
        print(f"\n== phase {phase.name}\n")
        print("\n".join(gateway_run.listing(phase)))
    print(
        "\n== summary (share of the router's TX packets and of the tracked connections per"
        " uplink; connections)\n"
    )
    print("\n".join(gateway_run.summary(phases)), flush=True)
    if args.plot:
        print(f"\nplot written to {args.plot}")
    _keep_gateway(args)
    return EXIT_OK


def _gateway6(args: argparse.Namespace) -> int:
    """`multihome lab gateway --ipv6`: the LAN's delegated prefixes, stock, with multihome,
    and an ISP's failure under multihome watch with dnsmasq as the RA daemon."""
    from multihome.lab import gateway6_run
    from multihome.lab.gateway6 import MAX_NICS as MAX_NICS6
    from multihome.lab.run import check_privileges

    check_privileges()
    if not 2 <= args.nics <= MAX_NICS6:
        raise MultihomeError(f"--nics must be 2-{MAX_NICS6} with --ipv6, not {args.nics}")
    _refuse(args, ("--keep", "--link-rate", "--requests", "--plot"), "`lab gateway --ipv6`")
    options = gateway6_run.Gateway6Options(nics=args.nics)
    phases = gateway6_run.run(
        options, lambda text: print(f"lab gateway --ipv6: {text}", file=sys.stderr, flush=True)
    )
    if args.json:
        print_json(gateway6_run.to_json(options, phases))
        return EXIT_OK
    print(
        f"multihome lab gateway --ipv6: a router with {options.nics} uplinks, each ISP"
        f" delegating a /48; {options.hosts} LAN hosts with SLAAC from dnsmasq, each opening"
        f" {options.rate:g} connections/s"
    )
    for phase in phases:
        print(f"\n== phase {phase.name}\n")
        print("\n".join(gateway6_run.listing(phase)))
    print("\n== summary (connections of the LAN hosts)\n")
    print("\n".join(gateway6_run.summary(phases)))
    return EXIT_OK


def _keep_gateway(args: argparse.Namespace) -> None:
    """`lab gateway --keep NAME`: a fresh gateway network left up, as the other labs do."""
    from multihome.lab import gateway_run
    from multihome.lab.gateway import ROUTER

    if args.keep is None:
        return
    gateway_run.keep(args.nics, args.keep)
    print(_kept_text(args.keep, ROUTER), file=sys.stderr if args.json else sys.stdout, flush=True)


def _docker(args: argparse.Namespace) -> int:
    """`multihome lab docker`: a container's published port through every ISP, with stock
    routing and after `multihome apply`."""
    from multihome.core.units import parse_size
    from multihome.lab import docker

    _check_nics(args)
    _refuse(args, ("--keep", "--link-rate", "--plot", "--fail"), "`lab docker`")
    try:
        size = parse_size(args.size)
    except ValueError as error:
        raise MultihomeError(str(error)) from None
    defaults = docker.DockerOptions()
    requests = docker.PER_UPLINK * args.nics if args.requests is None else args.requests
    concurrency = defaults.concurrency if args.concurrency is None else args.concurrency
    if requests < 1 or concurrency < 1 or size < 1:
        raise MultihomeError("--requests, --concurrency and --size must be positive")
    options = docker.DockerOptions(
        nics=args.nics, requests=requests, concurrency=concurrency, size=size
    )
    result = docker.run(
        options, lambda text: print(f"lab docker: {text}", file=sys.stderr, flush=True)
    )
    if args.json:
        print_json(docker.to_json(result))
        return EXIT_OK
    print(docker.title(result))
    for phase in result.phases:
        print(f"\n== phase {phase.name}: {docker.PHASE_TITLES[phase.name]}")
        for line in phase.pinning:
            print(f"   {line}")
    print(
        "\n== summary (connections that brought the whole file, per uplink; share of the"
        " server's TX packets per NIC)\n"
    )
    print("\n".join(docker.summary(result)), flush=True)
    return EXIT_OK


def _arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "scenario",
        nargs="?",
        default="seed",
        choices=(*SCENARIO_NAMES, "gateway", "docker", "load", "clean"),
        help="seed (default): the article's NICs on one switch; two-isp: one ISP per NIC, "
        "with anti-spoofing; gateway: a router balancing a LAN over its uplinks "
        "(round-robin SNAT, gateway mode, failover); docker: the real dockerd in the two-ISP "
        "server, a container publishing a port, reached through every ISP (needs docker.io, "
        "busybox-static, iptables); load NAME: the lab's downloads on a kept "
        "network; clean [NAME]: remove lab networks of runs that died, the kept network NAME, "
        "or with --all every kept one",
    )
    cmd.add_argument("name", nargs="?", help="with load and clean: a kept network's name")
    cmd.add_argument("--nics", type=int, default=2, help="server NICs, 2-8 (default 2)")
    cmd.add_argument("--size", default="90KB", help="file size (default 90KB = 92,160 bytes)")
    cmd.add_argument(
        "--requests",
        type=int,
        help="per phase (default 20000; two-isp 4000, whose failing requests wait for a "
        "0.25 s timeout each; load 400; docker 20 per server NIC)",
    )
    cmd.add_argument(
        "--concurrency",
        type=int,
        help="in parallel (default 40; docker 8: busybox httpd's listen backlog is 9)",
    )
    cmd.add_argument(
        "--link-rate", metavar="RATE", help="rate-limit every server NIC (tc tbf), e.g. 100mbit"
    )
    cmd.add_argument(
        "--plot",
        metavar="FILE.png",
        help="write a figure of both phases (format by extension; checked before the run)",
    )
    cmd.add_argument(
        "--keep",
        nargs="?",
        const=DEFAULT_NAME,
        metavar="NAME",
        help="afterwards, leave a fresh lab network up with stock routing, as namespaces "
        f"NAME-server, NAME-client, ... (NAME defaults to {DEFAULT_NAME})",
    )
    cmd.add_argument(
        "--all", action="store_true", help="with clean: also remove every kept network"
    )
    cmd.add_argument(
        "--fail",
        metavar="UPLINK@SECONDSs[-SECONDSs]",
        help="with two-isp: run multihome watch under load and let the ISP behind UPLINK die "
        "at that second (and come back at the second one): per-second traffic per uplink, "
        "the time to leave, the connections lost; e.g. --fail eth1@10s",
    )
    cmd.add_argument(
        "--ipv6",
        action="store_true",
        help="with gateway: a dual-stack router whose ISPs each delegate a prefix to its LAN "
        "(SLAAC from dnsmasq): stock, multihome, and an ISP's failure with the RA daemon "
        "deprecating its prefix (RFC 8475)",
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
        "never touched. `--keep NAME` leaves a network up to explore, `multihome lab load "
        "NAME` runs the downloads on it, `multihome lab clean` removes networks left behind.",
        _arguments,
        netns=False,
    ),
)
