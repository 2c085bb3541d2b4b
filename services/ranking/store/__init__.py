"""All SQL and Redis access of the ranking service, one module per concern:

- catalog.py: songs and tools rows (create, read, list, delete) and the
  markers of deleted ids;
- item_cache.py: the Redis copy of items read on the vote path, and its counts;
- projection.py: vote events into counters, daily tallies (raw and weighted)
  and the projection of live votes (the consumer's hot path); re-weighing an
  agent's past votes;
- vote_weights.py: the voters' trending and chart weights, as published;
- trending_sets.py: the trending sorted sets, their epoch and their rebuild;
- charts.py: window tallies (charts of past dates), daily snapshots with
  running peaks, and history;
- live_charts.py: the live chart windows today's charts are read from,
  folded from the changes the tallies' writers append and rolled over each
  day, and the all-time weighted scores trending shows.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ranking.store.catalog import CatalogStore
from services.ranking.store.charts import ChartStore
from services.ranking.store.item_cache import ItemCache
from services.ranking.store.projection import VoteProjection
from services.ranking.store.trending_sets import TrendingSets
from services.ranking.store.vote_weights import VoteWeights

__all__ = [
    "CatalogStore",
    "ChartStore",
    "ItemCache",
    "RankingStores",
    "TrendingSets",
    "VoteProjection",
    "VoteWeights",
]


@dataclass(frozen=True)
class RankingStores:
    catalog: CatalogStore
    item_cache: ItemCache
    projection: VoteProjection
    trending_sets: TrendingSets
    charts: ChartStore

    @classmethod
    def open(
        cls,
        engine: AsyncEngine,
        redis: Redis,
        redis_at_most_once: Redis | None = None,
        redis_hot_path: Redis | None = None,
        *,
        probation_weight: float,
    ) -> RankingStores:
        """The stores over one engine and Redis: `redis_at_most_once` for the
        trending ZINCRBYs (never re-sent), `redis_hot_path` for item reads on
        the vote path (short timeout, circuit breaker); both default to `redis`.
        `probation_weight`: the weights of an agent with none published."""
        item_cache = ItemCache(redis, redis_hot_path)
        trending_sets = TrendingSets(engine, redis, redis_at_most_once)
        return cls(
            catalog=CatalogStore(engine, redis, item_cache),
            item_cache=item_cache,
            projection=VoteProjection(engine, VoteWeights(redis, probation_weight), item_cache, trending_sets),
            trending_sets=trending_sets,
            charts=ChartStore(engine),
        )
