"""The frozen chart tops' walk (services/ranking/frozen_tops.py) against
each chart ranked whole from its window's tallies, by the rules of
services/ranking/charts.py: every period, every sort, every day, the
previous ranks too, on random tallies."""

from __future__ import annotations

import random
from datetime import date, timedelta

import pytest

from services.ranking import charts
from services.ranking.charts import Tally
from services.ranking.frozen_tops import LOOKBACK_DAYS, PERIODS, walk

FIRST_TALLY = date(2026, 1, 1)


def _random_tallies(seed: int, days: int, items: int) -> dict[date, list[Tally]]:
    rng = random.Random(seed)  # noqa: S311 - synthetic test data, not secrets
    tallies: dict[date, list[Tally]] = {}
    for n in range(days):
        day = FIRST_TALLY + timedelta(days=n)
        voted = rng.sample(range(items), rng.randint(0, items // 2))
        rows = []
        for i in voted:
            up, down = rng.randint(0, 4), rng.randint(0, 3)
            if up + down == 0:
                continue
            # Weights as agents have them: trusted 1, probation 0.25, flagged 0.
            weight = rng.choice((1.0, 1.0, 0.25, 0.0))
            rows.append(Tally(f"item-{i:02d}", up, down, up * weight, down * weight))
        tallies[day] = rows
    return tallies


def _window(tallies: dict[date, list[Tally]], first: date | None, last: date) -> list[Tally]:
    sums: dict[str, list[float]] = {}
    for day, rows in tallies.items():
        if day > last or (first is not None and day < first):
            continue
        for t in rows:
            row = sums.setdefault(t.item_id, [0, 0, 0.0, 0.0])
            for k, v in enumerate((t.up, t.down, t.weighted_up, t.weighted_down)):
                row[k] += v
    return charts.counted([Tally(i, int(r[0]), int(r[1]), r[2], r[3]) for i, r in sums.items() if r[0] + r[1]])


def _whole(tallies: dict[date, list[Tally]], period: str, sort: str, day: date) -> list[Tally]:
    return charts.rank(_window(tallies, *charts.window(period, day)), sort)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_frozen_chart_is_its_window_ranked_whole(seed: int) -> None:
    tallies = _random_tallies(seed, days=75, items=30)
    first = FIRST_TALLY + timedelta(days=40)  # past the previous monthly window's start
    last = FIRST_TALLY + timedelta(days=74)
    before = _window(tallies, None, first - timedelta(days=1))
    looked_at = {d: r for d, r in tallies.items() if d >= first - timedelta(days=LOOKBACK_DAYS)}
    depth = 12
    frozen = dict(walk(first, last, before, looked_at, depth))
    assert sorted(frozen) == [first + timedelta(days=n) for n in range(35)]
    for day, rows in frozen.items():
        for period in PERIODS:
            for sort in charts.SORTS:
                got = [r for r in rows if (r.period, r.sort) == (period, sort)]
                whole = _whole(tallies, period, sort, day)
                assert [r.rank for r in got] == list(range(1, min(depth, len(whole)) + 1))
                assert [(r.tally.item_id, r.tally.up, r.tally.down) for r in got] == [
                    (t.item_id, t.up, t.down) for t in whole[:depth]
                ], (day, period, sort)
                assert [round(r.tally.weighted_score, 6) for r in got] == [
                    round(t.weighted_score, 6) for t in whole[:depth]
                ]
                before_ranks = {
                    t.item_id: n
                    for n, t in enumerate(_whole(tallies, period, sort, charts.previous_date(period, day)), 1)
                }
                assert [r.previous_rank for r in got] == [before_ranks.get(r.tally.item_id) for r in got]


def test_a_walk_from_the_first_tallied_day_needs_no_total_before_it() -> None:
    tallies = _random_tallies(7, days=10, items=8)
    frozen = dict(walk(FIRST_TALLY, FIRST_TALLY + timedelta(days=9), [], tallies))
    last = frozen[FIRST_TALLY + timedelta(days=9)]
    all_time = [r.tally.item_id for r in last if (r.period, r.sort) == ("all_time", "score")]
    assert all_time == [t.item_id for t in _whole(tallies, "all_time", "score", FIRST_TALLY + timedelta(days=9))]
    # The first day's previous charts are empty: everything on it is new.
    assert all(r.previous_rank is None for r in frozen[FIRST_TALLY])


def test_an_item_whose_votes_leave_the_window_leaves_the_chart() -> None:
    day0 = FIRST_TALLY
    tallies = {day0: [Tally("gone", 5, 0, 5.0, 0.0)], day0 + timedelta(days=1): [Tally("stays", 1, 0, 1.0, 0.0)]}
    frozen = dict(walk(day0, day0 + timedelta(days=8), [], tallies))
    weekly = [r.tally.item_id for r in frozen[day0 + timedelta(days=7)] if (r.period, r.sort) == ("weekly", "score")]
    assert weekly == ["stays"]
    daily = [r for r in frozen[day0 + timedelta(days=8)] if r.period == "daily"]
    assert daily == []
