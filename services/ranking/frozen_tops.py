"""Frozen chart tops (pure): the first rows of every period chart of every
finished day, each sort, no filters, with each row's rank in the same chart
one period earlier, computed by walking the days forward with the windows as
running sums (a day's tallies in, a day's out).

Charts of past dates are read from them (services/ranking/store/frozen_tops.py,
services/ranking/rankings/freezer.py): a read is the rows of one (period,
sort, day), whatever the number of items or days kept. The rules are those
of services/ranking/charts.py; the windows are those of today's live charts
(services/ranking/store/live_charts.py WINDOWS), one period and one day back.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from services.ranking import charts
from services.ranking.charts import Tally

# Rows kept per chart: the largest chart a read may ask for (CHART_MAX).
DEPTH = 100

# Each window by the days back from the chart's day: (first, last), first
# None = from the beginning. "<period>:previous" is the chart movement
# compares with (charts.previous_date: one period back; all_time one day).
WINDOWS: dict[str, tuple[int | None, int]] = {
    "daily": (0, 0),
    "weekly": (6, 0),
    "monthly": (29, 0),
    "all_time": (None, 0),
    "daily:previous": (1, 1),
    "weekly:previous": (13, 7),
    "monthly:previous": (59, 30),
    "all_time:previous": (None, 1),
}
PERIODS = ("daily", "weekly", "monthly", "all_time")
# The days of tallies before the first day walked that its windows hold
# (the all_time ones aside, which start from a total).
LOOKBACK_DAYS = max(first for first, _ in WINDOWS.values() if first is not None)


@dataclass(frozen=True, slots=True)
class FrozenRow:
    """One row of a frozen chart: its rank, the item's votes in the window,
    and its rank in the chart one period earlier (None: not on it)."""

    period: str
    sort: str
    day: date
    rank: int
    tally: Tally
    previous_rank: int | None


@dataclass(frozen=True)
class FreezeInput:
    """A run of finished days to freeze (`first` to `last`), read in one
    snapshot at `generation`, with what walk() needs."""

    item_type: str
    first: date
    last: date
    generation: int
    before_first: list[Tally]
    day_tallies: dict[date, list[Tally]]


class _Window:
    """Per-item sums of raw and weighted votes over a span of days."""

    def __init__(self) -> None:
        self.sums: dict[str, list[float]] = {}

    def add(self, tallies: list[Tally], sign: int = 1) -> None:
        for t in tallies:
            row = self.sums.get(t.item_id)
            if row is None:
                row = self.sums[t.item_id] = [0, 0, 0.0, 0.0]
            row[0] += sign * t.up
            row[1] += sign * t.down
            row[2] += sign * t.weighted_up
            row[3] += sign * t.weighted_down
            if not row[0] and not row[1]:
                # No vote left in the window (a day's votes moved out): off it.
                del self.sums[t.item_id]

    def tallies(self) -> list[Tally]:
        return charts.counted([Tally(i, int(r[0]), int(r[1]), r[2], r[3]) for i, r in self.sums.items()])


def walk(
    first: date,
    last: date,
    before_first: list[Tally],
    day_tallies: Mapping[date, list[Tally]],
    depth: int = DEPTH,
) -> Iterator[tuple[date, list[FrozenRow]]]:
    """Each day from `first` to `last` with its frozen rows (every period,
    every sort, the first `depth` of each).

    `before_first`: each item's votes on every day before `first`;
    `day_tallies`: each day's tallies from LOOKBACK_DAYS before `first` to
    `last` (days missing have none)."""

    def on(day: date) -> list[Tally]:
        return day_tallies.get(day, [])

    windows: dict[str, _Window] = {}
    for name, (first_back, last_back) in WINDOWS.items():
        window = windows[name] = _Window()
        end = first - timedelta(days=last_back)
        if first_back is None:
            window.add(before_first)
            start = first  # the days from `first` to `end`, if any
        else:
            start = first - timedelta(days=first_back)
        day = start
        while day <= end:
            window.add(on(day))
            day += timedelta(days=1)
    day = first
    while day <= last:
        if day > first:
            for name, (first_back, last_back) in WINDOWS.items():
                windows[name].add(on(day - timedelta(days=last_back)))
                if first_back is not None:
                    windows[name].add(on(day - timedelta(days=first_back + 1)), sign=-1)
        yield day, _frozen(day, windows, depth)
        day += timedelta(days=1)


def _frozen(day: date, windows: dict[str, _Window], depth: int) -> list[FrozenRow]:
    rows: list[FrozenRow] = []
    for period in PERIODS:
        now, before = windows[period].tallies(), windows[f"{period}:previous"].tallies()
        for sort in charts.SORTS:
            top = charts.top(now, sort, depth)
            previous = _ranks_in(before, sort, [t.item_id for t in top])
            rows.extend(FrozenRow(period, sort, day, n, t, previous.get(t.item_id)) for n, t in enumerate(top, start=1))
    return rows


def _ranks_in(tallies: list[Tally], sort: str, ids: list[str]) -> dict[str, int]:
    """The ranks of `ids` among `tallies` in a sort's order (those on it):
    the sort keys ordered once, each rank a bisection."""
    keys = {t.item_id: charts.sort_key(sort, t) for t in tallies}
    ordered = sorted(keys.values())
    return {i: bisect.bisect_left(ordered, keys[i]) + 1 for i in ids if i in keys}
