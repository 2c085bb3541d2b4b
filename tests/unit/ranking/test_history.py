"""Item history against in-memory stores: frozen days then today's live
rank, and the request rules; fixed clock."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest

from services.common.errors import InvalidArgument, NotFound
from tests.unit.ranking.fakes import song, tool
from tests.unit.ranking.world import TODAY, World, days_ago


async def test_history_is_the_frozen_days_then_today(world: World) -> None:
    a, b = world.catalog.put(song("a")), world.catalog.put(song("b"))
    world.charts.vote(a, days_ago(3), up=2)
    world.charts.vote(b, days_ago(2), up=3)
    world.charts.vote(a, days_ago(2), up=1, down=1)
    world.charts.vote(b, TODAY, up=1)
    world.charts.vote(a, TODAY, up=4)
    await world.rankings.snapshots.snapshot_finished_days()

    history = await world.rankings.history.item_history("songs", "a", 0)

    assert (history.item_type, history.item_id) == ("song", "a")
    points = [(p.day, p.rank, p.score, p.up_votes, p.down_votes) for p in history.points]
    assert points == [(days_ago(3), 1, 2, 2, 0), (days_ago(2), 2, 0, 1, 1), (TODAY, 1, 4, 4, 0)]
    recent = await world.rankings.history.item_history("song", "a", 2)  # yesterday and today
    assert [p.day for p in recent.points] == [TODAY]


async def test_history_rules(world: World) -> None:
    world.catalog.put(tool("t"))
    assert (await world.rankings.history.item_history("tools", "t", 0)).points == []
    with pytest.raises(NotFound):
        await world.rankings.history.item_history("songs", "t", 0)
    with pytest.raises(InvalidArgument) as error:
        await world.rankings.history.item_history("albums", "t", 0)
    assert error.value.field == "collection"
    with pytest.raises(InvalidArgument):
        await world.rankings.history.item_history("tools", "t", 366)
    with pytest.raises(InvalidArgument):
        await world.rankings.history.item_history("tools", "bad id!", 0)


async def test_todays_point_is_a_rank_in_the_live_daily_window(world: World) -> None:
    for item_id in "abc":
        world.charts.vote(world.catalog.put(song(item_id)), TODAY, up=1)
    histories = await asyncio.gather(*(world.rankings.history.item_history("songs", i, 0) for i in "abc"))
    assert [h.points[0].rank for h in histories] == [1, 2, 3]
    # One rank read per item; today's tallies are never summed and ranked.
    assert (world.charts.window_reads, world.charts.live_reads) == (0, 3)


async def test_before_the_roll_over_todays_ranks_are_shared_by_every_history_read(world: World) -> None:
    for item_id in "abc":
        world.charts.vote(world.catalog.put(song(item_id)), TODAY, up=1)
    world.charts.live_day = days_ago(1)

    async def not_rolled(today: date) -> date | None:  # the roll-over has not happened yet
        return world.charts.live_day

    world.charts.roll_live_windows = not_rolled  # type: ignore[method-assign]
    histories = await asyncio.gather(*(world.rankings.history.item_history("songs", i, 0) for i in "abc"))
    assert [h.points[0].rank for h in histories] == [1, 2, 3]
    assert (world.charts.window_reads, world.charts.live_reads) == (1, 0)  # today ranked once for all three
