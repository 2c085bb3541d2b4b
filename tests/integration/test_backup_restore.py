"""`make backup` / `make restore` end to end: seed, vote, back up, wipe
PostgreSQL and Redis, restore, and every read answers as before.

Runs on the shared stack: the restore brings back exactly the state backed
up, so the tests after this one see the same data as if it had not run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import psycopg
import pytest
import redis
from google.protobuf import json_format
from google.protobuf.message import Message

from aimusicstore.ranking.v1 import (
    catalog_service_pb2,
    catalog_service_pb2_grpc,
    ranking_service_pb2,
    ranking_service_pb2_grpc,
)
from aimusicstore.reputation.v1 import agent_service_pb2, agent_service_pb2_grpc
from aimusicstore.vote.v1 import vote_service_pb2, vote_service_pb2_grpc
from devstack.stack import Stack
from ops import backup
from tests.integration.conftest import auth, eventually, make_songs, unique, vote

PERIODS = ("daily", "weekly", "monthly", "all_time")
SORTS = ("score", "best", "controversial")


def _pages(call: Callable[[str], Message], items: str) -> Iterator[Any]:
    token = ""
    while True:
        reply = call(token)
        yield from getattr(reply, items)
        token = reply.next_page_token
        if not token:
            return


def _follow(method: Callable[[Any], Message], request: Any, items: str) -> Iterator[Any]:
    """Every page of a list call, from a request with its first page's fields."""

    def page(token: str) -> Message:
        request.page_token = token
        return method(request)

    return _pages(page, items)


def _plain(message: Message) -> dict[str, Any]:
    data = json_format.MessageToDict(message, preserving_proto_field_name=True)
    data.pop("updated_at", None)
    return data


def _ranked(message: Message) -> dict[str, Any]:
    """A trending or chart answer. Trending scores decay with time: the same
    votes score a little lower a minute later. Ranks, counts and every other
    field must match; trending scores to three significant digits."""
    data = _plain(message)
    for entries in (data.get("songs", []), data.get("tools", []), data.get("entries", [])):
        for entry in entries:
            entry["trending_score"] = float(f"{entry.get('trending_score', 0.0):.3g}")
    return data


def everything(channel: grpc.Channel) -> dict[str, Any]:
    """Every public read of the stack's data, through the gateway's gRPC route
    (the JSON reads are the same methods; going around the edge cache means
    nothing is answered from before the restore)."""
    catalog = catalog_service_pb2_grpc.CatalogServiceStub(channel)
    ranking = ranking_service_pb2_grpc.RankingServiceStub(channel)
    agents = agent_service_pb2_grpc.AgentServiceStub(channel)
    votes = vote_service_pb2_grpc.VoteServiceStub(channel)
    reads: dict[str, Any] = {}
    list_songs, list_tools = catalog_service_pb2.ListSongsRequest, catalog_service_pb2.ListToolsRequest
    songs = _pages(lambda t: catalog.ListSongs(list_songs(page_size=100, page_token=t)), "songs")
    tools = _pages(lambda t: catalog.ListTools(list_tools(page_size=100, page_token=t)), "tools")
    items = [("song", s.id, s) for s in songs] + [("tool", t.id, t) for t in tools]
    for item_type, item_id, item in items:
        key = f"{item_type}/{item_id}"
        reads[f"item {key}"] = _plain(item)
        counts = vote_service_pb2.GetVoteCountsRequest(item_type=item_type, item_id=item_id)
        reads[f"counts {key}"] = _plain(votes.GetVoteCounts(counts))
        reviews = vote_service_pb2.ListReviewsRequest(item_type=item_type, item_id=item_id, page_size=100)
        reads[f"reviews {key}"] = [_plain(v) for v in _follow(votes.ListReviews, reviews, "votes")]
        history = ranking_service_pb2.GetItemHistoryRequest(collection=f"{item_type}s", item_id=item_id, days=365)
        reads[f"history {key}"] = _plain(ranking.GetItemHistory(history))
    reads["trending"] = _ranked(ranking.GetTrending(ranking_service_pb2.GetTrendingRequest(limit=50)))
    for period in PERIODS:
        for sort in SORTS:
            for item_type in ("song", "tool"):
                request = ranking_service_pb2.GetTopChartRequest(
                    period=period, sort=sort, item_type=item_type, limit=100
                )
                reads[f"chart {period} {sort} {item_type}"] = _ranked(ranking.GetTopChart(request))
    board = agent_service_pb2.ListLeaderboardRequest
    leaderboard = list(_pages(lambda t: agents.ListLeaderboard(board(page_size=100, page_token=t)), "agents"))
    reads["leaderboard"] = [_plain(a) for a in leaderboard]
    for agent in leaderboard:
        cast = vote_service_pb2.ListAgentVotesRequest(agent_id=agent.id, page_size=100)
        reads[f"votes of {agent.id}"] = [_plain(v) for v in _follow(votes.ListAgentVotes, cast, "votes")]
    return reads


def _differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def _differences_until_none(before: dict[str, Any], read: Callable[[], dict[str, Any]], timeout_s: float) -> list[str]:
    """The reads that still differ once they all agree or `timeout_s` passed.
    A read refused as UNAVAILABLE counts as "not yet": for a second after
    its restart, Envoy may still hold a service unhealthy from the checks it
    failed while stopped (seen in CI)."""
    deadline = time.monotonic() + timeout_s

    def differences() -> list[str]:
        try:
            return _differences(before, read())
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() >= deadline:
                raise
            return ["(a service was unavailable)"]

    while (differ := differences()) and time.monotonic() < deadline:
        time.sleep(1.0)
    return differ


