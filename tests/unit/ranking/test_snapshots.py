"""The daily snapshot job against in-memory stores: finished days frozen,
yesterday redone for late events; fixed clock."""

from __future__ import annotations

from tests.unit.ranking.fakes import song
from tests.unit.ranking.world import TODAY, World, days_ago


async def test_snapshots_freeze_finished_days_and_redo_yesterday(world: World) -> None:
    a, b = world.catalog.put(song("a")), world.catalog.put(song("b"))
    world.charts.vote(a, days_ago(3), up=1)
    world.charts.vote(b, days_ago(3), up=2)
    world.charts.vote(a, TODAY, up=1)  # today is not finished

    # Songs: 3 days ago and yesterday; tools: yesterday.
    assert await world.rankings.snapshots.snapshot_finished_days() == 3
    assert [t.item_id for t in world.charts.snapshots[("song", days_ago(3))]] == ["b", "a"]
    assert world.charts.snapshots[("song", days_ago(1))] == []
    assert ("song", TODAY) not in world.charts.snapshots

    world.charts.vote(a, days_ago(1), up=1)  # a late event for yesterday
    assert await world.rankings.snapshots.snapshot_finished_days() == 2
    assert [t.item_id for t in world.charts.snapshots[("song", days_ago(1))]] == ["a"]
