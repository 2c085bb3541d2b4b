"""The ranking service on its own, over gRPC: the catalog it owns, and what
it makes of the vote events it consumes (fed straight onto the stream here,
in the vote service's wire format: no vote service runs), weighed by the
weights the reputation service publishes (written straight to Redis here)."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
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
from services.common import auth, events
from services.common.weights import CHART_WEIGHTS_KEY, WEIGHTS_KEY
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
        # Finished days are frozen within a second of their votes.
        in_process(
            backing, "ranking", AIMUSICSTORE_SNAPSHOT_INTERVAL_S="0.3", **target_env(reputation=reputation)
        ) as ranking,
        channel(ranking) as ch,
    ):
        redis = Redis.from_url(backing.redis_url or "", decode_responses=True)
        yield catalog_service_pb2_grpc.CatalogServiceStub(ch), ranking_service_pb2_grpc.RankingServiceStub(ch), redis
        await redis.aclose()


def vote_event(kind: str, song: str, direction: int, agent: str, voted_at: datetime | None = None) -> str:
    now = datetime.now(UTC).isoformat()
    cast = voted_at.isoformat() if voted_at else now
    event = {"event_id": next(_event_ids), "type": kind, "agent_id": agent, "item_type": "song", "item_id": song,
             "direction": direction, "has_review": False, "voted_at": cast, "occurred_at": now}  # fmt: skip
    return json.dumps(event)


async def publish(redis: Redis, kind: str, song: str, direction: int, agent: str) -> None:
    await redis.xadd(events.VOTE_EVENTS_STREAM, {events.EVENT_FIELD: vote_event(kind, song, direction, agent)})


async def publish_together(redis: Redis, votes: list[tuple[str, str, datetime]]) -> None:
    """(song, agent, voted_at) up votes, added at once: the consumer applies them in one batch."""
    pipe = redis.pipeline(transaction=True)
    for song, agent, voted_at in votes:
        pipe.xadd(events.VOTE_EVENTS_STREAM, {events.EVENT_FIELD: vote_event("vote", song, 1, agent, voted_at)})
    await pipe.execute()


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


# -- weighted charts ---------------------------------------------------------------


async def daily_chart(rankings: Any, genre: str, day: date | None = None) -> list[tuple[str, int, float]]:
    request = ranking_service_pb2.GetTopChartRequest(period="daily", genre=genre, date=day.isoformat() if day else "")
    entries = (await rankings.GetTopChart(request, timeout=5)).entries
    return [(e.item_id, e.up_votes, e.weighted_score) for e in entries]


async def history_ranks(rankings: Any, song: str) -> dict[str, int]:
    request = ranking_service_pb2.GetItemHistoryRequest(collection="songs", item_id=song, days=7)
    return {p.date: p.rank for p in (await rankings.GetItemHistory(request, timeout=5)).points}


async def test_a_probation_vote_counts_its_fraction_and_up_votes_stay_raw(stubs: tuple[Any, Any, Redis]) -> None:
    catalog, rankings, redis = stubs
    genre = unique("genre")
    song = await new_song(catalog, genre)
    trusted, newcomer = unique("trusted"), unique("newcomer")
    await redis.hset(CHART_WEIGHTS_KEY, trusted, 1.0)
    now = datetime.now(UTC)
    await publish_together(redis, [(song, trusted, now), (song, newcomer, now)])  # newcomer: no weight published

    chart = await eventually(lambda: daily_chart(rankings, genre), lambda c: bool(c) and c[0][1] == 2)
    assert chart == [(song, 2, 1.25)]
    trending = await eventually(
        lambda: rankings.GetTrending(ranking_service_pb2.GetTrendingRequest(genre=genre), timeout=5),
        lambda t: bool(t.songs) and t.songs[0].up_votes == 2,
    )
    assert [(e.item_id, e.up_votes, e.score, e.weighted_score) for e in trending.songs] == [(song, 2, 2, 1.25)]


async def test_a_flag_takes_an_agents_past_votes_out_of_every_ranking(stubs: tuple[Any, Any, Redis]) -> None:
    catalog, rankings, redis = stubs
    genre = unique("genre")
    bought, honest = await new_song(catalog, genre), await new_song(catalog, genre)
    ringers, fans = [unique("ringer") for _ in range(4)], [unique("fan") for _ in range(2)]
    for agent in (*ringers, *fans):
        await redis.hset(CHART_WEIGHTS_KEY, agent, 1.0)
        await redis.hset(WEIGHTS_KEY, agent, 1.0)
    # Two days ago is a finished day the snapshot job froze once (its votes
    # applied in one batch) and leaves alone since: only a re-weigh can
    # change its ranks.
    now = datetime.now(UTC)
    two_days_ago = (now - timedelta(days=2)).date()
    for n, voted_at in enumerate((now - timedelta(days=2), now)):
        await publish_together(
            redis,
            [(bought, ringers[2 * n], voted_at), (bought, ringers[2 * n + 1], voted_at), (honest, fans[n], voted_at)],
        )
    before = await eventually(lambda: daily_chart(rankings, genre), lambda c: len(c) == 2)
    assert before == [(bought, 2, 2.0), (honest, 1, 1.0)]
    frozen = await eventually(lambda: history_ranks(rankings, bought), lambda h: two_days_ago.isoformat() in h)
    honest_rank = (await history_ranks(rankings, honest))[two_days_ago.isoformat()]
    assert frozen[two_days_ago.isoformat()] == honest_rank - 1

    # The reputation service flags the ring: weights 0, then the announcement.
    for agent in ringers:
        await redis.hset(CHART_WEIGHTS_KEY, agent, 0.0)
        await redis.hset(WEIGHTS_KEY, agent, 0.0)
        await auth.announce_agent_changed(redis, agent)
    started = asyncio.get_running_loop().time()

    async def rankings_now() -> tuple[Any, ...]:
        trending = await rankings.GetTrending(ranking_service_pb2.GetTrendingRequest(genre=genre), timeout=5)
        return (
            await daily_chart(rankings, genre),
            await daily_chart(rankings, genre, two_days_ago),
            [(e.item_id, e.trending_score > 0) for e in trending.songs],
            await history_ranks(rankings, bought),
            (await history_ranks(rankings, honest)).get(two_days_ago.isoformat()),
        )

    expected: tuple[Any, ...] = (
        [(honest, 1, 1.0)],
        [(honest, 1, 1.0)],
        [(honest, True), (bought, False)],
        {},
        honest_rank - 1,
    )
    after = await eventually(rankings_now, lambda r: r == expected, timeout_s=2.0)
    assert after == expected, f"{asyncio.get_running_loop().time() - started:.1f} s after the flag"
    song = await catalog.GetSong(catalog_service_pb2.GetSongRequest(song_id=bought), timeout=5)
    assert (song.up_votes, song.score) == (4, 4)  # the raw counts stay as cast


async def test_a_vote_projected_already_adds_no_weight_again(stubs: tuple[Any, Any, Redis]) -> None:
    # A vote event applied again under another id (as by overlapping
    # consumers out of order) finds its vote projected: its weight is not
    # added twice, nor its trending.
    catalog, rankings, redis = stubs
    genre = unique("genre")
    song, other = await new_song(catalog, genre), await new_song(catalog, genre)
    agent, now = unique("newcomer"), datetime.now(UTC)
    await publish_together(redis, [(song, agent, now)])
    await eventually(lambda: daily_chart(rankings, genre), lambda c: len(c) == 1)
    await publish_together(redis, [(song, agent, now), (other, agent, now)])  # the repeat, beside a new vote
    chart = await eventually(lambda: daily_chart(rankings, genre), lambda c: len(c) == 2)
    assert sorted((item, weighted) for item, _, weighted in chart) == sorted([(song, 0.25), (other, 0.25)])
    trending = await rankings.GetTrending(ranking_service_pb2.GetTrendingRequest(genre=genre), timeout=5)
    scores = {e.item_id: e.trending_score for e in trending.songs}
    assert scores[song] == pytest.approx(scores[other], rel=1e-3)
