"""Charts from weighted votes: each vote counts its agent's chart weight
(trusted 1, probation a fraction, flagged 0) in every sort, history rank and
snapshot, while the raw counts are shown; re-weighing an agent re-freezes
the finished days it changed. Pure rules, then the ranking classes against
in-memory stores; fixed clock."""

from __future__ import annotations

import math
from datetime import date

import pytest

import services.ranking.rankings as rankings_module
from services.ranking import charts
from services.ranking.charts import Tally
from tests.unit.ranking.fakes import song
from tests.unit.ranking.world import TODAY, World, days_ago, ids

PROBATION = 0.25


def votes(item_id: str, up: int, down: int, weight: float) -> Tally:
    return Tally(item_id, up, down, up * weight, down * weight)


def frozen(world: World, day: date) -> list[str]:
    return [t.item_id for t in world.charts.snapshots[("song", day)]]


def ranked(tallies: list[Tally], sort: str) -> list[str]:
    return [t.item_id for t in charts.rank(charts.counted(tallies), sort)]


# -- the pure rules ------------------------------------------------------------------


def test_score_ranks_by_weighted_votes_not_raw_ones() -> None:
    many_light = votes("many-light", 10, 0, PROBATION)  # 10 votes weighing 2.5
    few_trusted = votes("few-trusted", 3, 0, 1.0)
    flagged_crowd = Tally("flagged-crowd", 50, 0, 0.0, 0.0)
    mixed = Tally("mixed", 4, 2, 1.0 + 3 * PROBATION, 2.0)  # one trusted up, three probation ups, two trusted downs
    assert ranked([many_light, few_trusted, flagged_crowd, mixed], "score") == ["few-trusted", "many-light", "mixed"]
    assert [t.weighted_score for t in (many_light, few_trusted, mixed)] == [2.5, 3.0, -0.25]
    assert (mixed.up, mixed.down, mixed.score) == (4, 2, 2)  # the raw counts stay as cast


def test_ties_on_weighted_score_go_to_more_weighted_up_votes_then_id() -> None:
    tallies = [
        Tally("b", 5, 1, 1.25, 0.25),  # weighs 1
        Tally("a", 5, 1, 1.25, 0.25),
        Tally("c", 1, 0, 1.0, 0.0),  # weighs 1 too, with fewer (weighted) up votes
        Tally("d", 1, 0, 0.1 + 0.2, 0.0),  # float sums: 0.30000000000000004
        Tally("e", 3, 0, 0.3, 0.0),
    ]
    assert ranked(tallies, "score") == ["a", "b", "c", "d", "e"]


def test_an_item_whose_votes_weigh_nothing_is_off_the_chart() -> None:
    residue = Tally("residue", 1, 0, 0.1 + 0.2 - 0.3, 0.0)  # 5.5e-17 left by adding and taking back
    assert charts.counted([votes("flagged", 9, 0, 0.0), residue, votes("one", 1, 0, PROBATION)]) == [
        votes("one", 1, 0, PROBATION)
    ]


def test_wilson_bound_takes_weighted_votes_as_that_much_evidence() -> None:
    assert charts.wilson_lower_bound(2.5, 0.0) == pytest.approx(0.3942, abs=1e-4)
    assert charts.wilson_lower_bound(0.25, 0.0) < charts.wilson_lower_bound(1.0, 0.0) < 0.21
    assert charts.wilson_lower_bound(1e-12, 0.0) == 0.0
    # Ten probation votes are less evidence than ten trusted ones.
    assert ranked([votes("light", 10, 0, PROBATION), votes("trusted", 10, 0, 1.0)], "best") == ["trusted", "light"]
    # Flagged up votes do not lift an item's bound.
    lifted = Tally("lifted", 40, 2, 2.0, 2.0)  # 38 flagged ups, two trusted ups, two trusted downs
    assert ranked([lifted, votes("fair", 3, 1, 1.0)], "best") == ["fair", "lifted"]


def test_controversy_of_weighted_votes() -> None:
    assert charts.controversy(10.0, 10.0) == 20.0  # whole votes as before: magnitude ** balance
    assert charts.controversy(12.5, 12.5) == 25.0
    assert charts.controversy(2.5, 0.0) == 0.0 and charts.controversy(1e-12, 3.0) == 0.0
    # Below one vote's worth in all, an even split still beats an uneven one.
    assert charts.controversy(0.25, 0.25) == 0.5
    assert charts.controversy(0.5, 0.25) == pytest.approx(0.375)
    assert charts.controversy(0.5, 0.25) < charts.controversy(0.25, 0.25) < 1.0 == charts.controversy(0.5, 0.5)
    ordered = [votes("small", 1, 1, PROBATION), votes("even", 10, 10, PROBATION), votes("lopsided", 2, 1, PROBATION)]
    assert ranked(ordered, "controversial") == ["even", "small", "lopsided"]
    assert math.isclose(charts.controversy(3.0, 1.5), 4.5**0.5)


# -- the ranking classes ---------------------------------------------------------------


