"""Trending, period charts, history and daily snapshots: rules free of gRPC,
one class per responsibility (the formulas are in services/ranking/trending.py
and services/ranking/charts.py):

- trend_scale.py: `TrendScale`, the trending epoch and the writes that use
  it (vote batches, re-weighing an agent, the trending rebuild);
- trending_lists.py: `Trending`, the live trending lists;
- period_charts.py: `Charts`, period charts with movement, new entries and peaks;
- history.py: `History`, an item's daily ranks, frozen days then today;
- snapshots.py: `Snapshots`, the job freezing each finished day's chart;
- chart_rows.py: window rankings and chart entries they share;
- short_cache.py: the brief answer caches with single flight;
- ports.py: what they need of the stores (services/ranking/store/).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from services.ranking.rankings.history import History
from services.ranking.rankings.period_charts import Charts
from services.ranking.rankings.ports import (
    ChartStatsPort,
    HistoryPort,
    ItemsPort,
    ProjectionPort,
    SnapshotsPort,
    TrendEpochPort,
    TrendingTopPort,
    TrendScoresPort,
)
from services.ranking.rankings.snapshots import Snapshots
from services.ranking.rankings.trend_scale import TrendScale
from services.ranking.rankings.trending_lists import Trending


class TrendingSetsPort(TrendEpochPort, TrendingTopPort, TrendScoresPort, Protocol):
    pass


class ChartStorePort(ChartStatsPort, HistoryPort, SnapshotsPort, Protocol):
    pass


@dataclass(frozen=True)
class Rankings:
    """The ranking classes wired to one set of stores, one trend scale and one clock."""

    scale: TrendScale
    trending: Trending
    charts: Charts
    history: History
    snapshots: Snapshots

    @classmethod
    def over(
        cls,
        projection: ProjectionPort,
        trending_sets: TrendingSetsPort,
        items: ItemsPort,
        chart_store: ChartStorePort,
        half_life_s: float,
        clock: Callable[[], datetime] | None = None,
    ) -> Rankings:
        clock = clock or (lambda: datetime.now(UTC))
        scale = TrendScale(projection, trending_sets, half_life_s, clock)
        return cls(
            scale=scale,
            trending=Trending(scale, trending_sets, items, chart_store, clock),
            charts=Charts(scale, trending_sets, items, chart_store, clock),
            history=History(items, chart_store, clock),
            snapshots=Snapshots(chart_store, clock),
        )
