"""The trend scale: vote batches and re-weighs get the current trend clock,
and the rebuild sets, adopts or replaces the epoch; fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.ranking.trending import MAX_EXPONENT
from tests.unit.ranking.fakes import song
from tests.unit.ranking.world import HALF_LIFE_S, NOW, World


async def test_votes_and_reweighs_are_applied_with_the_current_trend_clock(world: World) -> None:
    event = VoteEvent(event_id=1, type="vote", agent_id="ag", item_type="song", item_id="a", direction=1)
    await world.rankings.scale.apply_vote_events([event])
    await world.rankings.scale.agent_changed("ag", set())
    (events, trend), (agent, reweigh_trend) = world.projection.applied[0], world.projection.reweighed[0]
    assert events == [event] and agent == "ag"
    for clock in (trend, reweigh_trend):
        assert (clock.half_life_s, clock.epoch, clock.now()) == (HALF_LIFE_S, datetime(2026, 3, 10, tzinfo=UTC), NOW)


async def test_a_repair_is_applied_with_the_current_trend_clock_while_batches_wait(world: World) -> None:
    event = VoteEvent(event_id=2, type="vote", agent_id="ag", item_type="song", item_id="a", direction=1)
    scale = world.rankings.scale
    held_during_plan = []

    async def plan(_conn: object) -> list[VoteEvent]:
        # A batch or a re-weigh would read weights the repair is about to overtake.
        held_during_plan.append(scale._weights_lock.locked())
        return [event]

    await scale.repair_votes("ag", plan)
    (events, trend) = world.projection.applied[0]
    assert events == [event] and held_during_plan == [True]
    assert (trend.half_life_s, trend.epoch, trend.now()) == (HALF_LIFE_S, datetime(2026, 3, 10, tzinfo=UTC), NOW)


async def test_first_rebuild_sets_and_stores_an_epoch(world: World) -> None:
    await world.rankings.scale.rebuild_trending()
    assert world.trending_sets.stored_epoch == world.rankings.scale.epoch == datetime(2026, 3, 10, 15, tzinfo=UTC)
    assert world.trending_sets.rebuilt_with[-1].epoch == world.rankings.scale.epoch


async def test_rebuild_adopts_the_stored_epoch_and_replaces_one_too_old(world: World) -> None:
    stored = NOW - timedelta(days=3)
    world.trending_sets.stored_epoch = stored
    world.trending_sets.add(world.catalog.put(song("a")), 8.0)
    await world.rankings.scale.rebuild_trending()
    assert world.rankings.scale.epoch == stored and world.trending_sets.stored_epoch == stored
    entry = (await world.rankings.trending.lists(0, "", "", "")).songs[0]
    assert entry.trending_score == 1.0  # 8 scaled by 2 ** 3 half-lives

    world.trending_sets.stored_epoch = NOW - timedelta(seconds=HALF_LIFE_S * (MAX_EXPONENT + 1))
    await world.rankings.scale.rebuild_trending()
    assert world.rankings.scale.epoch == world.trending_sets.stored_epoch == datetime(2026, 3, 10, 15, tzinfo=UTC)
