"""Reputation through the gateway: freshness and the leaderboard. The
formula on constructed histories: tests/service/test_reputation_history.py."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from devstack.stack import Stack
from tests.integration.conftest import eventually, make_songs, vote

pytestmark = pytest.mark.integration


def test_reputation_through_the_gateway_within_5_seconds(api: httpx.Client, agent: dict[str, Any]) -> None:
    songs = make_songs(api, agent["key"], 2)
    assert vote(api, agent["key"], songs[0], "up").status_code == 200
    assert vote(api, agent["key"], songs[1], "down").status_code == 200
    eventually(lambda: api.get(f"/api/v1/agents/{agent['id']}").json()["reputation_score"] == 4, timeout_s=5)
    # Two other agents push songs[0] negative: the first agent's agreement there is gone.
    for _ in range(2):
        other = api.post("/api/v1/agents", json={}).json()["api_key"]
        assert vote(api, other, songs[0], "down").status_code == 200
    eventually(lambda: api.get(f"/api/v1/agents/{agent['id']}").json()["reputation_score"] == 3, timeout_s=5)


def test_leaderboard_orders_by_reputation_then_id(api: httpx.Client, stack: Stack) -> None:
    prefix = uuid.uuid4().hex[:6]
    keys = {}
    for name in ("b", "a", "c"):
        keys[name] = api.post("/api/v1/agents", json={"id": f"lb-{prefix}-{name}"}).json()["api_key"]
    songs = make_songs(api, keys["a"], 3)
    # c: 3 agreeing votes (6); a and b: one each (2), tied: a before b by id.
    for song_id in songs:
        assert vote(api, keys["c"], song_id).status_code == 200
    assert vote(api, keys["a"], songs[0]).status_code == 200
    assert vote(api, keys["b"], songs[1]).status_code == 200
    eventually(lambda: api.get(f"/api/v1/agents/lb-{prefix}-c").json()["reputation_score"] == 6, timeout_s=5)
    eventually(lambda: api.get(f"/api/v1/agents/lb-{prefix}-b").json()["reputation_score"] == 2, timeout_s=5)

    ours: list[tuple[str, int]] = []
    token = ""
    while True:
        page = api.get("/api/v1/leaderboard", params={"page_size": 7, "page_token": token}).json()
        scores = [a["reputation_score"] for a in page["agents"]]
        assert scores == sorted(scores, reverse=True)
        ours += [(a["id"], a["reputation_score"]) for a in page["agents"] if a["id"].startswith(f"lb-{prefix}")]
        token = page["next_page_token"]
        if not token:
            break
    assert ours == [(f"lb-{prefix}-c", 6), (f"lb-{prefix}-a", 2), (f"lb-{prefix}-b", 2)]
    assert api.get("/api/v1/leaderboard", params={"page_size": -1}).status_code == 400
