"""Chart rules (pure functions): windows, orderings, movement.

- daily: the day itself; weekly: the 7 days ending on the date; monthly: the
  30 days ending on it; all_time: everything up to it.
- Every vote counts with its agent's chart weight (trusted 1, probation a
  configured fraction, flagged 0): up and down below are the weighted sums,
  and an item is on a chart when the votes it got in the window weigh
  anything. The raw counts are shown, never ranked by.
- sort=score: weighted score (up - down); ties by more (weighted) up votes,
  then by id.
- sort=best: the Wilson score interval's lower bound (95%) of up/(up+down).
- sort=controversial: (up+down) ** (min/max): many votes, split evenly.
- previous_rank/movement compare with the same chart one period earlier
  (all_time: one day earlier); "new" when the item was not on it.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from datetime import date, timedelta

from services.common import vocabulary

PERIOD_DAYS = {"daily": 1, "weekly": 7, "monthly": 30}
PERIODS = vocabulary.CHART_PERIODS
SORTS = vocabulary.CHART_SORTS
Z_95 = 1.959963984540054
# Weighted sums are floats: added and taken back vote by vote, a weight like
# 0.1 leaves a residue of about 1e-16. Below this, a sum is nothing, and
# ranking keys are compared at this precision (so equal sums tie).
NO_WEIGHT = 1e-9
_DIGITS = 9


def window(period: str, day: date) -> tuple[date | None, date]:
    """First and last day (inclusive) of the chart; None = from the beginning."""
    if period == "all_time":
        return None, day
    return day - timedelta(days=PERIOD_DAYS[period] - 1), day


def previous_date(period: str, day: date) -> date:
    return day - timedelta(days=PERIOD_DAYS.get(period, 1))


def wilson_lower_bound(up: float, down: float, z: float = Z_95) -> float:
    """Of weighted votes too: a probation vote is that fraction of the evidence."""
    n = up + down
    if n <= NO_WEIGHT:
        return 0.0
    p = up / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt((p * (1 - p) + z * z / (4 * n)) / n)
    return (centre - margin) / (1 + z * z / n)


def controversy(up: float, down: float) -> float:
    """magnitude ** balance. Weighted votes can weigh less than one vote in
    all, where a power would shrink as the split evens: there it is
    magnitude * balance, which grows with both and stays below any item
    weighing one vote or more (whole votes are scored as before)."""
    if up <= NO_WEIGHT or down <= NO_WEIGHT:
        return 0.0
    magnitude = up + down
    balance = min(up, down) / max(up, down)
    if magnitude < 1:
        return magnitude * balance
    return float(magnitude**balance)


@dataclass(frozen=True)
class Tally:
    """An item's votes in a window: raw counts (shown) and weighted sums (ranked by)."""

    item_id: str
    up: int
    down: int
    weighted_up: float
    weighted_down: float

    @property
    def score(self) -> int:
        return self.up - self.down

    @property
    def weighted_score(self) -> float:
        return round(self.weighted_up - self.weighted_down, _DIGITS)


@dataclass(frozen=True)
class HistoryPoint:
    """An item's place on one day's daily chart (frozen in chart_snapshots, or today's live one)."""

    day: date
    rank: int
    score: int
    up_votes: int
    down_votes: int


def counted(tallies: list[Tally]) -> list[Tally]:
    """The tallies whose votes weigh something: an item voted on only by
    flagged agents is off the chart, as if nobody had voted."""
    return [t for t in tallies if t.weighted_up + t.weighted_down > NO_WEIGHT]


def _settled(value: float) -> float:
    return round(value, _DIGITS)


def sort_key(sort: str, t: Tally) -> tuple[float, float, str]:
    """A tally's place in a sort's order: smaller ranks first."""
    if sort == "best":
        return -_settled(wilson_lower_bound(t.weighted_up, t.weighted_down)), -_settled(t.weighted_up), t.item_id
    if sort == "controversial":
        weight = t.weighted_up + t.weighted_down
        return -_settled(controversy(t.weighted_up, t.weighted_down)), -_settled(weight), t.item_id
    return -t.weighted_score, -_settled(t.weighted_up), t.item_id


def rank(tallies: list[Tally], sort: str) -> list[Tally]:
    """By the weighted votes; ties as the sort says, then by id."""
    return sorted(tallies, key=lambda t: sort_key(sort, t))


def top(tallies: list[Tally], sort: str, n: int) -> list[Tally]:
    """The first `n` of rank(tallies, sort), without ordering the rest."""
    return heapq.nsmallest(n, tallies, key=lambda t: sort_key(sort, t))


def movement(rank_now: int, previous: int | None) -> str:
    if previous is None:
        return "new"
    if rank_now < previous:
        return "up"
    if rank_now > previous:
        return "down"
    return "same"
