"""The ranking classes wired to in-memory stores at a fixed clock, for the
tests of trending, charts, history, snapshots and the trend scale."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from services.ranking.rankings import Rankings
from services.ranking.rankings.chart_rows import Entry
from tests.unit.ranking.fakes import FakeCatalogStore, FakeChartStore, FakeProjection, FakeTrendingSets

NOW = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)
TODAY = NOW.date()
HALF_LIFE_S = 86_400.0


@dataclass
class World:
    catalog: FakeCatalogStore
    trending_sets: FakeTrendingSets
    charts: FakeChartStore
    projection: FakeProjection
    rankings: Rankings

    @classmethod
    def create(cls) -> World:
        catalog = FakeCatalogStore()
        trending_sets = FakeTrendingSets()
        chart_store = FakeChartStore(catalog)
        projection = FakeProjection()
        rankings = Rankings.over(
            projection, trending_sets, catalog, chart_store, half_life_s=HALF_LIFE_S, clock=lambda: NOW
        )
        return cls(catalog, trending_sets, chart_store, projection, rankings)


def ids(entries: list[Entry]) -> list[str]:
    return [e.item_id for e in entries]


def days_ago(n: int) -> date:
    return TODAY - timedelta(days=n)