async def test_period_charts_rank_by_weighted_score_and_show_raw_counts(world: World) -> None:
    crowd, liked, flagged = (world.catalog.put(song(i)) for i in ("crowd", "liked", "flagged"))
    world.charts.vote(crowd, TODAY, up=8, weight=PROBATION)  # 2.0
    world.charts.vote(liked, TODAY, up=3)  # 3.0
    world.charts.vote(flagged, TODAY, up=40, weight=0.0)
    world.charts.vote(liked, days_ago(3), down=2)  # in the week, not the day
    world.charts.vote(crowd, days_ago(3), up=4, weight=PROBATION)

    daily = (await world.rankings.charts.top_chart("daily", "", "song", 0, "", "", "")).entries
    assert [(e.item_id, e.up_votes, e.down_votes, e.score, e.weighted_score) for e in daily] == [
        ("liked", 3, 0, 3, 3.0),
        ("crowd", 8, 0, 8, 2.0),
    ]
    weekly = (await world.rankings.charts.top_chart("weekly", "", "song", 0, "", "", "")).entries
    assert [(e.item_id, e.score, e.weighted_score) for e in weekly] == [("crowd", 12, 3.0), ("liked", 1, 1.0)]
    best = (await world.rankings.charts.top_chart("daily", "", "song", 0, "best", "", "")).entries
    assert ids(best) == ["liked", "crowd"]


async def test_trending_entries_carry_the_all_time_weighted_score(world: World) -> None:
    a = world.catalog.put(song("a", up_votes=5, down_votes=1, score=4))
    world.charts.vote(a, days_ago(9), up=4, weight=PROBATION)
    world.charts.vote(a, TODAY, up=1, down=1)
    world.trending_sets.add(a, 1.0)
    entry = (await world.rankings.trending.lists(0, "", "", "")).songs[0]
    assert (entry.up_votes, entry.down_votes, entry.score, entry.weighted_score) == (5, 1, 4, 1.0)


async def test_a_reweigh_refreezes_the_finished_days_it_changed(world: World) -> None:
    ring, honest = world.catalog.put(song("ring")), world.catalog.put(song("honest"))
    for day in (days_ago(3), days_ago(1)):
        world.charts.vote(ring, day, up=5)
        world.charts.vote(honest, day, up=2)
    world.charts.vote(ring, TODAY, up=5)
    world.charts.vote(honest, TODAY, up=2)
    await world.rankings.snapshots.snapshot_finished_days()
    assert frozen(world, days_ago(3)) == ["ring", "honest"]

    # The ring's agent is flagged: the projection takes its five votes a day
    # back out of the weighted sums and reports the days it changed.
    for day in (days_ago(3), days_ago(1), TODAY):
        world.charts.reweigh(ring, day, weighted_up=-5.0)
    world.projection.changed_days["ringer"] = {("song", days_ago(3)), ("song", days_ago(1)), ("song", TODAY)}
    await world.rankings.agent_changed("ringer")

    assert [agent for agent, _ in world.projection.reweighed] == ["ringer"]
    assert frozen(world, days_ago(3)) == frozen(world, days_ago(1)) == ["honest"]
    assert ("song", TODAY) not in world.charts.snapshots  # today is live, never frozen
    history = await world.rankings.history.item_history("songs", "honest", 7)
    assert [(p.day, p.rank) for p in history.points] == [(days_ago(3), 1), (days_ago(1), 1), (TODAY, 1)]
    assert (await world.rankings.history.item_history("songs", "ring", 7)).points == []
    daily = (await world.rankings.charts.top_chart("daily", "", "song", 0, "", "", "")).entries
    assert [(e.item_id, e.peak_rank, e.days_on_chart) for e in daily] == [("honest", 1, 3)]


async def test_refreezing_touches_only_the_days_named(world: World) -> None:
    a = world.catalog.put(song("a"))
    world.charts.vote(a, days_ago(2), up=1)
    world.charts.vote(a, days_ago(5), up=1)
    assert await world.rankings.snapshots.refreeze([("song", days_ago(2)), ("song", TODAY)]) == 1
    assert set(world.charts.snapshots) == {("song", days_ago(2))}


async def test_a_failed_reweigh_is_retried_and_refreezes_what_the_first_try_changed(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rankings_module, "REWEIGH_RETRY_S", 0.0)
    world.projection.failures = 1  # commits a chunk (a day of year 2000), then fails
    world.projection.changed_days["ringer"] = {("song", days_ago(1))}
    await world.rankings.agent_changed("ringer")
    assert len(world.projection.reweighed) == 2
    assert {day for _, day in world.charts.snapshots} == {date(2000, 1, 1), days_ago(1)}


async def test_a_reweigh_that_keeps_failing_is_logged_not_raised(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(rankings_module, "REWEIGH_RETRY_S", 0.0)
    world.projection.failures = 99
    await world.rankings.agent_changed("ringer")  # the announcement listener must keep listening
    assert len(world.projection.reweighed) == rankings_module.REWEIGH_ATTEMPTS
    assert "could not re-weigh the votes of agent ringer" in caplog.text
