"""The frozen chart tops (services/ranking/store/frozen_tops.py and the
freezer, services/ranking/rankings/freezer.py) on a real PostgreSQL, in a
database of their own: every finished day's charts frozen from the votes,
equal to the windows summed from the daily tallies (how the charts of past
dates were read before); a late vote or a re-weigh of a past day marks it,
and the next pass freezes it again; a change that comes in while a pass
computes leaves the days marked."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from devstack.stack import Stack
from services.common.config import to_sqlalchemy_url
from services.common.weights import CHART_WEIGHTS_KEY, WEIGHTS_KEY
from services.ranking import charts
from services.ranking.frozen_tops import PERIODS
from services.ranking.rankings.freezer import Freezer
from services.ranking.store import RankingStores
from services.ranking.trending import TrendClock
from tests.backing import fresh_database
from tests.service.test_live_charts import PROBATION, TODAY, add_songs, migrate, vote

pytestmark = pytest.mark.service

SONGS = [f"frozen-{n}" for n in range(9)]
BACKS = (1, 2, 5, 9, 20, 33, 40)  # days before today with votes


@dataclass
class World:
    engine: AsyncEngine
    redis: Redis
    stores: RankingStores
    freezer: Freezer


@pytest.fixture(scope="module")
async def world(backing: Stack) -> AsyncIterator[World]:
    url, drop = fresh_database(backing.database_url or "")
    migrate(url, "head")
    engine = create_async_engine(to_sqlalchemy_url(url))
    redis = Redis.from_url(backing.redis_url or "", decode_responses=True)
    stores = RankingStores.open(engine, redis, probation_weight=PROBATION)
    try:
        yield World(engine, redis, stores, Freezer(stores.charts, days_per_pass=10))
    finally:
        await redis.aclose()
        await engine.dispose()
        drop()


async def apply(world: World, events: list[VoteEvent]) -> None:
    trend = TrendClock(86400.0, datetime(2026, 1, 1, tzinfo=UTC), lambda: datetime.now(UTC))
    await world.stores.projection.apply_events(events, trend)


async def freeze_all(world: World) -> int:
    """Passes until every finished day is frozen and clean; the days frozen."""
    await world.stores.charts.fold_live_windows()
    total = 0
    while frozen := await world.freezer.freeze():
        total += frozen
    return total


async def state(world: World) -> tuple[date | None, date | None, date | None, date | None]:
    """(frozen_from, frozen_through, dirty_from: the sweep, pending_from: the marks not claimed)."""
    async with world.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT frozen_from, frozen_through, dirty_from, pending_from FROM ranking.chart_tops_state"
                    " WHERE item_type = 'song'"
                )
            )
        ).one()
    return row.frozen_from, row.frozen_through, row.dirty_from, row.pending_from


async def expect_frozen_equal_the_tallies(world: World, days: list[date]) -> None:
    store = world.stores.charts
    for day in days:
        for period in PERIODS:
            for sort in charts.SORTS:
                frozen = await store.frozen_top("song", period, sort, day, 100)
                assert frozen is not None, (day, period)
                summed = charts.rank(
                    charts.counted(await store.window_tallies("song", *charts.window(period, day), {})), sort
                )
                before = charts.rank(
                    charts.counted(
                        await store.window_tallies(
                            "song", *charts.window(period, charts.previous_date(period, day)), {}
                        )
                    ),
                    sort,
                )
                previous = {t.item_id: n for n, t in enumerate(before, start=1)}
                assert [(t.item_id, t.up, t.down, round(t.weighted_score, 6)) for t, _ in frozen] == [
                    (t.item_id, t.up, t.down, round(t.weighted_score, 6)) for t in summed
                ], (day, period, sort)
                assert [p for _, p in frozen] == [previous.get(t.item_id) for t, _ in frozen], (day, period, sort)


async def test_finished_days_are_frozen_as_the_tallies_rank_them_and_kept_after_changes(world: World) -> None:
    await add_songs(world.engine, {song: "rock" for song in SONGS})
    trusted, newcomer, ringer = (f"{name}-{uuid.uuid4().hex[:6]}" for name in ("trusted", "newcomer", "ringer"))
    for agent, weight in ((ringer, 1.0), *((f"{trusted}-{b}", 1.0) for b in BACKS)):
        await world.redis.hset(CHART_WEIGHTS_KEY, agent, weight)
        await world.redis.hset(WEIGHTS_KEY, agent, weight)
    batch = []
    for n, song in enumerate(SONGS):
        for back in BACKS:
            day = TODAY - timedelta(days=back)
            batch.append(vote(song, f"{trusted}-{back}", day, 1 if (n + back) % 3 else -1))
            if n % 2:
                batch.append(vote(song, f"{newcomer}-{back}", day, 1))  # probation weight
        if n < 4:
            batch.append(vote(song, ringer, TODAY - timedelta(days=BACKS[n])))
    await apply(world, batch)
    # Frozen from the first day with votes to yesterday, a few passes of 10 days.
    assert await freeze_all(world) == 40
    yesterday = TODAY - timedelta(days=1)
    assert await state(world) == (TODAY - timedelta(days=40), yesterday, None, None)
    checked = [TODAY - timedelta(days=b) for b in (1, 3, 9, 21, 40)]
    await expect_frozen_equal_the_tallies(world, checked)
    # Not frozen: today (live) and before the first vote.
    assert await world.stores.charts.frozen_top("song", "daily", "score", TODAY, 10) is None
    assert await world.stores.charts.frozen_top("song", "daily", "score", TODAY - timedelta(days=41), 10) is None

    # A late vote on a past day: its fold marks the day; the next passes
    # freeze from it to yesterday again, and nothing before it.
    await apply(world, [vote(SONGS[8], f"late-{uuid.uuid4().hex[:6]}", TODAY - timedelta(days=20), -1)])
    await world.stores.charts.fold_live_windows()
    assert (await state(world))[2:] == (None, TODAY - timedelta(days=20))
    assert await freeze_all(world) == 20
    assert (await state(world))[2:] == (None, None)
    await expect_frozen_equal_the_tallies(world, checked)

    # The ring is flagged: its past votes weigh 0 in every frozen chart after the next passes.
    await world.redis.hset(CHART_WEIGHTS_KEY, ringer, 0.0)
    await world.redis.hset(WEIGHTS_KEY, ringer, 0.0)
    trend = TrendClock(86400.0, datetime(2026, 1, 1, tzinfo=UTC), lambda: datetime.now(UTC))
    assert await world.stores.projection.reweigh_agent(ringer, trend, set()) > 0
    assert await freeze_all(world) == 9  # from the ring's earliest vote, 9 days ago, on
    await expect_frozen_equal_the_tallies(world, checked)


async def test_a_change_while_a_pass_computes_is_frozen_by_a_later_one(world: World) -> None:
    store = world.stores.charts
    await freeze_all(world)
    # A pass claims the marked days and reads; a late vote comes in and is
    # folded; the pass writes: the new mark stays for the next sweep.
    await apply(world, [vote(SONGS[0], f"late-{uuid.uuid4().hex[:6]}", TODAY - timedelta(days=3))])
    await store.fold_live_windows()
    work = await store.freeze_input("song", 31)
    assert work is not None and work.first == TODAY - timedelta(days=3)
    assert (await state(world))[2:] == (TODAY - timedelta(days=3), None)
    await apply(world, [vote(SONGS[1], f"later-{uuid.uuid4().hex[:6]}", TODAY - timedelta(days=5))])
    await store.fold_live_windows()
    await store.save_tops(work, {})  # (rows of the run left out: the next sweep writes them)
    assert (await state(world))[2:] == (None, TODAY - timedelta(days=5))
    assert await freeze_all(world) == 5
    assert (await state(world))[2:] == (None, None)
    await expect_frozen_equal_the_tallies(world, [TODAY - timedelta(days=n) for n in (3, 4, 5)])


async def test_marks_arriving_every_pass_do_not_hold_the_sweep_on_the_same_days(world: World) -> None:
    store = world.stores.charts
    await freeze_all(world)
    swept = []
    for _ in range(4):
        # A re-weigh of a 40-day-old vote before every pass (10 days a pass).
        await apply(world, [vote(SONGS[4], f"late-{uuid.uuid4().hex[:6]}", TODAY - timedelta(days=40))])
        await store.fold_live_windows()
        await world.freezer.freeze()
        swept.append((await state(world))[2])
    # The sweep moves on 10 days a pass and ends; the marks wait for the next.
    assert swept == [TODAY - timedelta(days=n) for n in (30, 20, 10)] + [None]
    assert (await state(world))[3] == TODAY - timedelta(days=40)
    assert await freeze_all(world) == 40
    await expect_frozen_equal_the_tallies(world, [TODAY - timedelta(days=n) for n in (1, 21, 40)])


async def test_one_replica_at_a_time_freezes(world: World) -> None:
    await freeze_all(world)
    await apply(world, [vote(SONGS[2], f"late-{uuid.uuid4().hex[:6]}", TODAY - timedelta(days=2))])
    await world.stores.charts.fold_live_windows()
    other = Freezer(world.stores.charts, days_per_pass=10)
    async with world.stores.charts.freezing() as ours:
        assert ours
        # Another replica's pass (another connection) skips while ours runs,
        # though there are days to freeze.
        assert await other.freeze() == 0
        async with world.stores.charts.freezing() as theirs:
            assert not theirs
    assert await other.freeze() == 2


async def test_a_deleted_item_leaves_the_past_charts_and_they_are_frozen_again(world: World) -> None:
    await freeze_all(world)
    day = TODAY - timedelta(days=9)
    assert any(
        t.item_id == SONGS[3]
        for t, _ in await world.stores.charts.frozen_top("song", "all_time", "score", day, 100) or []
    )
    await world.stores.catalog.delete_item("song", SONGS[3])
    assert not any(
        t.item_id == SONGS[3]
        for t, _ in await world.stores.charts.frozen_top("song", "all_time", "score", day, 100) or []
    )
    assert (await state(world))[3] == TODAY - timedelta(days=40)  # from its first day with votes
    assert await freeze_all(world) == 40
    await expect_frozen_equal_the_tallies(world, [TODAY - timedelta(days=n) for n in (1, 9, 20, 40)])
