"""The Grafana dashboard and the Prometheus alert rules (contrib/) ask only for metrics and
labels that `multihome watch --metrics` really exports: a real watch runs in a lab namespace
and is scraped, and every query of the dashboard and the rules is checked against that."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from multihome.lab import scenarios
from multihome.lab.description import Topology
from multihome.lab.topology import Network

from .helpers import PY
from .test_watch import Watch, wait_for

Build = Callable[[Topology], Network]
REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "contrib" / "grafana" / "multihome-watch.json"
ALERTS = REPO / "contrib" / "prometheus" / "multihome-alerts.yml"
# labels Prometheus adds to every scraped series
TARGET_LABELS = {"instance", "job"}
# shown in legends when present: the uplink metrics may gain an address family label
OPTIONAL_LABELS = {"family"}
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
MATCHER = re.compile(r"[{,]\s*(\w+)\s*(?:=~|!~|!=|=)")
METRIC = re.compile(r"\bmultihome_\w+")


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items:
        yield item
        yield from panels(item.get("panels", []))


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(expression, legend) of every panel target, and the variables' queries."""
    queries = [
        (target["expr"], target.get("legendFormat", ""))
        for panel in panels(dashboard["panels"])
        for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            queries.append((variable["query"]["query"], ""))
    return queries


def alert_queries(rules: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (rule["expr"], " ".join(rule.get("annotations", {}).values()))
        for group in rules["groups"]
        for rule in group["rules"]
    ]


def scrape(ns: str, url: str) -> str:
    fetch = f"import urllib.request; print(urllib.request.urlopen({url!r}).read().decode())"
    return subprocess.run(
        ["ip", "netns", "exec", ns, PY, "-c", fetch], capture_output=True, text=True, check=True
    ).stdout


def exported(text: str) -> tuple[set[str], set[str]]:
    """The metric names and label names of a scrape."""
    names: set[str] = set()
    labels: set[str] = set()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s", line)
        assert match, line
        names.add(match.group(1))
        labels |= set(re.findall(r"(\w+)=\"", match.group(2) or ""))
    return names, labels


def balanced(expr: str) -> bool:
    stack: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for char in re.sub(r'"[^"]*"', "", expr):
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


def test_dashboard_and_alerts_query_what_watch_exports(build: Build, tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    rules = yaml.safe_load(ALERTS.read_text())

    net = build(scenarios.two_isp(nics=2))
    server = net.ns("server")
    watch = Watch(server, "--metrics", "127.0.0.1:9477")
    try:
        url = "http://127.0.0.1:9477/metrics"
        wait_for(lambda: "multihome_probe_rtt_seconds{" in scrape(server, url), 10)
        names, labels = exported(scrape(server, url))
    finally:
        assert watch.stop() == 0, watch.text()

    # every metric metrics.py writes, so that an unexported metric below is a real finding
    assert {
        "multihome_uplink_up",
        "multihome_probe_rtt_seconds",
        "multihome_probes_lost_total",
        "multihome_reconciles_total",
        "multihome_reconcile_errors_total",
        "multihome_interface_tx_packets_total",
    } <= names
    queries = dashboard_queries(dashboard) + alert_queries(rules)
    assert len(queries) >= 15
    for expr, text in queries:
        used = set(METRIC.findall(expr))
        assert used, f"names no multihome metric: {expr}"
        assert used <= names, f"{sorted(used - names)} not exported; query: {expr}"
        grouped = {
            label.strip() for group in GROUPING.findall(expr) for label in group.split(",")
        } - {""}
        matched = set(MATCHER.findall(expr))
        unknown = (grouped | matched) - labels - TARGET_LABELS
        assert not unknown, f"labels {sorted(unknown)} not exported; query: {expr}"
        shown = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", text))
        shown |= set(re.findall(r"\$labels\.(\w+)", text))
        assert shown <= labels | TARGET_LABELS | OPTIONAL_LABELS, (shown, text)
        assert balanced(expr), expr


def test_dashboard_is_importable() -> None:
    """What Grafana's import needs: a title and uid, panels with unique ids and a place on
    the grid, every query on the dashboard's data source variable."""
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 30
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in panels(dashboard["panels"])]
    assert len(ids) == len(set(ids))
    titles = set()
    for panel in panels(dashboard["panels"]):
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] == "row":
            continue
        titles.add(panel["title"])
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
    # what the issue asks the dashboard to show
    assert {
        "Uplink state",
        "Probe round-trip time",
        "Lost probes",
        "Reconciles and errors",
        "TX share per interface (packets)",
    } <= titles