def _quota_counters(stack: Stack) -> dict[str, int]:
    day = datetime.now(UTC).strftime("%Y%m%d")
    client = redis.Redis.from_url(stack.redis_url or "", decode_responses=True)
    try:
        keys = list(client.scan_iter(match=f"vote:quota:*:{day}", count=1000))
        values = client.mget(keys) if keys else []
    finally:
        client.close()
    return {key.split(":")[2]: int(value) for key, value in zip(keys, values, strict=True) if value is not None}


def _votes_today(stack: Stack) -> dict[str, int]:
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with psycopg.connect(stack.database_url or "") as conn:
        rows = conn.execute(
            "SELECT agent_id, count(*) FROM vote.votes WHERE created_at >= %s GROUP BY agent_id", (midnight,)
        ).fetchall()
    return {agent: int(n) for agent, n in rows}


def _expected_counts(voters: int, songs: list[str], retracted: str) -> dict[str, tuple[int, int]]:
    """(up, down) per song for the test's votes: voter n votes song m up
    unless (n + m) is a multiple of 3; voter 0 then retracts one vote."""
    counts = {}
    for m, song_id in enumerate(songs):
        cast = [(n + m) % 3 != 0 for n in range(voters) if not (n == 0 and song_id == retracted)]
        counts[song_id] = (sum(cast), len(cast) - sum(cast))
    return counts


def _projected_counts(channel: grpc.Channel, songs: list[str]) -> dict[str, tuple[int, int]]:
    """(up, down) per song as the ranking projection's all_time chart has them."""
    ranking = ranking_service_pb2_grpc.RankingServiceStub(channel)
    request = ranking_service_pb2.GetTopChartRequest(period="all_time", sort="score", item_type="song", limit=100)
    entries = ranking.GetTopChart(request).entries
    return {e.item_id: (e.up_votes, e.down_votes) for e in entries if e.item_id in songs}


def _projected_vote_counts(channel: grpc.Channel, agent_ids: list[str]) -> dict[str, int]:
    """Live votes per agent as the reputation projection has them."""
    agents = agent_service_pb2_grpc.AgentServiceStub(channel)
    return {a: agents.GetAgent(agent_service_pb2.GetAgentRequest(agent_id=a)).vote_count for a in agent_ids}


def test_a_restore_into_empty_postgres_and_redis_answers_every_read_as_before(
    stack: Stack, api: httpx.Client, channel: grpc.Channel, tmp_path: Path
) -> None:
    if not (stack.embedded_postgres and stack.embedded_redis):
        pytest.skip("wipes the stack's PostgreSQL schemas and Redis: only on the embedded test servers")
    voters, voter_ids = [], []
    for _ in range(4):
        voter_ids.append(unique("backup-agent"))
        reply = api.post("/api/v1/agents", json={"id": voter_ids[-1]})
        assert reply.status_code == 200, reply.text
        voters.append(reply.json()["api_key"])
    songs = make_songs(api, voters[0], 5)
    for n, key in enumerate(voters):
        for m, song_id in enumerate(songs):
            direction = "up" if (n + m) % 3 else "down"
            comment = {"comment": f"take {n}-{m}"} if m == 0 else {}
            assert vote(api, key, song_id, direction, **comment).status_code == 200
    assert api.delete(f"/api/v1/vote/song/{songs[1]}", headers=auth(voters[0])).status_code == 200
    # Wait for the projections to hold every vote before the snapshot: two
    # equal reads alone are not enough, a projection a second behind (seen on a
    # freshly started stack) reads the same twice and the backup then holds
    # votes still on their way, which the restored stack applies.
    expected = _expected_counts(len(voters), songs, retracted=songs[1])
    eventually(lambda: _projected_counts(channel, songs) == expected, timeout_s=15, interval_s=0.5)
    cast = {agent_id: len(songs) - (n == 0) for n, agent_id in enumerate(voter_ids)}
    eventually(lambda: _projected_vote_counts(channel, voter_ids) == cast, timeout_s=15, interval_s=0.5)
    eventually(lambda: everything(channel) == everything(channel), timeout_s=15, interval_s=1.0)
    before = everything(channel)

    env = {"DATABASE_URL": stack.database_url or "", "REDIS_URL": stack.redis_url or ""}
    dump = backup.create(tmp_path, env)
    manifest = backup.Manifest.load(backup.manifest_path(dump))
    assert manifest.row_counts["vote.votes"] >= len(voters) * len(songs) - 1
    assert set(manifest.migrations) == set(backup.SCHEMAS)

    for service in Stack.SERVICES:
        stack.stop_process(service)
    try:
        with psycopg.connect(stack.database_url or "", autocommit=True) as conn:
            for schema in backup.SCHEMAS:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        client = redis.Redis.from_url(stack.redis_url or "")
        client.flushall()
        client.close()

        backup.restore(dump, env=env)
        # A second restore over the restored data is refused without --replace.
        with pytest.raises(backup.BackupError, match="already holds aimusicstore data"):
            backup.restore(dump, env=env)
    finally:
        for service in Stack.SERVICES:
            stack.start_service(service)
        stack.wait_healthy()

    # Trending is rebuilt at start, weights republished, counts seeded.
    last: dict[str, Any] = {}

    def read() -> dict[str, Any]:
        last.update(everything(channel))
        return last

    differ = _differences_until_none(before, read, timeout_s=30)
    shown = {key: {"before": before.get(key), "after": last.get(key)} for key in differ[:3]}
    assert not differ, f"reads that differ after the restore: {differ[:20]}; the first three: {shown}"
