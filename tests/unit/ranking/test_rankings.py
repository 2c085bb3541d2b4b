"""Rankings (trending, period charts, movement, history, snapshots) against
in-memory stores: no server, fixed clock."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.common.errors import InvalidArgument, NotFound
from services.ranking.charts import Tally
from services.ranking.items import Item
from services.ranking.rankings import Entry, Rankings
from services.ranking.trending import MAX_EXPONENT
from tests.unit.ranking.fakes import FakeCatalogStore, FakeChartStore, FakeProjection, FakeTrendingSets, song, tool

NOW = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)
TODAY = NOW.date()
HALF_LIFE_S = 86_400.0


@dataclass
class World:
    catalog: FakeCatalogStore
    trending_sets: FakeTrendingSets
    charts: FakeChartStore
    projection: FakeProjection
    rankings: Rankings


@pytest.fixture
def world() -> World:
    catalog = FakeCatalogStore()
    trending_sets = FakeTrendingSets()
    chart_store = FakeChartStore(catalog)
    projection = FakeProjection()
    rankings = Rankings(projection, trending_sets, catalog, chart_store, half_life_s=HALF_LIFE_S, clock=lambda: NOW)
    return World(catalog, trending_sets, chart_store, projection, rankings)


def ids(entries: list[Entry]) -> list[str]:
    return [e.item_id for e in entries]


def days_ago(n: int) -> date:
    return TODAY - timedelta(days=n)


# -- trending ----------------------------------------------------------------------


async def test_trending_ranks_by_stored_score_and_reports_it_unscaled(world: World) -> None:
    a, b, c = (world.catalog.put(song(i)) for i in "abc")
    b = world.catalog.put(song("b", up_votes=4, down_votes=1, score=3))
    t = world.catalog.put(tool("t"))
    for item, stored in ((a, 3.0), (b, 5.0), (c, 1.0), (t, 2.0)):
        world.trending_sets.add(item, stored)

    result = await world.rankings.trending(0, "", "", "")

    assert ids(result.songs) == ["b", "a", "c"] and ids(result.tools) == ["t"]
    first = result.songs[0]
    assert (first.rank, first.title, first.artist) == (1, "title b", "artist b")
    assert (first.up_votes, first.down_votes, first.score) == (4, 1, 3)
    # Stored against the day's start (the epoch until a rebuild): 15.5 h of decay divided out.
    assert first.trending_score == round(5.0 * math.pow(2, -15.5 / 24), 6)
    assert (result.tools[0].title, result.tools[0].artist) == ("name t", "")
    assert result.updated_at == NOW


async def test_trending_leaves_out_items_gone_from_the_catalog(world: World) -> None:
    world.trending_sets.add(world.catalog.put(song("kept")), 1.0)
    world.trending_sets.add(song("gone"), 9.0)  # in the sets, not in the catalog
    result = await world.rankings.trending(0, "", "", "")
    assert ids(result.songs) == ["kept"] and result.songs[0].rank == 1


async def test_trending_filters_by_genre_platform_and_category(world: World) -> None:
    for item, stored in (
        (song("rock-udio", genre="rock", platform="udio"), 3.0),
        (song("rock-suno", genre="rock", platform="suno"), 2.0),
        (song("jazz-udio", genre="jazz", platform="udio"), 1.0),
        (tool("daw", category="daw"), 2.0),
        (tool("mixer", category="mixing"), 1.0),
    ):
        world.trending_sets.add(world.catalog.put(item), stored)

    rock = await world.rankings.trending(0, "rock", "", "")
    assert ids(rock.songs) == ["rock-udio", "rock-suno"]
    assert ids(rock.tools) == ["daw", "mixer"]  # song filters leave tools alone
    assert ids((await world.rankings.trending(0, "", "udio", "")).songs) == ["rock-udio", "jazz-udio"]
    both = await world.rankings.trending(0, "rock", "udio", "")
    assert ids(both.songs) == ["rock-udio"]
    assert both.songs[0].trending_score == round(3.0 * math.pow(2, -15.5 / 24), 6)  # the genre set's score
    assert ids((await world.rankings.trending(0, "", "", "mixing")).tools) == ["mixer"]
    assert ids((await world.rankings.trending(0, "blues", "", "")).songs) == []


async def test_trending_limit(world: World) -> None:
    for n in range(12):
        world.trending_sets.add(world.catalog.put(song(f"s{n:02}")), float(n))
    assert ids((await world.rankings.trending(2, "", "", "")).songs) == ["s11", "s10"]
    assert len((await world.rankings.trending(0, "", "", "")).songs) == 10
    for bad in (-1, 51):
        with pytest.raises(InvalidArgument) as error:
            await world.rankings.trending(bad, "", "", "")
        assert error.value.field == "limit"


async def test_trending_movement_is_against_yesterdays_daily_chart(world: World) -> None:
    a, b, c = (world.catalog.put(song(i)) for i in "abc")
    world.charts.vote(b, days_ago(1), up=5)
    world.charts.vote(a, days_ago(1), up=3)
    await world.charts.save_snapshot("song", days_ago(2), [Tally("a", 3, 0)])  # a was 1st two days ago
    for item, stored in ((a, 10.0), (b, 5.0), (c, 1.0)):
        world.trending_sets.add(item, stored)

    entries = (await world.rankings.trending(0, "", "", "")).songs

    moves = [(e.item_id, e.previous_rank, e.movement, e.peak_rank, e.days_on_chart) for e in entries]
    assert moves == [("a", 2, "up", 1, 1), ("b", 1, "down", 0, 0), ("c", 0, "new", 0, 0)]


# -- period charts -----------------------------------------------------------------


async def test_chart_windows_by_period(world: World) -> None:
    a, b, c, d = (world.catalog.put(song(i)) for i in "abcd")
    world.charts.vote(a, TODAY, up=2)
    world.charts.vote(b, days_ago(5), up=4)
    world.charts.vote(c, days_ago(10), up=6)
    world.charts.vote(d, days_ago(40), up=8)

    async def chart(period: str) -> list[str]:
        result = await world.rankings.top_chart(period, "", "", 0, "", "", "")
        assert (result.period, result.date, result.item_type) == (period, TODAY.isoformat(), "song")
        return ids(result.entries)

    assert await chart("daily") == ["a"]
    assert await chart("weekly") == ["b", "a"]
    assert await chart("monthly") == ["c", "b", "a"]
    assert await chart("all_time") == ["d", "c", "b", "a"]
    with pytest.raises(InvalidArgument):
        await chart("yearly")


async def test_chart_of_a_past_date_ends_on_that_date(world: World) -> None:
    a, b = world.catalog.put(song("a")), world.catalog.put(song("b"))
    world.charts.vote(a, days_ago(3), up=1)
    world.charts.vote(b, days_ago(1), up=5)
    result = await world.rankings.top_chart("weekly", days_ago(2).isoformat(), "song", 0, "", "", "")
    assert result.date == days_ago(2).isoformat() and ids(result.entries) == ["a"]


async def test_chart_sorts(world: World) -> None:
    for item_id, up, down in (("liked", 90, 10), ("few", 2, 0), ("split", 50, 50)):
        world.charts.vote(world.catalog.put(song(item_id)), TODAY, up=up, down=down)

    async def chart(sort: str) -> list[str]:
        return ids((await world.rankings.top_chart("daily", "", "song", 0, sort, "", "")).entries)

    assert await chart("") == await chart("score") == ["liked", "few", "split"]
    assert await chart("best") == ["liked", "split", "few"]
    assert await chart("controversial") == ["split", "liked", "few"]
    with pytest.raises(InvalidArgument):
        await chart("newest")


async def test_chart_entries_carry_the_windows_votes_and_the_items_fields(world: World) -> None:
    world.catalog.put(song("a", up_votes=100, down_votes=7, score=93))
    world.charts.vote(song("a"), TODAY, up=3, down=1)
    world.trending_sets.add(song("a"), 2.0)
    entry = (await world.rankings.top_chart("daily", "", "song", 0, "", "", "")).entries[0]
    assert (entry.title, entry.artist, entry.up_votes, entry.down_votes, entry.score) == (
        "title a",
        "artist a",
        3,
        1,
        2,
    )
    assert entry.trending_score == round(2.0 * math.pow(2, -15.5 / 24), 6)


async def test_chart_filters_and_limit(world: World) -> None:
    for n, genre in enumerate(("rock", "rock", "jazz")):
        world.charts.vote(world.catalog.put(song(f"s{n}", genre=genre)), TODAY, up=n + 1)
    world.charts.vote(world.catalog.put(tool("t")), TODAY, up=1)

    rock = await world.rankings.top_chart("daily", "", "song", 0, "", "rock", "")
    assert ids(rock.entries) == ["s1", "s0"]
    assert ids((await world.rankings.top_chart("daily", "", "song", 1, "", "", "")).entries) == ["s2"]
    assert ids((await world.rankings.top_chart("daily", "", "tool", 0, "", "", "")).entries) == ["t"]
    with pytest.raises(InvalidArgument) as error:
        await world.rankings.top_chart("daily", "", "tool", 0, "", "rock", "")
    assert error.value.field == "genre"
    with pytest.raises(InvalidArgument):
        await world.rankings.top_chart("daily", "", "song", 101, "", "", "")


@pytest.mark.parametrize("day", ["2026-03-11", "1999-12-31", "10/03/2026"])
async def test_chart_date_must_be_a_day_up_to_today(world: World, day: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        await world.rankings.top_chart("daily", day, "song", 0, "", "", "")
    assert error.value.field == "date"


async def test_chart_movement_new_and_peaks_from_snapshots(world: World) -> None:
    a, b, c = (world.catalog.put(song(i)) for i in "abc")
    day = days_ago(3)
    world.charts.vote(a, day - timedelta(days=1), up=3)
    world.charts.vote(b, day - timedelta(days=1), up=2)
    world.charts.vote(b, day, up=4)
    world.charts.vote(a, day, up=1)
    world.charts.vote(c, day, up=2)
    await world.rankings.snapshot_finished_days()

    entries = (await world.rankings.top_chart("daily", day.isoformat(), "song", 0, "", "", "")).entries

    rows = [(e.item_id, e.rank, e.previous_rank, e.movement, e.peak_rank, e.days_on_chart) for e in entries]
    assert rows == [("b", 1, 2, "up", 1, 2), ("c", 2, 0, "new", 2, 1), ("a", 3, 1, "down", 1, 2)]


async def test_todays_chart_counts_today_as_a_day_on_the_chart(world: World) -> None:
    a, b = world.catalog.put(song("a")), world.catalog.put(song("b"))
    world.charts.vote(b, days_ago(1), up=5)
    world.charts.vote(a, days_ago(1), up=1)
    await world.rankings.snapshot_finished_days()  # yesterday: b 1st, a 2nd
    world.charts.vote(a, TODAY, up=9)
    world.charts.vote(b, TODAY, up=1)

    entries = (await world.rankings.top_chart("daily", "", "song", 0, "", "", "")).entries

    rows = [(e.item_id, e.rank, e.previous_rank, e.movement, e.peak_rank, e.days_on_chart) for e in entries]
    assert rows == [("a", 1, 2, "up", 1, 2), ("b", 2, 1, "down", 1, 2)]


async def test_chart_keeps_an_entry_whose_item_is_gone(world: World) -> None:
    # The window's tallies and the items are read apart: an item deleted in
    # between still fills its rank, without a title.
    world.charts.vote(world.catalog.put(song("a")), TODAY, up=1)
    chart_store = world.charts

    class ItemsDeletedMeanwhile(FakeCatalogStore):
        async def items_by_id(self, item_type: str, ids: list[str]) -> dict[str, Item]:
            return {}

    rankings = Rankings(
        world.projection, world.trending_sets, ItemsDeletedMeanwhile(), chart_store, HALF_LIFE_S, lambda: NOW
    )
    entry = (await rankings.top_chart("daily", "", "song", 0, "", "", "")).entries[0]
    assert (entry.item_id, entry.title, entry.artist, entry.up_votes) == ("a", "", "", 1)


# -- history and snapshots -------------------------------------------------------------


async def test_snapshots_freeze_finished_days_and_redo_yesterday(world: World) -> None:
    a, b = world.catalog.put(song("a")), world.catalog.put(song("b"))
    world.charts.vote(a, days_ago(3), up=1)
    world.charts.vote(b, days_ago(3), up=2)
    world.charts.vote(a, TODAY, up=1)  # today is not finished

    assert await world.rankings.snapshot_finished_days() == 3  # songs: 3 days ago and yesterday; tools: yesterday
    assert [t.item_id for t in world.charts.snapshots[("song", days_ago(3))]] == ["b", "a"]
    assert world.charts.snapshots[("song", days_ago(1))] == []
    assert ("song", TODAY) not in world.charts.snapshots

    world.charts.vote(a, days_ago(1), up=1)  # a late event for yesterday
    assert await world.rankings.snapshot_finished_days() == 2
    assert [t.item_id for t in world.charts.snapshots[("song", days_ago(1))]] == ["a"]


async def test_history_is_the_frozen_days_then_today(world: World) -> None:
    a, b = world.catalog.put(song("a")), world.catalog.put(song("b"))
    world.charts.vote(a, days_ago(3), up=2)
    world.charts.vote(b, days_ago(2), up=3)
    world.charts.vote(a, days_ago(2), up=1, down=1)
    world.charts.vote(b, TODAY, up=1)
    world.charts.vote(a, TODAY, up=4)
    await world.rankings.snapshot_finished_days()

    history = await world.rankings.history("songs", "a", 0)

    assert (history.item_type, history.item_id) == ("song", "a")
    points = [(p.day, p.rank, p.score, p.up_votes, p.down_votes) for p in history.points]
    assert points == [(days_ago(3), 1, 2, 2, 0), (days_ago(2), 2, 0, 1, 1), (TODAY, 1, 4, 4, 0)]
    recent = await world.rankings.history("song", "a", 2)  # yesterday and today
    assert [p.day for p in recent.points] == [TODAY]


async def test_history_rules(world: World) -> None:
    world.catalog.put(tool("t"))
    assert (await world.rankings.history("tools", "t", 0)).points == []
    with pytest.raises(NotFound):
        await world.rankings.history("songs", "t", 0)
    with pytest.raises(InvalidArgument) as error:
        await world.rankings.history("albums", "t", 0)
    assert error.value.field == "collection"
    with pytest.raises(InvalidArgument):
        await world.rankings.history("tools", "t", 366)
    with pytest.raises(InvalidArgument):
        await world.rankings.history("tools", "bad id!", 0)


# -- applying votes and the trending epoch -------------------------------------------------


async def test_votes_and_reweighs_are_applied_with_the_current_trend_clock(world: World) -> None:
    event = VoteEvent(event_id=1, type="vote", agent_id="ag", item_type="song", item_id="a", direction=1)
    await world.rankings.apply_vote_events([event])
    await world.rankings.agent_changed("ag")
    (events, trend), (agent, reweigh_trend) = world.projection.applied[0], world.projection.reweighed[0]
    assert events == [event] and agent == "ag"
    for clock in (trend, reweigh_trend):
        assert (clock.half_life_s, clock.epoch, clock.now()) == (HALF_LIFE_S, datetime(2026, 3, 10, tzinfo=UTC), NOW)


async def test_first_rebuild_sets_and_stores_an_epoch(world: World) -> None:
    await world.rankings.rebuild_trending()
    assert world.trending_sets.stored_epoch == world.rankings.epoch == datetime(2026, 3, 10, 15, tzinfo=UTC)
    assert world.trending_sets.rebuilt_with[-1].epoch == world.rankings.epoch


async def test_rebuild_adopts_the_stored_epoch_and_replaces_one_too_old(world: World) -> None:
    stored = NOW - timedelta(days=3)
    world.trending_sets.stored_epoch = stored
    world.trending_sets.add(world.catalog.put(song("a")), 8.0)
    await world.rankings.rebuild_trending()
    assert world.rankings.epoch == stored and world.trending_sets.stored_epoch == stored
    entry = (await world.rankings.trending(0, "", "", "")).songs[0]
    assert entry.trending_score == 1.0  # 8 scaled by 2 ** 3 half-lives

    world.trending_sets.stored_epoch = NOW - timedelta(seconds=HALF_LIFE_S * (MAX_EXPONENT + 1))
    await world.rankings.rebuild_trending()
    assert world.rankings.epoch == world.trending_sets.stored_epoch == datetime(2026, 3, 10, 15, tzinfo=UTC)
