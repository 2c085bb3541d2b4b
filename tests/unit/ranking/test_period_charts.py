"""Period charts against in-memory stores: windows, sorts, filters, dates,
movement, new entries, peaks and days on chart; fixed clock."""

from __future__ import annotations

import asyncio
import math
import random
from datetime import timedelta
from typing import Any

import pytest

from services.common.errors import InvalidArgument
from services.ranking.charts import PERIODS, SORTS
from services.ranking.items import Item
from services.ranking.rankings.period_charts import Charts
from tests.unit.ranking.fakes import FakeCatalogStore, song, tool
from tests.unit.ranking.world import NOW, TODAY, World, days_ago, ids


async def test_chart_windows_by_period(world: World) -> None:
    a, b, c, d = (world.catalog.put(song(i)) for i in "abcd")
    world.charts.vote(a, TODAY, up=2)
    world.charts.vote(b, days_ago(5), up=4)
    world.charts.vote(c, days_ago(10), up=6)
    world.charts.vote(d, days_ago(40), up=8)

    async def chart(period: str) -> list[str]:
        result = await world.rankings.charts.top_chart(period, "", "", 0, "", "", "")
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
    result = await world.rankings.charts.top_chart("weekly", days_ago(2).isoformat(), "song", 0, "", "", "")
    assert result.date == days_ago(2).isoformat() and ids(result.entries) == ["a"]


async def test_chart_sorts(world: World) -> None:
    for item_id, up, down in (("liked", 90, 10), ("few", 2, 0), ("split", 50, 50)):
        world.charts.vote(world.catalog.put(song(item_id)), TODAY, up=up, down=down)

    async def chart(sort: str) -> list[str]:
        return ids((await world.rankings.charts.top_chart("daily", "", "song", 0, sort, "", "")).entries)

    assert await chart("") == await chart("score") == ["liked", "few", "split"]
    assert await chart("best") == ["liked", "split", "few"]
    assert await chart("controversial") == ["split", "liked", "few"]
    with pytest.raises(InvalidArgument):
        await chart("newest")


async def test_chart_entries_carry_the_windows_votes_and_the_items_fields(world: World) -> None:
    world.catalog.put(song("a", up_votes=100, down_votes=7, score=93))
    world.charts.vote(song("a"), TODAY, up=3, down=1)
    world.trending_sets.add(song("a"), 2.0)
    entry = (await world.rankings.charts.top_chart("daily", "", "song", 0, "", "", "")).entries[0]
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

    rock = await world.rankings.charts.top_chart("daily", "", "song", 0, "", "rock", "")
    assert ids(rock.entries) == ["s1", "s0"]
    assert ids((await world.rankings.charts.top_chart("daily", "", "song", 1, "", "", "")).entries) == ["s2"]
    assert ids((await world.rankings.charts.top_chart("daily", "", "tool", 0, "", "", "")).entries) == ["t"]
    with pytest.raises(InvalidArgument) as error:
        await world.rankings.charts.top_chart("daily", "", "tool", 0, "", "rock", "")
    assert error.value.field == "genre"
    with pytest.raises(InvalidArgument):
        await world.rankings.charts.top_chart("daily", "", "song", 101, "", "", "")


