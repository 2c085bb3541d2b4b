"""The live trending lists: songs and tools by trending score, filtered."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from services.common import validation
from services.ranking import trending
from services.ranking.rankings.chart_rows import Entry, daily_ranks, entry
from services.ranking.rankings.live_windows import LiveWindows
from services.ranking.rankings.ports import ChartStatsPort, ItemsPort, TrendingTopPort, WeightedScoresPort
from services.ranking.rankings.short_cache import ShortCache
from services.ranking.rankings.trend_scale import TrendScale

TRENDING_DEFAULT, TRENDING_MAX = 10, 50


class TrendingChartsPort(ChartStatsPort, WeightedScoresPort, Protocol):
    pass


@dataclass(frozen=True)
class TrendingLists:
    songs: list[Entry]
    tools: list[Entry]
    updated_at: datetime


class Trending:
    """Reads the trending sorted sets; movement, peak and days on chart are
    against the daily charts up to yesterday; the votes shown are the item's
    all-time ones, raw and weighted."""

    def __init__(
        self,
        scale: TrendScale,
        trending_sets: TrendingTopPort,
        items: ItemsPort,
        chart_store: TrendingChartsPort,
        clock: Callable[[], datetime] | None = None,
        live: LiveWindows | None = None,
    ) -> None:
        self.scale = scale
        self.trending_sets = trending_sets
        self.items = items
        self.chart_store = chart_store
        self.clock = clock or (lambda: datetime.now(UTC))
        self.live = live or LiveWindows(chart_store, self.clock)
        # Trending must reflect a vote within 2 s: half a second of reuse
        # (plus the gateway's 1 s edge cache) stays inside that.
        self._lists: ShortCache[TrendingLists] = ShortCache(maxsize=1024, ttl=0.5)

    async def lists(self, limit: int, genre: str, platform: str, category: str) -> TrendingLists:
        limit = validation.count("limit", limit, default=TRENDING_DEFAULT, maximum=TRENDING_MAX)
        genre, platform, category = (
            validation.text(name, value, max_len=100)
            for name, value in (("genre", genre), ("platform", platform), ("category", category))
        )
        key = (limit, genre, platform, category)

        async def compute() -> TrendingLists:
            now = self.clock()
            song_keys = [
                trending.key_for_filter("song", n, v) for n, v in (("genre", genre), ("platform", platform)) if v
            ]
            tool_keys = [trending.key_for_filter("tool", "category", category)] if category else []
            return TrendingLists(
                songs=await self._entries("song", song_keys, limit, now),
                tools=await self._entries("tool", tool_keys, limit, now),
                updated_at=now,
            )

        return await self._lists.get(("trending", *key), compute)

    async def _entries(self, item_type: str, filter_keys: list[str], limit: int, now: datetime) -> list[Entry]:
        if len(filter_keys) > 1:
            members = await self.trending_sets.top_in_all(filter_keys, limit)
        else:
            members = await self.trending_sets.top(filter_keys[0] if filter_keys else f"trending:{item_type}", limit)
        rows = await self.items.items_by_id(item_type, [m for m, _ in members])
        members = [(m, s) for m, s in members if m in rows]
        ids = [m for m, _ in members]
        yesterday = now.date() - timedelta(days=1)
        stats = await self.chart_store.snapshot_stats(item_type, ids, yesterday)
        if await self.live.ready(now.date()):  # yesterday's ranks of these items, counted
            found = await self.chart_store.live_ranks("daily:previous", item_type, ids, "score", {})
            previous = {item_id: rank for item_id, (rank, _) in found.items()}
        else:
            previous = await daily_ranks(self.chart_store, item_type, yesterday)
        weighted = await self.chart_store.weighted_scores(item_type, ids)
        return [
            entry(
                rank,
                item_type,
                item_id,
                rows[item_id],
                (rows[item_id].up_votes, rows[item_id].down_votes),
                weighted.get(item_id, 0.0),
                self.scale.unscale(stored, now),
                previous.get(item_id),
                stats.get(item_id, (0, 0)),
            )
            for rank, (item_id, stored) in enumerate(members, start=1)
        ]
