"""The ranking service on its own, over gRPC: the catalog it owns, and what
it makes of the vote events it consumes (fed straight onto the stream here,
in the vote service's wire format: no vote service runs)."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
import pytest
from redis.asyncio import Redis

from aimusicstore.ranking.v1 import (
    catalog_pb2,
    catalog_service_pb2,
    catalog_service_pb2_grpc,
    ranking_service_pb2,
    ranking_service_pb2_grpc,
)
from devstack.stack import Stack
from services.common import events
from tests.service.conftest import ADMIN, channel, in_process, target_env, unique

pytestmark = pytest.mark.service

_event_ids = itertools.count(10**14 + uuid.uuid4().int % 10**9)
T = TypeVar("T")


async def eventually(read: Callable[[], Awaitable[T]], ok: Callable[[T], bool], timeout_s: float = 5) -> T:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = await read()
        if ok(value) or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
async def stubs(backing: Stack) -> AsyncIterator[tuple[Any, Any, Redis]]:
    async with (
        in_process(backing, "reputation") as reputation,
        in_process(backing, "ranking", **target_env(reputation=reputation)) as ranking,
        channel(ranking) as ch,
    ):
        redis = Redis.from_url(backing.redis_url or "", decode_responses=True)
        yield catalog_service_pb2_grpc.CatalogServiceStub(ch), ranking_service_pb2_grpc.RankingServiceStub(ch), redis
        await redis.aclose()


async def publish(redis: Redis, kind: str, song: str, direction: int, agent: str) -> None:
    now = datetime.now(UTC).isoformat()
    event = {"event_id": next(_event_ids), "type": kind, "agent_id": agent, "item_type": "song", "item_id": song,
             "direction": direction, "has_review": False, "voted_at": now, "occurred_at": now}  # fmt: skip
    await redis.xadd(events.VOTE_EVENTS_STREAM, {events.EVENT_FIELD: json.dumps(event)})


async def new_song(catalog: Any, genre: str = "") -> str:
    song = catalog_pb2.Song(id=unique("song"), title="Low Orbit", artist="Model Z", platform="suno_ai", genre=genre)
    created = await catalog.CreateSong(catalog_service_pb2.CreateSongRequest(song=song), metadata=ADMIN, timeout=5)
    assert (created.id, created.submitted_by, created.up_votes) == (song.id, "admin", 0)
    return song.id


async def test_vote_events_move_counts_and_trending(stubs: tuple[Any, Any, Redis]) -> None:
    catalog, rankings, redis = stubs
    genre = unique("genre")
    song = await new_song(catalog, genre)
    for n in range(3):
        await publish(redis, "vote", song, 1, f"fan-{n}")
    await publish(redis, "vote", song, -1, "critic")

    async def read() -> catalog_pb2.Song:
        return await catalog.GetSong(catalog_service_pb2.GetSongRequest(song_id=song), timeout=5)

    counted = await eventually(read, lambda s: s.up_votes == 3 and s.down_votes == 1)
    assert (counted.up_votes, counted.down_votes, counted.score) == (3, 1, 2)
    trending = await eventually(
        lambda: rankings.GetTrending(ranking_service_pb2.GetTrendingRequest(genre=genre), timeout=5),
        lambda t: len(t.songs) == 1,
    )
    assert [(e.rank, e.item_id, e.up_votes, e.down_votes) for e in trending.songs] == [(1, song, 3, 1)]
    assert trending.songs[0].trending_score > 0

    await publish(redis, "retract", song, -1, "critic")
    retracted = await eventually(read, lambda s: s.down_votes == 0)
    assert (retracted.up_votes, retracted.down_votes) == (3, 0)


async def test_catalog_errors_name_the_problem(stubs: tuple[Any, Any, Redis]) -> None:
    catalog, rankings, _ = stubs
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await catalog.GetSong(catalog_service_pb2.GetSongRequest(song_id=unique("nothing")), timeout=5)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    bad = catalog_pb2.Song(id=unique("song"), title="", artist="A", platform="suno_ai")
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await catalog.CreateSong(catalog_service_pb2.CreateSongRequest(song=bad), metadata=ADMIN, timeout=5)
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "title" in (invalid.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await catalog.CreateSong(catalog_service_pb2.CreateSongRequest(song=bad), timeout=5)
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as period:
        await rankings.GetTopChart(ranking_service_pb2.GetTopChartRequest(period="hourly"), timeout=5)
    assert period.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_deleted_song_leaves_the_catalog(stubs: tuple[Any, Any, Redis]) -> None:
    catalog, _, _ = stubs
    song = await new_song(catalog)
    await catalog.DeleteSong(catalog_service_pb2.DeleteSongRequest(song_id=song), metadata=ADMIN, timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await catalog.GetSong(catalog_service_pb2.GetSongRequest(song_id=song), timeout=5)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
