"""Trending, period charts, history and daily snapshots: rules free of gRPC."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cachetools import TTLCache

from services.common import validation
from services.common.errors import InvalidArgument, NotFound
from services.common.singleflight import SingleFlight
from services.ranking import charts, trending
from services.ranking.charts import Tally
from services.ranking.store import RankingStore, TrendClock

log = logging.getLogger("rankings")

TRENDING_DEFAULT, TRENDING_MAX = 10, 50
CHART_DEFAULT, CHART_MAX = 50, 100
HISTORY_DEFAULT_DAYS, HISTORY_MAX_DAYS = 30, 365
COLLECTIONS = {"songs": "song", "tools": "tool", "song": "song", "tool": "tool"}


@dataclass
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
    previous_rank: int
    movement: str
    peak_rank: int
    days_on_chart: int


EARLIEST_DAY = date(2000, 1, 1)


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


class Rankings:
    def __init__(self, store: RankingStore, half_life_s: float, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.half_life_s = half_life_s
        self.clock = clock or (lambda: datetime.now(UTC))
        # Replaced by the epoch stored in Redis at the first rebuild (at start).
        self.epoch = self.clock().replace(hour=0, minute=0, second=0, microsecond=0)
        # Live charts are cached briefly: a burst of identical reads costs one query.
        self._charts: TTLCache[tuple, tuple[list[Entry], datetime]] = TTLCache(maxsize=2048, ttl=1.0)
        # Trending must reflect a vote within 2 s: half a second of reuse
        # (plus the gateway's 1 s edge cache) stays inside that.
        self._trending: TTLCache[tuple, dict[str, Any]] = TTLCache(maxsize=1024, ttl=0.5)
        # Today's daily ranks, shared by every history read (one ranking per
        # second at most, however many items are asked for), and the history
        # answers themselves: the edge does not cache history (one entry per
        # item would be unbounded there), so the service keeps a bounded set.
        self._today_ranks: TTLCache[tuple, dict[str, tuple[int, Tally]]] = TTLCache(maxsize=4, ttl=1.0)
        # Both within the charts' 2 s freshness bound together.
        self._histories: TTLCache[tuple, dict[str, Any]] = TTLCache(maxsize=4096, ttl=1.0)
        # A batch reads the voters' weights before it writes; re-weighing an
        # agent waits for that batch, so none of its votes keeps a stale weight.
        self._weights_lock = asyncio.Lock()
        self._flights = SingleFlight()

    async def _cached(self, cache: TTLCache, key: tuple, compute: Callable[[], Awaitable[Any]]) -> Any:
        """A brief cache with single flight: when an entry expires under load
        (the edge cache's entry expires for every client at once), one request
        computes it and the others wait for that answer instead of each
        querying the database."""
        if (hit := cache.get(key)) is not None:
            return hit

        async def compute_and_keep() -> Any:
            cache[key] = value = await compute()
            return value

        return await self._flights.do(key, compute_and_keep)

    def trend(self) -> TrendClock:
        return TrendClock(half_life_s=self.half_life_s, epoch=self.epoch, now=self.clock)

    # -- applying votes ----------------------------------------------------------

    async def apply_vote_events(self, events: list) -> None:
        async with self._weights_lock:
            await self.store.apply_events(events, self.trend())

    async def agent_changed(self, agent_id: str) -> None:
        """The agent's weight may have changed (flagged, cleared): re-weigh its votes."""
        async with self._weights_lock:
            await self.store.reweigh_agent(agent_id, self.trend())

    async def rebuild_trending(self) -> int:
        """Recomputes the trending sets from the vote projection; moves the
        epoch first when the scale would grow too large (or none is stored)."""
        async with self._weights_lock:  # no batch may move trending while the sets are replaced
            return await self._rebuild_trending()

    async def _rebuild_trending(self) -> int:
        now = self.clock()
        stored = await self.store.trending_epoch()
        if stored is not None:
            self.epoch = stored
        if stored is None or trending.needs_new_epoch(now, self.epoch, self.half_life_s):
            self.epoch = now.replace(minute=0, second=0, microsecond=0)
            await self.store.set_trending_epoch(self.epoch)
            log.info("trending epoch set to %s", self.epoch.isoformat())
        return await self.store.rebuild_trending(self.trend())

    # -- trending ----------------------------------------------------------------

    async def trending(self, limit: int, genre: str, platform: str, category: str) -> dict[str, Any]:
        limit = validation.count("limit", limit, default=TRENDING_DEFAULT, maximum=TRENDING_MAX)
        genre, platform, category = (
            validation.text(name, value, max_len=100)
            for name, value in (("genre", genre), ("platform", platform), ("category", category))
        )
        key = (limit, genre, platform, category)

        async def compute() -> dict[str, Any]:
            now = self.clock()
            song_keys = [
                trending.key_for_filter("song", n, v) for n, v in (("genre", genre), ("platform", platform)) if v
            ]
            tool_keys = [trending.key_for_filter("tool", "category", category)] if category else []
            return {
                "songs": await self._trending_entries("song", song_keys, limit, now),
                "tools": await self._trending_entries("tool", tool_keys, limit, now),
                "updated_at": now,
            }

        return await self._cached(self._trending, ("trending", *key), compute)

    async def _trending_entries(self, item_type: str, filter_keys: list[str], limit: int, now: datetime) -> list[Entry]:
        if len(filter_keys) > 1:
            members = await self.store.trending_intersection(filter_keys, limit)
        else:
            members = await self.store.trending_ids(filter_keys[0] if filter_keys else f"trending:{item_type}", limit)
        rows = await self.store.items_by_id(item_type, [m for m, _ in members])
        members = [(m, s) for m, s in members if m in rows]
        yesterday = now.date() - timedelta(days=1)
        stats = await self.store.snapshot_stats(item_type, [m for m, _ in members], yesterday)
        previous = await self._daily_ranks(item_type, yesterday)
        return [
            _entry(
                rank,
                item_type,
                rows[item_id],
                (rows[item_id]["up_votes"], rows[item_id]["down_votes"]),
                round(trending.unscale(stored, now, self.epoch, self.half_life_s), 6),
                previous.get(item_id),
                stats.get(item_id, (0, 0)),
            )
            for rank, (item_id, stored) in enumerate(members, start=1)
        ]

    # -- period charts -------------------------------------------------------------

    async def top_chart(
        self, period: str, day_text: str, item_type: str, limit: int, sort: str, genre: str, platform: str
    ) -> dict[str, Any]:
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

        entries, updated_at = await self._cached(self._charts, key, compute)
        return {
            "period": period,
            "date": day.isoformat(),
            "item_type": item_type,
            "entries": entries,
            "updated_at": updated_at,
        }

    async def _ranked(self, period: str, day: date, item_type: str, sort: str, filters: dict[str, str]) -> list[Tally]:
        first, last = charts.window(period, day)
        filters = {k: v for k, v in filters.items() if v} if item_type == "song" else {}
        return charts.rank(await self.store.window_tallies(item_type, first, last, filters), sort)

    async def _daily_ranks(self, item_type: str, day: date) -> dict[str, int]:
        ranked = await self._ranked("daily", day, item_type, "score", {})
        return {t.item_id: n for n, t in enumerate(ranked, start=1)}

    async def _chart(
        self, period: str, day: date, item_type: str, limit: int, sort: str, filters: dict[str, str], now: datetime
    ) -> list[Entry]:
        ranked = (await self._ranked(period, day, item_type, sort, filters))[:limit]
        previous_day = charts.previous_date(period, day)
        previous = {
            t.item_id: n for n, t in enumerate(await self._ranked(period, previous_day, item_type, sort, filters), 1)
        }
        ids = [t.item_id for t in ranked]
        rows = await self.store.items_by_id(item_type, ids)
        stats = await self.store.snapshot_stats(item_type, ids, min(day, now.date() - timedelta(days=1)))
        live = await self._daily_ranks(item_type, day) if day >= now.date() else {}
        trend_scores = await self._trend_scores(item_type, ids, now)
        entries = []
        for rank, tally in enumerate(ranked, start=1):
            peak, days = stats.get(tally.item_id, (0, 0))
            if tally.item_id in live:  # today counts as a day on the chart too
                peak = min(peak, live[tally.item_id]) if peak else live[tally.item_id]
                days += 1
            row = rows.get(tally.item_id, {"id": tally.item_id})
            scores = trend_scores.get(tally.item_id, 0.0)
            entries.append(
                _entry(rank, item_type, row, (tally.up, tally.down), scores, previous.get(tally.item_id), (peak, days))
            )
        return entries

    async def _trend_scores(self, item_type: str, ids: list[str], now: datetime) -> dict[str, float]:
        stored = await self.store.trending_scores(item_type, ids)
        return {i: round(trending.unscale(s, now, self.epoch, self.half_life_s), 6) for i, s in stored.items()}

    # -- history and snapshots -------------------------------------------------------

    async def history(self, collection: str, item_id: str, days: int) -> dict[str, Any]:
        item_type = COLLECTIONS.get(collection)
        if item_type is None:
            raise InvalidArgument("collection", "must be songs or tools")
        item_id = validation.identifier(f"{item_type}_id", item_id)
        days = validation.count("days", days, default=HISTORY_DEFAULT_DAYS, maximum=HISTORY_MAX_DAYS)
        today = self.clock().date()

        # Checked on every read (one key lookup): a deleted item is 404 at once.
        if not await self.store.items_by_id(item_type, [item_id]):
            raise NotFound(f"{item_type} {item_id!r} does not exist")

        async def compute() -> dict[str, Any]:
            first = today - timedelta(days=days - 1)
            points = [
                {
                    "date": p["day"],
                    "rank": p["rank"],
                    "score": p["score"],
                    "up_votes": p["up_votes"],
                    "down_votes": p["down_votes"],
                }
                for p in await self.store.history(item_type, item_id, first, today - timedelta(days=1))
            ]
            ranks = await self._cached(
                self._today_ranks, (item_type, today), lambda: self._ranks_today(item_type, today)
            )
            if item_id in ranks:
                rank, tally = ranks[item_id]
                points.append(
                    {"date": today, "rank": rank, "score": tally.score, "up_votes": tally.up, "down_votes": tally.down}
                )
            return {"item_type": item_type, "item_id": item_id, "points": points}

        return await self._cached(self._histories, (item_type, item_id, days, today), compute)

    async def _ranks_today(self, item_type: str, today: date) -> dict[str, tuple[int, Tally]]:
        ranked = await self._ranked("daily", today, item_type, "score", {})
        return {tally.item_id: (rank, tally) for rank, tally in enumerate(ranked, start=1)}

    async def snapshot_finished_days(self) -> int:
        """Freezes each finished UTC day's daily chart (sort=score, no filters).
        Yesterday is redone on every pass, so late events still land in it."""
        today = self.clock().date()
        written = 0
        for item_type in validation.ITEM_TYPES:
            missing = await self.store.tally_days(item_type, today) - await self.store.snapshotted_days(item_type)
            for day in sorted(missing | {today - timedelta(days=1)}):
                await self.store.save_snapshot(item_type, day, await self._ranked("daily", day, item_type, "score", {}))
                written += 1
        return written


def _entry(
    rank: int,
    item_type: str,
    row: dict[str, Any],
    votes: tuple[int, int],
    trending_score: float,
    previous: int | None,
    peak_and_days: tuple[int, int],
) -> Entry:
    """One ChartEntry's fields, for trending and period charts alike."""
    up, down = votes
    return Entry(
        rank=rank,
        item_type=item_type,
        item_id=row["id"],
        title=row.get("title") or row.get("name", ""),
        artist=row.get("artist", ""),
        up_votes=up,
        down_votes=down,
        score=up - down,
        trending_score=trending_score,
        previous_rank=previous or 0,
        movement=charts.movement(rank, previous),
        peak_rank=peak_and_days[0],
        days_on_chart=peak_and_days[1],
    )
