"""Trending, period charts, history and daily snapshots: rules free of gRPC,
one class per responsibility (the formulas are in services/ranking/trending.py
and services/ranking/charts.py):

- trend_scale.py: `TrendScale`, the trending epoch and the writes that use
  it (vote batches, re-weighing an agent, the trending rebuild);
- trending_lists.py: `Trending`, the live trending lists;
- period_charts.py: `Charts`, period charts with movement, new entries and peaks;
- live_windows.py: `LiveWindows`, the day today's charts are read for, rolled over;
- history.py: `History`, an item's daily ranks, frozen days then today;
- snapshots.py: `Snapshots`, the job freezing each finished day's chart, and
  their re-freezing after an agent's votes are re-weighed;
- freezer.py: `Freezer`, the job keeping the frozen tops past dates' period
  charts are read from;
- chart_rows.py: window rankings and chart entries they share;
- short_cache.py: the brief answer caches with single flight;
- ports.py: what they need of the stores (services/ranking/store/).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Protocol

from services.ranking.rankings.freezer import Freezer
from services.ranking.rankings.history import History
from services.ranking.rankings.live_windows import LiveWindows
from services.ranking.rankings.period_charts import Charts
from services.ranking.rankings.ports import (
    ChartStatsPort,
    FreezerPort,
    HistoryPort,
    ItemsPort,
    LiveChartsPort,
    ProjectionPort,
    SnapshotsPort,
    TrendEpochPort,
    TrendingTopPort,
    TrendScoresPort,
    WeightedScoresPort,
)
from services.ranking.rankings.snapshots import Snapshots
from services.ranking.rankings.trend_scale import TrendScale
from services.ranking.rankings.trending_lists import Trending

log = logging.getLogger("rankings")

# Tries of a re-weigh after an agent's change, and the pause before the
# next one (times the attempt number).
REWEIGH_ATTEMPTS, REWEIGH_RETRY_S = 3, 0.25


class TrendingSetsPort(TrendEpochPort, TrendingTopPort, TrendScoresPort, Protocol):
    pass


class ChartStorePort(
    ChartStatsPort, HistoryPort, SnapshotsPort, WeightedScoresPort, LiveChartsPort, FreezerPort, Protocol
):
    pass


@dataclass(frozen=True)
class Rankings:
    """The ranking classes wired to one set of stores, one trend scale and one clock."""

    scale: TrendScale
    trending: Trending
    charts: Charts
    history: History
    snapshots: Snapshots
    live: LiveWindows
    freezer: Freezer

    async def agent_changed(self, agent_id: str) -> None:
        """An agent's weights may have changed (the reputation service
        announced it): its past votes are re-weighed in trending and the
        tallies (charts of past dates follow at once, today's at the next
        fold of the live windows), then the finished
        days they were cast on are frozen again (so history ranks follow).

        Both steps are idempotent, so a failure (a deadlock, PostgreSQL
        away) is retried; the days a first attempt re-weighed are kept for
        the re-freeze. Never raised: the announcement listener would drop
        its subscription, and the announcements sent meanwhile with it."""
        changed_days: set[tuple[str, date]] = set()
        for attempt in range(1, REWEIGH_ATTEMPTS + 1):
            try:
                await self.scale.agent_changed(agent_id, changed_days)
                await self.snapshots.refreeze(changed_days)
                return
            except Exception:
                if attempt == REWEIGH_ATTEMPTS:
                    log.exception("could not re-weigh the votes of agent %s", agent_id)
                    return
                await asyncio.sleep(REWEIGH_RETRY_S * attempt)

    @classmethod
    def over(
        cls,
        projection: ProjectionPort,
        trending_sets: TrendingSetsPort,
        items: ItemsPort,
        chart_store: ChartStorePort,
        half_life_s: float,
        clock: Callable[[], datetime] | None = None,
        freeze_days_per_pass: int = 31,
        on_demand_charts: int = 2,
    ) -> Rankings:
        clock = clock or (lambda: datetime.now(UTC))
        scale = TrendScale(projection, trending_sets, half_life_s, clock)
        live = LiveWindows(chart_store, clock)
        return cls(
            scale=scale,
            trending=Trending(scale, trending_sets, items, chart_store, clock, live),
            charts=Charts(scale, trending_sets, items, chart_store, clock, live, on_demand_charts),
            history=History(items, chart_store, clock, live),
            snapshots=Snapshots(chart_store, clock),
            live=live,
            freezer=Freezer(chart_store, freeze_days_per_pass),
        )