@pytest.mark.parametrize("day", ["2026-03-11", "1999-12-31", "10/03/2026"])
async def test_chart_date_must_be_a_day_up_to_today(world: World, day: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        await world.rankings.charts.top_chart("daily", day, "song", 0, "", "", "")
    assert error.value.field == "date"


async def test_chart_movement_new_and_peaks_from_snapshots(world: World) -> None:
    a, b, c = (world.catalog.put(song(i)) for i in "abc")
    day = days_ago(3)
    world.charts.vote(a, day - timedelta(days=1), up=3)
    world.charts.vote(b, day - timedelta(days=1), up=2)
    world.charts.vote(b, day, up=4)
    world.charts.vote(a, day, up=1)
    world.charts.vote(c, day, up=2)
    await world.rankings.snapshots.snapshot_finished_days()

    entries = (await world.rankings.charts.top_chart("daily", day.isoformat(), "song", 0, "", "", "")).entries

    rows = [(e.item_id, e.rank, e.previous_rank, e.movement, e.peak_rank, e.days_on_chart) for e in entries]
    assert rows == [("b", 1, 2, "up", 1, 2), ("c", 2, 0, "new", 2, 1), ("a", 3, 1, "down", 1, 2)]


async def test_todays_chart_counts_today_as_a_day_on_the_chart(world: World) -> None:
    a, b = world.catalog.put(song("a")), world.catalog.put(song("b"))
    world.charts.vote(b, days_ago(1), up=5)
    world.charts.vote(a, days_ago(1), up=1)
    await world.rankings.snapshots.snapshot_finished_days()  # yesterday: b 1st, a 2nd
    world.charts.vote(a, TODAY, up=9)
    world.charts.vote(b, TODAY, up=1)

    entries = (await world.rankings.charts.top_chart("daily", "", "song", 0, "", "", "")).entries

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

    charts = Charts(world.rankings.scale, world.trending_sets, ItemsDeletedMeanwhile(), chart_store, lambda: NOW)
    entry = (await charts.top_chart("daily", "", "song", 0, "", "", "")).entries[0]
    assert (entry.item_id, entry.title, entry.artist, entry.up_votes) == ("a", "", "", 1)


async def test_concurrent_identical_reads_share_one_computation(world: World) -> None:
    world.charts.vote(world.catalog.put(song("a")), TODAY, up=1)
    same = await asyncio.gather(*(world.rankings.charts.top_chart("weekly", "", "", 0, "", "", "") for _ in range(5)))
    assert all(chart.entries is same[0].entries for chart in same)
    # The week's top, the week before it and today's daily ranks of its
    # entries, from the live windows; no window summed.
    assert (world.charts.live_reads, world.charts.window_reads) == (3, 0)


async def test_todays_chart_ranks_the_rows_it_reads_by_the_rules(world: World) -> None:
    # The live window's index orders by keys rounded in PostgreSQL; the
    # chart reads past the limit and ranks by the rules themselves, so an
    # index order that disagrees at the boundary does not reach the answer.
    for item_id, up in (("a", 1), ("b", 3), ("c", 2)):
        world.charts.vote(world.catalog.put(song(item_id)), TODAY, up=up)
    in_index_order = world.charts.live_top

    async def disagreeing(*args: Any) -> list[Any]:
        return list(reversed(await in_index_order(*args)))

    world.charts.live_top = disagreeing  # type: ignore[method-assign,assignment]
    entries = (await world.rankings.charts.top_chart("daily", "", "song", 2, "", "", "")).entries
    assert [(e.item_id, e.rank) for e in entries] == [("b", 1), ("c", 2)]


async def test_past_charts_read_frozen_tops_and_answer_as_the_tallies_summed(world: World) -> None:
    rng = random.Random(5)  # noqa: S311 - synthetic test data, not secrets
    items = [world.catalog.put(song(f"s{n:02d}", genre=("rock", "jazz")[n % 2])) for n in range(14)]
    for n in range(70):
        for item in rng.sample(items, 5):
            weight = rng.choice((1.0, 0.25))
            world.charts.vote(item, days_ago(n), up=rng.randint(0, 3), down=rng.randint(0, 2), weight=weight)
    await world.rankings.snapshots.snapshot_finished_days()
    await world.rankings.live.roll()
    while await world.rankings.freezer.freeze():
        pass
    fresh_charts = Charts(world.rankings.scale, world.trending_sets, world.catalog, world.charts, lambda: NOW)
    reads = [(period, sort, days_ago(n)) for period in PERIODS for sort in SORTS for n in (1, 9, 33, 69)]

    frozen = [await fresh_charts.top_chart(p, d.isoformat(), "song", 10, s, "", "") for p, s, d in reads]
    assert world.charts.window_reads == 0 and world.charts.frozen_reads == len(reads)
    # A genre filter is not frozen: the window's tallies summed.
    await fresh_charts.top_chart("weekly", days_ago(9).isoformat(), "song", 10, "", "rock", "")
    assert world.charts.window_reads == 2  # the week and the week before

    world.charts.unfreeze()
    on_demand_charts = Charts(world.rankings.scale, world.trending_sets, world.catalog, world.charts, lambda: NOW)
    on_demand = [await on_demand_charts.top_chart(p, d.isoformat(), "song", 10, s, "", "") for p, s, d in reads]
    assert world.charts.frozen_reads == len(reads)
    assert [c.entries for c in frozen] == [c.entries for c in on_demand]
    assert any(e.movement in ("up", "down") for c in frozen for e in c.entries)


async def test_charts_summed_on_demand_run_a_few_at_a_time(world: World) -> None:
    genres = ("rock", "jazz", "pop", "folk", "soul")
    for n, genre in enumerate(genres):
        world.charts.vote(world.catalog.put(song(f"s{n}", genre=genre)), days_ago(3), up=1)
    summing, most = 0, 0
    window_tallies = world.charts.window_tallies

    async def counted(*args: Any) -> Any:
        nonlocal summing, most
        summing += 1
        most = max(most, summing)
        try:
            for _ in range(3):  # round trips: the others get to start theirs
                await asyncio.sleep(0)
            return await window_tallies(*args)
        finally:
            summing -= 1

    world.charts.window_tallies = counted  # type: ignore[method-assign,assignment]
    charts = Charts(
        world.rankings.scale, world.trending_sets, world.catalog, world.charts, lambda: NOW, on_demand_concurrency=2
    )
    day = days_ago(3).isoformat()
    answers = await asyncio.gather(*(charts.top_chart("weekly", day, "song", 0, "", genre, "") for genre in genres))
    assert [ids(a.entries) for a in answers] == [["s0"], ["s1"], ["s2"], ["s3"], ["s4"]]
    assert most == 2
