"""Chart rows, shared by trending, period charts, history and the snapshots:
a window ranked from the daily tallies, and the entry shown for a ranked item."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from services.ranking import charts
from services.ranking.charts import Tally
from services.ranking.items import Item, title_and_artist
from services.ranking.rankings.ports import WindowTalliesPort


async def ranked(
    store: WindowTalliesPort, period: str, day: date, item_type: str, sort: str, filters: dict[str, str]
) -> list[Tally]:
    """The chart's items (those whose votes in the window weigh anything), in chart order."""
    first, last = charts.window(period, day)
    filters = {k: v for k, v in filters.items() if v} if item_type == "song" else {}
    return charts.rank(charts.counted(await store.window_tallies(item_type, first, last, filters)), sort)


def daily_chart(day_tallies: list[Tally]) -> list[Tally]:
    """A day's daily chart as the snapshots freeze it (sort=score, no filters)."""
    return charts.rank(charts.counted(day_tallies), "score")


async def daily_ranks(store: WindowTalliesPort, item_type: str, day: date) -> dict[str, int]:
    """Each item's rank on the day's daily chart (sort=score, no filters)."""
    ranking = await ranked(store, "daily", day, item_type, "score", {})
    return {t.item_id: n for n, t in enumerate(ranking, start=1)}


@dataclass(frozen=True)
class Entry:
    """One chart row, before it becomes a ChartEntry proto."""

    rank: int
    item_type: str
    item_id: str
    title: str
    artist: str
    up_votes: int
    down_votes: int
    score: int
    trending_score: float
    weighted_score: float
    previous_rank: int
    movement: str
    peak_rank: int
    days_on_chart: int


def entry(
    rank: int,
    item_type: str,
    item_id: str,
    item: Item | None,
    votes: tuple[int, int],
    weighted_score: float,
    trending_score: float,
    previous: int | None,
    peak_and_days: tuple[int, int],
) -> Entry:
    """One ChartEntry's fields, for trending and period charts alike: the raw
    counts, and the score with each vote at its agent's chart weight."""
    up, down = votes
    title, artist = title_and_artist(item)
    return Entry(
        rank=rank,
        item_type=item_type,
        item_id=item_id,
        title=title,
        artist=artist,
        up_votes=up,
        down_votes=down,
        score=up - down,
        trending_score=trending_score,
        weighted_score=round(weighted_score, 6),
        previous_rank=previous or 0,
        movement=charts.movement(rank, previous),
        peak_rank=peak_and_days[0],
        days_on_chart=peak_and_days[1],
    )
