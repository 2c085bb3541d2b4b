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
    snapshot, with what walk() needs."""

    item_type: str
    first: date
    last: date
    before_first: list[Tally]
    day_tallies: dict[date, list[Tally]]


# A chart ordered whole: each item's sort key (which ends with its id), in
# order, and by item.
_Ordered = tuple[list[tuple[float, float, str]], dict[str, tuple[float, float, str]]]


class _Window:
    """Per-item sums of raw and weighted votes over a span of days, and each
    counted item's sort keys, recomputed for the items a day changed only."""

    def __init__(self) -> None:
        self.sums: dict[str, list[float]] = {}
        self.changed: set[str] = set()
        self.counted: dict[str, Tally] = {}
        self.keys: dict[str, dict[str, tuple[float, float, str]]] = {sort: {} for sort in charts.SORTS}

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
            self.changed.add(t.item_id)

    def refresh(self) -> None:
        """The counted tallies and their keys, for the items changed since."""
        for item_id in self.changed:
            row = self.sums.get(item_id)
            # Weighted sums settled to the rules' precision: added and taken
            # away day after day they carry residue (0.2999999999999998),
            # and controversy changes formula at a weight of 1: a chart must
            # not depend on the day a run started from.
            tally = (
                None if row is None else Tally(item_id, int(row[0]), int(row[1]), round(row[2], 9), round(row[3], 9))
            )
            if tally is None or not charts.counted([tally]):
                self.counted.pop(item_id, None)
                for keys in self.keys.values():
                    keys.pop(item_id, None)
                continue
            self.counted[item_id] = tally
            for sort, keys in self.keys.items():
                keys[item_id] = charts.sort_key(sort, tally)
        self.changed.clear()

    def ordered(self, sort: str) -> _Ordered:
        keys = self.keys[sort]
        return sorted(keys.values()), keys


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
    carried: dict[tuple[str, str], tuple[date, _Ordered]] = {}
    day = first
    while day <= last:
        if day > first:
            for name, (first_back, last_back) in WINDOWS.items():
                windows[name].add(on(day - timedelta(days=last_back)))
                if first_back is not None:
                    windows[name].add(on(day - timedelta(days=first_back + 1)), sign=-1)
        yield day, _frozen(day, windows, depth, carried)
        day += timedelta(days=1)


# The periods whose chart one period earlier is the chart of the day before
# (charts.previous_date): the day before's ordering is carried over to rank
# against, not computed again (all_time, the largest, half of a day's work).
_ONE_DAY_BACK = ("daily", "all_time")


def _frozen(
    day: date, windows: dict[str, _Window], depth: int, carried: dict[tuple[str, str], tuple[date, _Ordered]]
) -> list[FrozenRow]:
    rows: list[FrozenRow] = []
    for window in windows.values():
        window.refresh()
    for period in PERIODS:
        now = windows[period]
        for sort in charts.SORTS:
            ordered, keys = now.ordered(sort)
            kept = carried.get((period, sort))
            if period in _ONE_DAY_BACK and kept is not None and kept[0] == day - timedelta(days=1):
                previous_ordered, previous_keys = kept[1]
            else:
                previous_ordered, previous_keys = windows[f"{period}:previous"].ordered(sort)
            if period in _ONE_DAY_BACK:
                carried[(period, sort)] = (day, (ordered, dict(keys)))  # keys change in place tomorrow
            for n, key in enumerate(ordered[:depth], start=1):
                item_id = key[2]
                old = previous_keys.get(item_id)
                previous = None if old is None else bisect.bisect_left(previous_ordered, old) + 1
                rows.append(FrozenRow(period, sort, day, n, now.counted[item_id], previous))
    return rows
