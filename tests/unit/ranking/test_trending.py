"""The live trending lists against in-memory stores: order, filters, limit,
unscaled scores and movement against yesterday's daily chart; fixed clock."""

from __future__ import annotations

import asyncio
import math

import pytest

from services.common.errors import InvalidArgument
from services.ranking.charts import Tally
from tests.unit.ranking.fakes import song, tool
from tests.unit.ranking.world import NOW, World, days_ago, ids


async def test_trending_ranks_by_stored_score_and_reports_it_unscaled(world: World) -> None:
    a, b, c = (world.catalog.put(song(i)) for i in "abc")
    b = world.catalog.put(song("b", up_votes=4, down_votes=1, score=3))
    t = world.catalog.put(tool("t"))
    for item, stored in ((a, 3.0), (b, 5.0), (c, 1.0), (t, 2.0)):
        world.trending_sets.add(item, stored)

    result = await world.rankings.trending.lists(0, "", "", "")

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
    result = await world.rankings.trending.lists(0, "", "", "")
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

    rock = await world.rankings.trending.lists(0, "rock", "", "")
    assert ids(rock.songs) == ["rock-udio", "rock-suno"]
    assert ids(rock.tools) == ["daw", "mixer"]  # song filters leave tools alone
    assert ids((await world.rankings.trending.lists(0, "", "udio", "")).songs) == ["rock-udio", "jazz-udio"]
    both = await world.rankings.trending.lists(0, "rock", "udio", "")
    assert ids(both.songs) == ["rock-udio"]
    assert both.songs[0].trending_score == round(3.0 * math.pow(2, -15.5 / 24), 6)  # the genre set's score
    assert ids((await world.rankings.trending.lists(0, "", "", "mixing")).tools) == ["mixer"]
    assert ids((await world.rankings.trending.lists(0, "blues", "", "")).songs) == []


async def test_trending_limit(world: World) -> None:
    for n in range(12):
        world.trending_sets.add(world.catalog.put(song(f"s{n:02}")), float(n))
    assert ids((await world.rankings.trending.lists(2, "", "", "")).songs) == ["s11", "s10"]
    assert len((await world.rankings.trending.lists(0, "", "", "")).songs) == 10
    for bad in (-1, 51):
        with pytest.raises(InvalidArgument) as error:
            await world.rankings.trending.lists(bad, "", "", "")
        assert error.value.field == "limit"


async def test_trending_movement_is_against_yesterdays_daily_chart(world: World) -> None:
    a, b, c = (world.catalog.put(song(i)) for i in "abc")
    world.charts.vote(b, days_ago(1), up=5)
    world.charts.vote(a, days_ago(1), up=3)
    await world.charts.save_snapshots("song", {days_ago(2): [Tally("a", 3, 0, 3.0, 0.0)]})  # a was 1st two days ago
    for item, stored in ((a, 10.0), (b, 5.0), (c, 1.0)):
        world.trending_sets.add(item, stored)

    entries = (await world.rankings.trending.lists(0, "", "", "")).songs

    moves = [(e.item_id, e.previous_rank, e.movement, e.peak_rank, e.days_on_chart) for e in entries]
    assert moves == [("a", 2, "up", 1, 1), ("b", 1, "down", 0, 0), ("c", 0, "new", 0, 0)]


async def test_concurrent_identical_reads_share_one_computation(world: World) -> None:
    world.trending_sets.add(world.catalog.put(song("a")), 1.0)
    same = await asyncio.gather(*(world.rankings.trending.lists(0, "", "", "") for _ in range(5)))
    assert all(lists is same[0] for lists in same)
    assert world.trending_sets.top_reads == 2  # one read of the songs' set and one of the tools'
    await world.rankings.trending.lists(3, "", "", "")  # another limit is another answer
    assert world.trending_sets.top_reads == 4
