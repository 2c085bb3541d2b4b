"""The live chart windows (services/ranking/store/live_charts.py) on a real
PostgreSQL, in a database of their own (their day is one row; moving it
here must not move the other tests'): built from the tallies by the
migration, kept by vote batches and re-weighs, moved by the roll-over, and
always equal to the windows summed from the daily tallies, which is how
charts of past dates are still read. Also the running peaks and days on
chart of the frozen days."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from alembic import command
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from devstack.stack import Stack
from services.common.config import to_sqlalchemy_url
from services.common.migrate import alembic_config
from services.common.weights import CHART_WEIGHTS_KEY, WEIGHTS_KEY
from services.ranking import charts
from services.ranking.charts import Tally
from services.ranking.store import RankingStores
from services.ranking.store.live_charts import ADD_TALLIES, FOLD, WINDOWS
from services.ranking.trending import TrendClock
from tests.backing import fresh_database

pytestmark = pytest.mark.service

TODAY = datetime.now(UTC).date()
PROBATION = 0.25
_event_ids = itertools.count(10**15 + uuid.uuid4().int % 10**9)


@dataclass
class World:
    engine: AsyncEngine
    redis: Redis
    stores: RankingStores
    url: str


@pytest.fixture(scope="module")
async def world(backing: Stack) -> AsyncIterator[World]:
    url, drop = fresh_database(backing.database_url or "")
    engine = create_async_engine(to_sqlalchemy_url(url))
    redis = Redis.from_url(backing.redis_url or "", decode_responses=True)
    try:
        yield World(engine, redis, RankingStores.open(engine, redis, probation_weight=PROBATION), url)
    finally:
        await redis.aclose()
        await engine.dispose()
        drop()


def migrate(url: str, revision: str) -> None:
    command.upgrade(alembic_config("ranking", url), revision)


async def add_songs(engine: AsyncEngine, genres: dict[str, str]) -> None:
    async with engine.begin() as conn:
        for song_id, genre in genres.items():
            await conn.execute(
                text(
                    "INSERT INTO ranking.songs (id, title, artist, platform, genre, submitted_by)"
                    " VALUES (:id, 't', 'a', :platform, :genre, 'admin')"
                ),
                {"id": song_id, "genre": genre, "platform": "udio" if hash(song_id) % 2 else "suno_ai"},
            )


def vote(song: str, agent: str, day: date, direction: int = 1, kind: str = "vote") -> VoteEvent:
    event = VoteEvent(
        event_id=next(_event_ids), type=kind, agent_id=agent, item_type="song", item_id=song, direction=direction
    )
    event.voted_at.FromDatetime(datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=12))
    return event


async def apply(world: World, events: list[VoteEvent]) -> None:
    trend = TrendClock(86400.0, datetime(2026, 1, 1, tzinfo=UTC), lambda: datetime.now(UTC))
    await world.stores.projection.apply_events(events, trend)


async def expect_windows_equal_the_tallies(world: World, songs: list[str]) -> None:
    """Once the pending changes are folded, every live window, read by its
    top and by ranks, in every sort and with a genre filter, equals the
    window summed from the tallies (every item of this database; `songs`
    are asked for ranks too, in the window or not)."""
    store = world.stores.charts
    await store.fold_live_windows()
    assert await pending(world) == 0
    day = await store.live_day()
    assert day is not None
    for window in WINDOWS:
        period, _, previous = window.partition(":")
        first, last = charts.window(period, charts.previous_date(period, day) if previous else day)
        for genre in ("", "rock"):
            filters = {"genre": genre} if genre else {}
            summed = await store.window_tallies("song", first, last, filters)
            for sort in charts.SORTS:
                expected = charts.rank(charts.counted(summed), sort)
                top = await store.live_top(window, "song", sort, filters, 100)
                assert [settled(t) for t in top] == [settled(t) for t in expected], (window, genre, sort)
                asked = [*songs, *(t.item_id for t in summed)]
                ranks = await store.live_ranks(window, "song", asked, sort, filters)
                assert {i: r for i, (r, _) in ranks.items()} == {
                    t.item_id: n for n, t in enumerate(expected, start=1)
                }, (window, genre, sort)


async def pending(world: World) -> int:
    async with world.engine.connect() as conn:
        return int(await conn.scalar(text("SELECT count(*) FROM ranking.chart_deltas")) or 0)


def settled(t: Tally) -> tuple[str, int, int, float, float]:
    return (t.item_id, t.up, t.down, round(t.weighted_up, 9), round(t.weighted_down, 9))


async def test_the_migration_builds_the_windows_and_running_peaks_from_what_there_is(world: World) -> None:
    migrate(world.url, "0007")
    songs = {f"old-{n}": ("rock" if n % 2 else "jazz") for n in range(6)}
    await add_songs(world.engine, songs)
    tallies = [
        (song, TODAY - timedelta(days=back), up, down, up * w, down * w)
        for n, song in enumerate(songs)
        for back, up, down, w in ((0, n, 1, 1.0), (1, 2, n, PROBATION), (8, n + 1, 0, 1.0), (40, 1, 1, 0.0))
    ]
    async with world.engine.begin() as conn:
        for song, day, up, down, wup, wdown in tallies:
            await conn.execute(
                text("INSERT INTO ranking.daily_tallies VALUES ('song', :s, :d, :u, :n, :wu, :wn)"),
                {"s": song, "d": day, "u": up, "n": down, "wu": wup, "wn": wdown},
            )
        # Frozen days: old-0 ranks 3, then 1, then 2.
        for back, rank in ((9, 3), (5, 1), (2, 2)):
            await conn.execute(
                text("INSERT INTO ranking.chart_snapshots VALUES (:d, 'song', 'old-0', :r, 0, 0, 0)"),
                {"d": TODAY - timedelta(days=back), "r": rank},
            )
    migrate(world.url, "head")  # 0008 builds the windows; later ones add to them

    assert await world.stores.charts.live_day() == TODAY
    await expect_windows_equal_the_tallies(world, list(songs))
    stats = world.stores.charts.snapshot_stats
    assert await stats("song", ["old-0", "old-1"], TODAY) == {"old-0": (1, 3)}
    assert await stats("song", ["old-0"], TODAY - timedelta(days=6)) == {"old-0": (3, 1)}


async def test_vote_batches_and_reweighs_keep_every_window(world: World) -> None:
    songs = {f"live-{n}": ("rock" if n % 3 else "pop") for n in range(8)}
    await add_songs(world.engine, songs)
    trusted, newcomer, ringer = (f"{name}-{uuid.uuid4().hex[:6]}" for name in ("trusted", "newcomer", "ringer"))
    await world.redis.hset(CHART_WEIGHTS_KEY, ringer, 1.0)
    await world.redis.hset(WEIGHTS_KEY, ringer, 1.0)
    ids = list(songs)
    backs = (0, 1, 3, 9, 31, 45)  # every window, and days only the previous windows hold
    # One vote per agent and item: an agent per day, and the ringer on one day per song.
    batch = []
    for n, song in enumerate(ids):
        for back in backs:
            day = TODAY - timedelta(days=back)
            batch.append(vote(song, f"{trusted}-{back}", day, 1 if (n + back) % 3 else -1))
            if n % 2:
                batch.append(vote(song, f"{newcomer}-{back}", day, 1))
        if n < 6:
            batch.append(vote(song, ringer, TODAY - timedelta(days=backs[n])))
    for back in backs:
        await world.redis.hset(CHART_WEIGHTS_KEY, f"{trusted}-{back}", 1.0)
    for start in range(0, len(batch), 7):  # several batches
        await apply(world, batch[start : start + 7])
    await expect_windows_equal_the_tallies(world, ids)

    # Retractions take their weight back out of every window.
    await apply(
        world,
        [vote(ids[1], f"{newcomer}-0", TODAY, kind="retract"), vote(ids[4], f"{trusted}-9", TODAY, kind="retract")],
    )
    await expect_windows_equal_the_tallies(world, ids)

    # The ring is flagged: its past votes weigh 0 in every window at once.
    await world.redis.hset(CHART_WEIGHTS_KEY, ringer, 0.0)
    await world.redis.hset(WEIGHTS_KEY, ringer, 0.0)
    trend = TrendClock(86400.0, datetime(2026, 1, 1, tzinfo=UTC), lambda: datetime.now(UTC))
    assert await world.stores.projection.reweigh_agent(ringer, trend, set()) > 0
    await expect_windows_equal_the_tallies(world, ids)
    # Cleared again: back in.
    await world.redis.hset(CHART_WEIGHTS_KEY, ringer, 1.0)
    await world.stores.projection.reweigh_agent(ringer, trend, set())
    await expect_windows_equal_the_tallies(world, ids)


async def test_the_roll_over_moves_each_window_by_the_days_entering_and_leaving_it(world: World) -> None:
    songs = {f"roll-{n}": "rock" for n in range(5)}
    await add_songs(world.engine, songs)
    ids = list(songs)
    store = world.stores.charts
    # The windows as they were 40 days ago; votes arrive for days after it
    # (as after midnight before the roll-over), and on days inside it.
    await store.rebuild_live_windows(TODAY - timedelta(days=40))
    batch = [
        vote(song, f"agent-{uuid.uuid4().hex[:6]}", TODAY - timedelta(days=back))
        for song in ids
        for back in (0, 2, 35, 50)
    ]
    await apply(world, batch)
    for back in (3, 2, 1):  # a day at a time, then many at once
        assert await store.roll_live_windows(TODAY - timedelta(days=back)) == TODAY - timedelta(days=back)
        await expect_windows_equal_the_tallies(world, ids)
    await store.rebuild_live_windows(TODAY - timedelta(days=40))
    assert await store.roll_live_windows(TODAY) == TODAY
    await expect_windows_equal_the_tallies(world, ids)
    # Never backwards.
    assert await store.roll_live_windows(TODAY - timedelta(days=1)) == TODAY
    # Items whose votes all left a window leave it (no empty rows kept).
    async with world.engine.connect() as conn:
        empty = await conn.scalar(
            text(
                "SELECT count(*) FROM ranking.chart_totals"
                " WHERE period <> 'all_time' AND up_votes = 0 AND down_votes = 0"
            )
        )
    assert empty == 0


async def test_a_batch_appends_its_changes_and_a_fold_adds_them_to_every_window(world: World) -> None:
    songs = {f"fold-{n}": "rock" for n in range(4)}
    await add_songs(world.engine, songs)
    ids = list(songs)
    store = world.stores.charts
    await store.rebuild_live_windows(TODAY)
    agents = f"fold-agent-{uuid.uuid4().hex[:6]}"
    batch = [
        vote(song, f"{agents}-{n}", TODAY - timedelta(days=back), 1 if n % 3 else -1)
        for song in ids
        for n, back in enumerate((0, 0, 0, 1, 8))
    ]
    await apply(world, batch[:10])
    await apply(world, batch[10:])
    # Appended, not in the windows yet; the trending score counts them already.
    assert await pending(world) > 0
    assert not {t.item_id for t in await store.live_top("daily", "song", "score", {}, 100)} & set(ids)
    scores = await store.weighted_scores("song", ids)
    assert scores == {song: (3 - 2) * PROBATION for song in ids}  # new agents: on probation
    # A fold takes every pending change (both batches), once.
    assert await store.fold_live_windows() > 0
    assert await pending(world) == 0
    assert await store.fold_live_windows() == 0
    assert await store.weighted_scores("song", ids) == scores
    await expect_windows_equal_the_tallies(world, ids)
    daily = {t.item_id: t for t in await store.live_top("daily", "song", "score", {}, 100)}
    assert {i: (daily[i].up, daily[i].down) for i in ids} == {i: (2, 1) for i in ids}

    # A change that is no count of votes (a probation up vote retracted and
    # a trusted down vote: -0.25 up, +1 down) folds like any other.
    await world.redis.hset(CHART_WEIGHTS_KEY, f"{agents}-trusted", 1.0)
    await apply(
        world, [vote(ids[1], f"{agents}-1", TODAY, kind="retract"), vote(ids[1], f"{agents}-trusted", TODAY, -1)]
    )
    await expect_windows_equal_the_tallies(world, ids)

    # An item deleted while its changes are pending is not brought back by the fold.
    await apply(world, [vote(ids[0], f"agent-{uuid.uuid4().hex[:6]}", TODAY)])
    await world.stores.catalog.delete_item("song", ids[0])
    await store.fold_live_windows()
    async with world.engine.connect() as conn:
        rows = await conn.scalar(text("SELECT count(*) FROM ranking.chart_totals WHERE item_id = :i"), {"i": ids[0]})
    assert rows == 0
    await expect_windows_equal_the_tallies(world, ids)


def tally_rows(songs: list[str], days: list[date]) -> str:
    return json.dumps(
        [
            {"item_type": "song", "item_id": s, "day": d.isoformat(), "up": 2, "down": 1, "wup": 1.25, "wdown": 1.0}
            for s in songs
            for d in days
        ]
    )


async def tallies_of(world: World, songs: list[str]) -> list[tuple[str, date, int]]:
    async with world.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT item_id, day, up_votes FROM ranking.daily_tallies WHERE item_id = ANY(:s) ORDER BY 1, 2"),
            {"s": songs},
        )
        return [tuple(row) for row in rows]


async def test_changes_are_appended_with_the_tallies_or_not_at_all_and_outlive_a_restart(world: World) -> None:
    songs = {f"crash-{n}": "pop" for n in range(3)}
    await add_songs(world.engine, songs)
    ids = list(songs)
    await world.stores.charts.rebuild_live_windows(TODAY)
    # A batch that fails after its append (a crash before the commit)
    # leaves neither its tallies nor its changes.
    with pytest.raises(RuntimeError):
        async with world.engine.begin() as conn:
            await conn.execute(ADD_TALLIES, {"rows": tally_rows(ids, [TODAY])})
            raise RuntimeError("crashed before the commit")
    assert await pending(world) == 0
    assert await tallies_of(world, ids) == []
    # One that commits and is never folded by its process (it stopped): a
    # restarted process folds its changes.
    await apply(world, [vote(song, f"agent-{uuid.uuid4().hex[:6]}", TODAY) for song in ids])
    assert await pending(world) == len(ids)
    restarted = create_async_engine(to_sqlalchemy_url(world.url))
    try:
        stores = RankingStores.open(restarted, world.redis, probation_weight=PROBATION)
        assert await stores.charts.fold_live_windows() > 0
    finally:
        await restarted.dispose()
    assert await pending(world) == 0
    await expect_windows_equal_the_tallies(world, ids)


async def waiting_for_locks(world: World, count: int) -> None:
    """Until `count` sessions of this database wait for a lock."""
    for _ in range(200):
        async with world.engine.connect() as conn:
            waiting = await conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        if waiting == count:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"{count} sessions never waited for a lock (saw {waiting})")


async def test_the_roll_over_waits_for_appends_and_folds_and_counts_each_change_once(world: World) -> None:
    songs = {f"race-{n}": ("rock" if n % 2 else "jazz") for n in range(4)}
    await add_songs(world.engine, songs)
    ids = list(songs)
    store = world.stores.charts
    yesterday = TODAY - timedelta(days=1)
    # The changes of a day that rolls (yesterday: out of daily, into
    # daily:previous), of the new day, and of days the move does not touch.
    days = [TODAY, yesterday, TODAY - timedelta(days=7), TODAY - timedelta(days=30)]

    # A batch appending when the roll-over comes: the roll-over waits for it
    # and counts its changes (by folding them at the old day first).
    await store.rebuild_live_windows(yesterday)
    async with world.engine.connect() as appender:
        append = await appender.begin()
        await appender.execute(ADD_TALLIES, {"rows": tally_rows(ids[:2], days)})
        roll = asyncio.create_task(store.roll_live_windows(TODAY))
        await waiting_for_locks(world, 1)
        await append.commit()
    assert await roll == TODAY
    assert await pending(world) == 0  # folded by the roll-over
    await expect_windows_equal_the_tallies(world, ids)

    # A fold in flight (it has taken the pending changes), changes appended
    # after it took them, then the roll-over, and a fold behind it: each
    # change is counted once, at the day it was folded at.
    await store.rebuild_live_windows(yesterday)
    await apply(world, [vote(song, f"agent-{uuid.uuid4().hex[:6]}", day) for song in ids for day in days])
    async with world.engine.connect() as folder:
        fold = await folder.begin()
        await folder.execute(FOLD)
        await apply(world, [vote(song, f"agent-{uuid.uuid4().hex[:6]}", day) for song in ids[1:] for day in days])
        roll = asyncio.create_task(store.roll_live_windows(TODAY))
        await waiting_for_locks(world, 1)
        late_fold = asyncio.create_task(store.fold_live_windows())
        await waiting_for_locks(world, 2)
        # A batch arriving now waits for the roll-over too (its tallies
        # must not change under the move).
        late_batch = asyncio.create_task(apply(world, [vote(ids[0], "late-agent", TODAY)]))
        await waiting_for_locks(world, 3)
        await fold.commit()
    assert await roll == TODAY
    await late_fold
    await late_batch
    await expect_windows_equal_the_tallies(world, ids)


async def test_refreezing_a_day_moves_the_running_peaks_of_the_days_after_it(world: World) -> None:
    store = world.stores.charts
    a, b, c = (f"peak-{n}-{uuid.uuid4().hex[:4]}" for n in range(3))
    days = [TODAY - timedelta(days=back) for back in (6, 5, 4, 3)]

    def day_chart(*ids: str) -> list[Tally]:
        return [Tally(i, 1, 0, 1.0, 0.0) for i in ids]

    await store.save_snapshots("song", {days[0]: day_chart(b, a), days[1]: day_chart(a), days[2]: day_chart(c, b, a)})
    await store.save_snapshots("song", {days[3]: day_chart(c, a)})
    assert await store.snapshot_stats("song", [a, b, c], days[3]) == {a: (1, 4), b: (1, 2), c: (1, 2)}
    assert await store.snapshot_stats("song", [a, b, c], days[0]) == {a: (2, 1), b: (1, 1)}

    # A re-weigh re-freezes the second day without a: its later days follow.
    await store.save_snapshots("song", {days[1]: day_chart(b)})
    assert await store.snapshot_stats("song", [a, b, c], days[3]) == {a: (2, 3), b: (1, 3), c: (1, 2)}
    assert await store.snapshot_stats("song", [a], days[2]) == {a: (2, 2)}
    assert await store.snapshot_stats("song", [b], days[1]) == {b: (1, 2)}
    # As summed over the frozen days themselves.
    async with world.engine.connect() as conn:
        summed = {
            row[0]: (row[1], row[2])
            for row in await conn.execute(
                text(
                    "SELECT item_id, min(rank), count(*) FROM ranking.chart_snapshots"
                    " WHERE item_id = ANY(:ids) GROUP BY item_id"
                ),
                {"ids": [a, b, c]},
            )
        }
    assert summed == await store.snapshot_stats("song", [a, b, c], TODAY)
