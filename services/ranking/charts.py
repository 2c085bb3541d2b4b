"""Chart rules (pure functions): windows, orderings, movement.

- daily: the day itself; weekly: the 7 days ending on the date; monthly: the
  30 days ending on it; all_time: everything up to it.
- sort=score: net score of the votes cast in the window; ties by more up
  votes, then by id.
- sort=best: the Wilson score interval's lower bound (95%) of up/(up+down).
- sort=controversial: (up+down) ** (min/max): many votes, split evenly.
- previous_rank/movement compare with the same chart one period earlier
  (all_time: one day earlier); "new" when the item was not on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

from services.common import vocabulary

PERIOD_DAYS = {"daily": 1, "weekly": 7, "monthly": 30}
PERIODS = vocabulary.CHART_PERIODS
SORTS = vocabulary.CHART_SORTS
Z_95 = 1.959963984540054


def window(period: str, day: date) -> tuple[date | None, date]:
    """First and last day (inclusive) of the chart; None = from the beginning."""
    if period == "all_time":
        return None, day
    return day - timedelta(days=PERIOD_DAYS[period] - 1), day


def previous_date(period: str, day: date) -> date:
    return day - timedelta(days=PERIOD_DAYS.get(period, 1))


def wilson_lower_bound(up: int, down: int, z: float = Z_95) -> float:
    n = up + down
    if n == 0:
        return 0.0
    p = up / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt((p * (1 - p) + z * z / (4 * n)) / n)
    return (centre - margin) / (1 + z * z / n)


def controversy(up: int, down: int) -> float:
    if up == 0 or down == 0:
        return 0.0
    magnitude = up + down
    balance = min(up, down) / max(up, down)
    return float(magnitude**balance)


@dataclass(frozen=True)
class Tally:
    item_id: str
    up: int
    down: int

    @property
    def score(self) -> int:
        return self.up - self.down


@dataclass(frozen=True)
class HistoryPoint:
    """An item's place on one day's daily chart (frozen in chart_snapshots, or today's live one)."""

    day: date
    rank: int
    score: int
    up_votes: int
    down_votes: int


def rank(tallies: list[Tally], sort: str) -> list[Tally]:
    if sort == "best":
        key = lambda t: (-wilson_lower_bound(t.up, t.down), -t.up, t.item_id)  # noqa: E731
    elif sort == "controversial":
        key = lambda t: (-controversy(t.up, t.down), -(t.up + t.down), t.item_id)  # noqa: E731
    else:
        key = lambda t: (-t.score, -t.up, t.item_id)  # noqa: E731
    return sorted(tallies, key=key)


def movement(rank_now: int, previous: int | None) -> str:
    if previous is None:
        return "new"
    if rank_now < previous:
        return "up"
    if rank_now > previous:
        return "down"
    return "same"
