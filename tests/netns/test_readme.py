"""The README's examples, pasted: every session block (`$ command` lines and their output)
runs in README order against real lab networks, and its output must be the documented one.

A block is skipped only when an HTML comment right before it says why (`<!-- not run by
tests/netns/test_readme.py: ... -->`). What is not compared literally:
- `...` on a line of its own stands for any number of lines (the README shortens);
- values that differ from run to run: namespace inodes, pids, clock times, seconds left, and
  in the traffic outputs (`multihome lab`, `counters`) every number, unit and column width;
- `multihome lab` runs (seed, two-isp) get `--requests 40` when the README gives none (the
  README's numbers come from the default run; the format must still be the same), and the
  progress of every `multihome lab` command, which goes to stderr, is not part of the
  README's output.
The lab networks' names (demo, lan, gw) are replaced with names unique to this test, /tmp/out
and /tmp/scratch with temporary directories, and every network the test made is removed by
name at the end.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from multihome.lab import scenarios
from multihome.lab.description import Topology
from multihome.lab.topology import Network

README = Path(__file__).resolve().parents[2] / "README.md"
SKIP = "<!-- not run by tests/netns/test_readme.py"
NAMES = ("demo", "lan", "gw")  # the README's kept lab networks
Build = Callable[[Topology], Network]
HOSTS = "server|client|router|switch|internet|isp[0-9]"


@dataclass
class Step:
    command: str
    expected: list[str]
    exit_code: int = 0


def sessions(text: str) -> list[tuple[int, list[Step]]]:
    """The README's session blocks, in order: (line number, steps)."""
    blocks = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        if lines[index].startswith("```"):  # a fence, with or without a language
            start = index
            end = lines.index("```", index + 1)
            body = lines[start + 1 : end]
            skipped = start > 0 and lines[start - 1].startswith(SKIP)
            if body and body[0].startswith("$ ") and not skipped:
                steps: list[Step] = []
                for line in body:
                    if line.startswith("$ "):
                        steps.append(Step(line[2:], []))
                    elif m := re.fullmatch(r"\(exit (\d+)\)", line):
                        steps[-1].exit_code = int(m.group(1))
                    else:
                        steps[-1].expected.append(line)
                for step in steps:
                    while step.expected and not step.expected[-1].strip():
                        step.expected.pop()
                blocks.append((start + 1, steps))
            index = end + 1
        else:
            index += 1
    return blocks


def _traffic(command: str) -> bool:
    return bool(re.search(r"multihome( --netns \S+)? (lab|counters)\b", command))


def normalise(line: str, traffic: bool) -> str:
    line = re.sub(r"network namespace \d+", "network namespace N", line)
    line = re.sub(r"guardian pid \d+", "guardian pid N", line)
    line = re.sub(r"\(\d+ s left", "(N s left", line)
    line = re.sub(r"\d\d:\d\d:\d\d", "HH:MM:SS", line)
    if traffic:
        line = re.sub(r"\d[\d,.]*%?", "N", line)
        line = re.sub(r"\bN [KMG]?(B|bit/s)\b", r"N \1", line)
        line = re.sub(r"\s+", " ", line).rstrip()
    return line.rstrip()


def matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line; a line `...` stands for any number of lines."""
    if not expected:
        return not actual
    if expected[0].strip() == "...":
        return any(matches(expected[1:], actual[k:]) for k in range(len(actual) + 1))
    return bool(actual) and expected[0] == actual[0] and matches(expected[1:], actual[1:])


class Paste:
    """Runs the README's commands as a user pastes them, with this test's names."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.names = {name: f"mhr{os.getpid() % 100000}{name[0]}" for name in NAMES}
        self.env = dict(os.environ)
        self.env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + self.env["PATH"]
        self.env["MULTIHOME_STATE_DIR"] = str(tmp / "state")  # its own lab records only
        self.env["PYTHONUNBUFFERED"] = "1"  # stdout and stderr in the order they were written
        (tmp / "out").mkdir()
        (tmp / "scratch").mkdir()

    def rename(self, text: str) -> str:
        # `--keep` without a name keeps the network as demo
        text = re.sub(r"--keep(?=\s+-|\s*$)", "--keep demo", text)
        for name, unique in self.names.items():
            text = re.sub(rf"\b{name}-({HOSTS})\b", rf"{unique}-\1", text)
            text = re.sub(
                rf"(--keep|lab load|lab clean|lab network|with --keep\):) {name}\b",
                rf"\1 {unique}",
                text,
            )
        # the kept networks `lab clean` lists as left up: "demo, lan; ..."
        text = re.sub(
            r"(?<=with --keep\): )([\w, -]+)(?=;)",
            lambda m: ", ".join(self.names.get(n, n) for n in m.group(1).split(", ")),
            text,
        )
        text = text.replace("/tmp/out", str(self.tmp / "out"))
        return text.replace("/tmp/scratch", str(self.tmp / "scratch"))

    def check_contained(self, command: str) -> None:
        """Never run a README command on this machine's own network: each part must be the
        lab's command, or act in one of the lab networks, or read the test's files."""
        networks = "|".join(NAMES)
        contained = (
            r"multihome lab( .*)?",
            rf"multihome --netns ({networks})-({HOSTS}) .*",
            rf"ip -n ({networks})-({HOSTS}) .*",
            r"cat /tmp/(out|scratch)/\S+",
            rf"ip netns exec ({networks})-({HOSTS}) sysctl -w [\w.]+=\d+",
            r"printf '[^']*' > router\.toml",  # the gateway walk-through's config
            r"chmod 600 router\.toml",
            r"tail -n \d+",
        )
        for part in re.split(r"\s*(?:;|&&|\|\|?)\s*", command.split("#")[0].strip()):
            assert any(re.fullmatch(p, part) for p in contained), (
                f"`{command}` would run outside the lab's networks: give it --netns of one, "
                f"or put `{SKIP}: WHY -->` before its block"
            )

    def run(self, step: Step) -> tuple[int, list[str]]:
        self.check_contained(step.command)
        command = self.rename(step.command)
        lab_run = re.search(r"multihome lab( |$)", command)  # progress on stderr: dropped
        short = re.search(r"multihome lab( (seed|two-isp))?( -|$)", command)
        if short and "--requests" not in command:
            command += " --requests 40"
        result = subprocess.run(
            ["bash", "-c", command + (" 2>/dev/null" if lab_run else " 2>&1")],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=self.env,
            cwd=self.tmp,
            timeout=300,
        )
        return result.returncode, result.stdout.splitlines()

    def cleanup(self) -> None:
        """Remove what this test kept: the lab networks recorded in its own state directory,
        then any namespace left with one of its own unique names."""
        subprocess.run(
            [sys.executable, "-m", "multihome", "lab", "clean", "--all"],
            env=self.env,
            capture_output=True,
            check=False,
        )
        for unique in self.names.values():
            for host in os.listdir("/run/netns"):
                if host.startswith(unique + "-"):
                    subprocess.run(["ip", "netns", "delete", host], check=False)


def test_readme_sessions_paste_and_print_what_the_readme_shows(tmp_path: Path) -> None:
    blocks = sessions(README.read_text())
    commands = [s.command for _, steps in blocks for s in steps]
    # the walk-through really is here: a kept network, its load, and the commands on it
    assert any("lab two-isp --keep" in c for c in commands), commands
    assert any("lab load lan" in c for c in commands), commands
    assert any("lab gateway --keep gw" in c for c in commands), commands
    assert any(c.startswith("multihome --netns gw-router") for c in commands), commands
    assert any(c.startswith("multihome --netns demo-server plan") for c in commands), commands
    paste = Paste(tmp_path)
    try:
        for line, steps in blocks:
            for step in steps:
                code, actual = paste.run(step)
                traffic = _traffic(step.command)
                expected = [normalise(paste.rename(x), traffic) for x in step.expected]
                got = [normalise(x, traffic) for x in actual]
                if traffic:  # blank lines and column layout are not the point there
                    expected = [x for x in expected if x]
                    got = [x for x in got if x]
                assert code == step.exit_code and matches(expected, got), (
                    f"README.md:{line}: `{step.command}` exited {code} "
                    f"(README: {step.exit_code}) and printed:\n" + "\n".join(actual)
                )
    finally:
        paste.cleanup()


def _export_table() -> dict[str, list[str]]:
    """The export table: format -> the file names its second column names (in backticks)."""
    rows = {}
    for line in README.read_text().splitlines():
        if m := re.match(r"\| `(\w+)` \| (.*?) \|", line):
            rows[m.group(1)] = re.findall(r"`([^`]+)`", m.group(2))
    return rows


def test_export_table_and_help_name_the_files_export_writes(build: Build, tmp_path: Path) -> None:
    network = build(scenarios.seed(2))  # shares a subnet: the plan sets sysctls
    table = _export_table()
    assert set(table) == {"ip", "networkd", "netplan", "networkmanager", "ifupdown", "systemd"}
    help_text = subprocess.run(
        [sys.executable, "-m", "multihome", "export", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    help_text = " ".join(help_text.split())
    for name, documented in table.items():
        out = tmp_path / name
        server = network.ns("server")
        export = ["export", "--format", name, "-o", str(out)]
        subprocess.run(
            [sys.executable, "-m", "multihome", "--netns", server, *export],
            capture_output=True,
            check=True,
        )
        written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
        patterns = [re.escape(d).replace("NAME", "[^/]+") for d in documented]
        for path in written:
            assert any(re.fullmatch(p, path) for p in patterns), (name, path, documented)
            assert os.path.basename(path) in help_text, (name, path)
            mode = stat.S_IMODE((out / path).stat().st_mode)
            script = (out / path).read_text().startswith("#!")
            assert mode == (0o755 if script else 0o644), (path, oct(mode))
        for pattern in patterns:
            assert any(re.fullmatch(pattern, w) for w in written), (name, pattern)
