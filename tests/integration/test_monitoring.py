"""Observability of the running stack: every process serves Prometheus
metrics, a vote moves the domain counters, the dashboard and the alert
rules query only series the stack really exports, and Envoy's access log
carries the request id the services log."""

from __future__ import annotations

import json
import re
import urllib.request
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from devstack.stack import Stack
from tests.integration.conftest import auth, eventually, vote, vote_service_metrics

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"

# Series Prometheus makes itself, not any exporter.
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
_PROMQL_WORDS = {
    "by",
    "without",
    "and",
    "or",
    "unless",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
}
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="')


def _scrape(url: str) -> dict[str, set[str]]:
    """Metric name -> the label names its samples carry."""
    with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: S310 - the test stack's own port
        text = reply.read().decode()
    exported: dict[str, set[str]] = defaultdict(set)
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            exported[match.group(1)] |= set(_LABEL.findall(match.group(2) or ""))
    return exported


def exported_series(stack: Stack) -> dict[str, set[str]]:
    merged: dict[str, set[str]] = defaultdict(set)
    for url in stack.metrics_urls().values():
        for name, labels in _scrape(url).items():
            merged[name] |= labels
    return merged


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """The metric names a PromQL expression selects, with the label names it matches on."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    found: list[tuple[str, set[str]]] = []
    for match in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?\s*(\()?", expr):
        name, matchers, call = match.groups()
        if call or name in _PROMQL_WORDS or match.start() > 0 and expr[match.start() - 1].isdigit():
            continue
        found.append((name, set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", matchers or ""))))
    return found


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]


def alert_queries() -> list[tuple[str, str]]:
    rules = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    return [(r["alert"], r["expr"]) for group in rules["groups"] for r in group["rules"]]


def test_the_query_parser_finds_metrics_and_their_label_matchers() -> None:
    expr = 'sum by (grpc_service) (rate(grpc_server_handled_total{grpc_code=~"A|B"}[5m])) / sum(x_total) > 0.5'
    assert selectors(expr) == [("grpc_server_handled_total", {"grpc_code"}), ("x_total", set())]


def test_every_process_serves_prometheus_metrics(stack: Stack) -> None:
    for process, url in stack.metrics_urls().items():
        names = _scrape(url)
        assert names, f"{process} exported nothing at {url}"
    assert "envoy_http_downstream_rq_xx" in _scrape(stack.metrics_urls()["gateway"])
    # Declared outcomes are exported before the first vote.
    assert "votes_cast_total" in _scrape(stack.metrics_urls()["vote"])


def test_the_stats_listener_serves_nothing_else_of_envoys_admin_interface(stack: Stack, api: httpx.Client) -> None:
    base = stack.metrics_urls()["gateway"].rsplit("/stats/prometheus", 1)[0]
    with httpx.Client(base_url=base, timeout=5) as client:
        assert client.get("/metrics").status_code == 200
        for path in ("/quitquitquit", "/config_dump", "/clusters", "/stats", "/drain_listeners"):
            assert client.get(path).status_code == 404, path
            assert client.post(path).status_code == 404, path
        assert client.post("/stats/prometheus").status_code == 404


@pytest.fixture
def metrics_of_vote(stack: Stack):
    return lambda: vote_service_metrics(stack)


def test_votes_are_counted_by_outcome(
    api: httpx.Client, agent: dict[str, Any], song: dict[str, Any], metrics_of_vote: Any
) -> None:
    before = metrics_of_vote()
    assert vote(api, agent["key"], song["id"]).status_code == 200
    assert vote(api, agent["key"], song["id"]).status_code == 409
    assert vote(api, agent["key"], "no-such-song-" + uuid.uuid4().hex[:8]).status_code == 404
    after = metrics_of_vote()

    def moved(outcome: str) -> float:
        key = f'votes_cast_total{{outcome="{outcome}"}}'
        return after[key] - before.get(key, 0.0)

    # Other tests may vote at the same time: at least ours were counted.
    assert moved("recorded") >= 1
    assert moved("already_voted") >= 1
    assert moved("not_found") >= 1


def test_the_outbox_backlog_is_exported(metrics_of_vote: Any) -> None:
    samples = eventually(lambda: metrics_of_vote().get("vote_outbox_unrelayed") is not None and metrics_of_vote(), 10)
    assert samples["vote_outbox_unrelayed"] >= 0
    assert samples["vote_outbox_oldest_unrelayed_seconds"] >= 0


def _queries_name_exported_series(stack: Stack, api: httpx.Client, queries: list[tuple[str, str]]) -> None:
    # Cached reads and a vote (refused: no key), so the labelled series exist.
    for _ in range(3):
        api.get("/api/v1/trending", params={"limit": 3})
    api.post("/api/v1/vote", json={"item_type": "song", "item_id": "x", "vote": "up"})

    def missing() -> list[str]:
        exported = exported_series(stack)
        problems = []
        for title, expr in queries:
            for name, labels in selectors(expr):
                if name in PROMETHEUS_OWN:
                    continue
                if name not in exported:
                    problems.append(f"{title}: {name} is not exported")
                elif labels - exported[name]:
                    problems.append(f"{title}: {name} has no label {sorted(labels - exported[name])}")
        return problems

    # The consumer-progress gauges are set a few seconds after start.
    last: list[str] = []

    def none_missing() -> bool:
        nonlocal last
        last = missing()
        return not last

    try:
        eventually(none_missing, 15, interval_s=0.5)
    except AssertionError:
        pytest.fail("\n".join(last))


def test_every_dashboard_query_names_series_the_stack_exports(stack: Stack, api: httpx.Client) -> None:
    _queries_name_exported_series(stack, api, dashboard_queries())


def test_every_alert_rule_names_series_the_stack_exports(stack: Stack, api: httpx.Client) -> None:
    _queries_name_exported_series(stack, api, alert_queries())


def test_envoy_access_log_carries_the_request_id_the_services_log(
    stack: Stack, api: httpx.Client, agent: dict[str, Any]
) -> None:
    request_id = f"monitoring-{uuid.uuid4().hex}"
    body = {"item_type": "song", "item_id": "no-such-song-" + uuid.uuid4().hex[:8], "vote": "up"}
    reply = api.post("/api/v1/vote", json=body, headers=auth(agent["key"]) | {"x-request-id": request_id})
    assert reply.status_code == 404

    def logged(name: str) -> list[dict[str, Any]]:
        lines = (stack.log_dir / f"{name}.log").read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if request_id in line and line.startswith("{")]

    (access,) = eventually(lambda: logged("envoy"), 10)
    assert access["path"] == "/api/v1/vote"
    assert access["status"] == 404
    assert access["method"] == "POST"
    service_lines = eventually(lambda: logged("vote"), 10)
    assert all(line["request_id"] == request_id for line in service_lines)
