"""Helpers for netns tests: run multihome in a namespace, read the kernel with `ip -j`,
and move real TCP traffic between namespaces."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from typing import Any

PY = sys.executable
HERE = os.path.dirname(__file__)


def multihome(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a namespace (a fresh process, like a user would)."""
    result = subprocess.run(
        [PY, "-m", "multihome", "--netns", ns, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"multihome {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n"
            f"{result.stderr}"
        )
    return result


def selectors(ns: str, priority: int = 1002) -> set[str]:
    """The source prefixes multihome's rules of this priority select (PREFIX/LENGTH), as
    `ip -j rule` reports them (it leaves out the length of a single address)."""
    found = set()
    for family in ("-4", "-6"):
        for rule in ip_json(ns, family, "rule"):
            ours = rule.get("protocol") in (77, "77", "multihome")
            if ours and rule.get("priority") == priority and rule.get("src", "all") != "all":
                full = 32 if family == "-4" else 128
                found.add(f"{rule['src']}/{rule.get('srclen', full)}")
    return found


def selects(ns: str, address: str, priority: int = 1002) -> bool:
    """Does one of multihome's source rules of this priority select `address`?"""
    ip = ipaddress.ip_address(address)
    return any(ip in ipaddress.ip_network(prefix) for prefix in selectors(ns, priority))


def ip_json(ns: str, *args: str) -> Any:
    """The independent reader: iproute2's own JSON."""
    out = subprocess.run(
        ["ip", "-n", ns, "-j", *args], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out) if out.strip() else []


def owned_rules(ns: str, family: str = "-4") -> list[dict[str, Any]]:
    """The rules multihome made: its routing-protocol number, 77 (`ip` prints the name once
    rt_protos.d knows it)."""
    return [r for r in ip_json(ns, family, "rule") if r.get("protocol") in ("77", "multihome")]


def ip_text(ns: str, *args: str) -> str:
    return subprocess.run(
        ["ip", "-n", ns, *args], capture_output=True, text=True, check=True
    ).stdout


def snapshot(ns: str) -> tuple[str, str]:
    """Rules and routes of every table and family, byte for byte as `ip -j` prints them."""
    rules = subprocess.run(["ip", "-n", ns, "-j", "rule"], capture_output=True, check=True)
    rules6 = subprocess.run(["ip", "-n", ns, "-6", "-j", "rule"], capture_output=True, check=True)
    routes = subprocess.run(
        ["ip", "-n", ns, "-j", "route", "show", "table", "all"], capture_output=True, check=True
    )
    routes6 = subprocess.run(
        ["ip", "-n", ns, "-6", "-j", "route", "show", "table", "all"],
        capture_output=True,
        check=True,
    )
    return (
        (rules.stdout + rules6.stdout).decode(),
        (routes.stdout + routes6.stdout).decode(),
    )


def sysctl(ns: str, name: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", ns, "cat", "/proc/sys/" + name.replace(".", "/")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def tx_packets(ns: str) -> dict[str, int]:
    return {
        link["ifname"]: link["stats64"]["tx"]["packets"]
        for link in ip_json(ns, "-s", "link")
        if link["ifname"] != "lo"
    }


class TcpServer:
    """tests/netns/tcpserve.py running in a namespace, for the duration of a with-block."""

    def __init__(self, ns: str, port: int = 8080, size: int = 30000) -> None:
        self.argv = [
            "ip",
            "netns",
            "exec",
            ns,
            PY,
            os.path.join(HERE, "tcpserve.py"),
            str(port),
            str(size),
        ]
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> TcpServer:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"
        return self

    def __exit__(self, *_: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(timeout=10)


def fetch(ns: str, addresses: list[str], count: int = 5, port: int = 8080) -> dict[str, int]:
    """Open `count` connections to each address from a namespace; successes per address."""
    code = (
        "import json,socket,sys\n"
        "port,count=int(sys.argv[1]),int(sys.argv[2]); ok={}\n"
        "for a in sys.argv[3:]:\n"
        "    ok[a]=0\n"
        "    for _ in range(count):\n"
        "        try:\n"
        "            s=socket.create_connection((a,port),timeout=1.5); n=0\n"
        "            while (d:=s.recv(65536)): n+=len(d)\n"
        "            s.close(); ok[a]+= n>0\n"
        "        except OSError: pass\n"
        "print(json.dumps(ok))\n"
    )
    out = subprocess.run(
        ["ip", "netns", "exec", ns, PY, "-c", code, str(port), str(count), *addresses],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return dict(json.loads(out))
