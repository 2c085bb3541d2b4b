"""Period charts (daily, weekly, monthly, all time) with movement, new
entries, peaks and days on chart; the rules are in services/ranking/charts.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from services.common import validation
from services.common.errors import InvalidArgument
from services.ranking import charts
from services.ranking.charts import Tally
from services.ranking.rankings.chart_rows import Entry, daily_ranks, entry, ranked
from services.ranking.rankings.live_windows import LiveWindows
from services.ranking.rankings.ports import ChartStatsPort, ItemsPort, TrendScoresPort
from services.ranking.rankings.short_cache import ShortCache
from services.ranking.rankings.trend_scale import TrendScale

CHART_DEFAULT, CHART_MAX = 50, 100
# Rows read past the limit from a live window's index, ranked again here by
# the rules themselves: the index orders by the same keys computed in SQL,
# which round to 9 decimals through PostgreSQL's numeric (15 significant
# digits) where Python rounds the double; a few rows of slack absorb any
# disagreement at the boundary.
RERANKED = 10
EARLIEST_DAY = date(2000, 1, 1)


@dataclass(frozen=True)
class TopChart:
    period: str
    date: str
    item_type: str
    entries: list[Entry]
    updated_at: datetime


def parse_day(value: str, today: date) -> date:
    if not value:
        return today
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise InvalidArgument("date", f"must be a date as YYYY-MM-DD (got {value[:40]!r})") from None
    # Bounded so a chart's window and the period before it stay dates (year 1
    # overflowed into a 500); no vote can be older than the service.
    if day < EARLIEST_DAY:
        raise InvalidArgument("date", f"must be on or after {EARLIEST_DAY.isoformat()} (got {value[:40]!r})")
    # No chart of a day that has not begun (UTC): it would be empty, and
    # every future date another answer to compute and cache.
    if day > today:
        raise InvalidArgument("date", f"must not be after today, {today.isoformat()} UTC (got {value[:40]!r})")
    return day


class Charts:
    def __init__(
        self,
        scale: TrendScale,
        trending_sets: TrendScoresPort,
        items: ItemsPort,
        chart_store: ChartStatsPort,
        clock: Callable[[], datetime] | None = None,
        live: LiveWindows | None = None,
        on_demand_concurrency: int = 2,
    ) -> None:
        self.scale = scale
        self.trending_sets = trending_sets
        self.items = items
        self.chart_store = chart_store
        self.clock = clock or (lambda: datetime.now(UTC))
        self.live = live or LiveWindows(chart_store, self.clock)
        # Live charts are cached briefly: a burst of identical reads costs one query.
        self._charts: ShortCache[tuple[list[Entry], datetime]] = ShortCache(maxsize=2048, ttl=1.0)
        # Charts summed from the tallies (filtered past dates, days not frozen
        # yet) cost what their window holds: a few at a time, the rest wait,
        # so a flood of distinct ones cannot take every database connection.
        self._on_demand = asyncio.Semaphore(on_demand_concurrency)

    async def top_chart(
        self, period: str, day_text: str, item_type: str, limit: int, sort: str, genre: str, platform: str
    ) -> TopChart:
        period = validation.choice("period", period, charts.PERIODS)
        item_type = validation.choice("item_type", item_type, validation.ITEM_TYPES, default="song")
        sort = validation.choice("sort", sort, charts.SORTS, default="score")
        limit = validation.count("limit", limit, default=CHART_DEFAULT, maximum=CHART_MAX)
        if item_type == "tool" and (genre or platform):
            raise InvalidArgument("genre" if genre else "platform", "filters songs only; leave it out for tools")
        genre, platform = (validation.text(n, v, max_len=100) for n, v in (("genre", genre), ("platform", platform)))
        now = self.clock()
        day = parse_day(day_text, now.date())
        key = (period, day, item_type, limit, sort, genre, platform)

        async def compute() -> tuple[list[Entry], datetime]:
            filters = {"genre": genre, "platform": platform}
            return await self._chart(period, day, item_type, limit, sort, filters, now), now

        entries, updated_at = await self._charts.get(key, compute)
        return TopChart(
            period=period, date=day.isoformat(), item_type=item_type, entries=entries, updated_at=updated_at
        )

    async def _chart(
        self, period: str, day: date, item_type: str, limit: int, sort: str, filters: dict[str, str], now: datetime
    ) -> list[Entry]:
        store = self.chart_store
        filters = {k: v for k, v in filters.items() if v} if item_type == "song" else {}
        if day == now.date() and await self.live.ready(day):
            # Today's chart: the top of its live window and, for movement and
            # peaks, ranks counted in the windows before it and in today's
            # daily window, for the entries shown only.
            candidates = await store.live_top(period, item_type, sort, filters, limit + RERANKED)
            ranking = charts.rank(charts.counted(candidates), sort)[:limit]
            ids = [t.item_id for t in ranking]
            previous = _ranks(await store.live_ranks(f"{period}:previous", item_type, ids, sort, filters))
            live = _ranks(await store.live_ranks("daily", item_type, ids, "score", {}))
        elif not filters and (frozen := await store.frozen_top(item_type, period, sort, day, limit)) is not None:
            # A finished day: its frozen chart, with each row's rank one
            # period earlier (the freezer job keeps them).
            ranking = [tally for tally, _ in frozen]
            previous = {tally.item_id: rank for tally, rank in frozen if rank is not None}
            ids = [t.item_id for t in ranking]
            live = {}
        else:
            # A filtered chart of a past day, or a day not frozen yet: the
            # window's tallies summed (1, 7 or 30 days, and the window
            # before; all_time every day up to it).
            async with self._on_demand:
                ranking = (await ranked(store, period, day, item_type, sort, filters))[:limit]
                previous_day = charts.previous_date(period, day)
                before = await ranked(store, period, previous_day, item_type, sort, filters)
            previous = {t.item_id: n for n, t in enumerate(before, 1)}
            ids = [t.item_id for t in ranking]
            live = await daily_ranks(store, item_type, day) if day >= now.date() else {}
        rows = await self.items.items_by_id(item_type, ids)
        stats = await store.snapshot_stats(item_type, ids, min(day, now.date() - timedelta(days=1)))
        trend_scores = await self._trend_scores(item_type, ids, now)
        entries = []
        for rank, tally in enumerate(ranking, start=1):
            peak, days = stats.get(tally.item_id, (0, 0))
            if tally.item_id in live:  # today counts as a day on the chart too
                peak = min(peak, live[tally.item_id]) if peak else live[tally.item_id]
                days += 1
            entries.append(
                entry(
                    rank,
                    item_type,
                    tally.item_id,
                    rows.get(tally.item_id),
                    (tally.up, tally.down),
                    tally.weighted_score,
                    trend_scores.get(tally.item_id, 0.0),
                    previous.get(tally.item_id),
                    (peak, days),
                )
            )
        return entries

    async def _trend_scores(self, item_type: str, ids: list[str], now: datetime) -> dict[str, float]:
        stored = await self.trending_sets.scores(item_type, ids)
        return {i: self.scale.unscale(s, now) for i, s in stored.items()}


def _ranks(found: dict[str, tuple[int, Tally]]) -> dict[str, int]:
    return {item_id: rank for item_id, (rank, _) in found.items()}
