"""Trending, period charts, history and daily snapshots: rules free of gRPC."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol, TypeVar

from cachetools import TTLCache

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.common import validation
from services.common.errors import InvalidArgument, NotFound
from services.common.singleflight import SingleFlight
from services.ranking import charts, trending
from services.ranking.charts import HistoryPoint, Tally
from services.ranking.items import Item, title_and_artist
from services.ranking.trending import TrendClock

CacheKey = tuple[Any, ...]
V = TypeVar("V")

log = logging.getLogger("rankings")

TRENDING_DEFAULT, TRENDING_MAX = 10, 50
CHART_DEFAULT, CHART_MAX = 50, 100
HISTORY_DEFAULT_DAYS, HISTORY_MAX_DAYS = 30, 365
COLLECTIONS = {"songs": "song", "tools": "tool", "song": "song", "tool": "tool"}


# -- ports: what Rankings needs of the stores (services/ranking/store/) ------------------


class ProjectionPort(Protocol):
    async def apply_events(self, events: Iterable[VoteEvent], trend: TrendClock) -> int: ...

    async def reweigh_agent(self, agent_id: str, trend: TrendClock) -> int: ...


class TrendingSetsPort(Protocol):
    async def top(self, key: str, limit: int) -> list[tuple[str, float]]: ...

    async def top_in_all(self, keys: list[str], limit: int) -> list[tuple[str, float]]: ...

    async def scores(self, item_type: str, ids: list[str]) -> dict[str, float]: ...

    async def epoch(self) -> datetime | None: ...

    async def set_epoch(self, epoch: datetime) -> None: ...

    async def rebuild(self, trend: TrendClock) -> int: ...


class ItemsPort(Protocol):
    async def items_by_id(self, item_type: str, ids: list[str]) -> Mapping[str, Item]: ...


class ChartStorePort(Protocol):
    async def window_tallies(
        self, item_type: str, first: date | None, last: date, filters: dict[str, str]
    ) -> list[Tally]: ...

    async def snapshot_stats(self, item_type: str, ids: list[str], until: date) -> dict[str, tuple[int, int]]: ...

    async def snapshotted_days(self, item_type: str) -> set[date]: ...

    async def tally_days(self, item_type: str, before: date) -> set[date]: ...

    async def save_snapshot(self, item_type: str, day: date, ranked: list[Tally]) -> None: ...

    async def history(self, item_type: str, item_id: str, first: date, last: date) -> list[HistoryPoint]: ...


# -- answers -------------------------------------------------------------------------


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
    previous_rank: int
    movement: str
    peak_rank: int
    days_on_chart: int


@dataclass(frozen=True)
class TrendingLists:
    songs: list[Entry]
    tools: list[Entry]
    updated_at: datetime


@dataclass(frozen=True)
class TopChart:
    period: str
    date: str
    item_type: str
    entries: list[Entry]
    updated_at: datetime


@dataclass(frozen=True)
class ItemHistory:
    item_type: str
    item_id: str
    points: list[HistoryPoint]


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
    def __init__(
        self,
        projection: ProjectionPort,
        trending_sets: TrendingSetsPort,
        items: ItemsPort,
        chart_store: ChartStorePort,
        half_life_s: float,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.projection = projection
        self.trending_sets = trending_sets
        self.items = items
        self.chart_store = chart_store
        self.half_life_s = half_life_s
        self.clock = clock or (lambda: datetime.now(UTC))
        # Replaced by the epoch stored in Redis at the first rebuild (at start).
        self.epoch = self.clock().replace(hour=0, minute=0, second=0, microsecond=0)
        # Live charts are cached briefly: a burst of identical reads costs one query.
        self._charts: TTLCache[CacheKey, tuple[list[Entry], datetime]] = TTLCache(maxsize=2048, ttl=1.0)
        # Trending must reflect a vote within 2 s: half a second of reuse
        # (plus the gateway's 1 s edge cache) stays inside that.
        self._trending: TTLCache[CacheKey, TrendingLists] = TTLCache(maxsize=1024, ttl=0.5)
        # Today's daily ranks, shared by every history read (one ranking per
        # second at most, however many items are asked for), and the history
        # answers themselves: the edge does not cache history (one entry per
        # item would be unbounded there), so the service keeps a bounded set.
        self._today_ranks: TTLCache[CacheKey, dict[str, tuple[int, Tally]]] = TTLCache(maxsize=4, ttl=1.0)
        # Both within the charts' 2 s freshness bound together.
        self._histories: TTLCache[CacheKey, ItemHistory] = TTLCache(maxsize=4096, ttl=1.0)
        # A batch reads the voters' weights before it writes; re-weighing an
        # agent waits for that batch, so none of its votes keeps a stale weight.
        self._weights_lock = asyncio.Lock()
        self._flights = SingleFlight()

    async def _cached(self, cache: TTLCache[CacheKey, V], key: CacheKey, compute: Callable[[], Awaitable[V]]) -> V:
        """A brief cache with single flight: when an entry expires under load
        (the edge cache's entry expires for every client at once), one request
        computes it and the others wait for that answer instead of each
        querying the database."""
        if (hit := cache.get(key)) is not None:
            return hit

        async def compute_and_keep() -> V:
            cache[key] = value = await compute()
            return value

        return await self._flights.do(key, compute_and_keep)

    def trend(self) -> TrendClock:
        return TrendClock(half_life_s=self.half_life_s, epoch=self.epoch, now=self.clock)

    # -- applying votes ----------------------------------------------------------

    async def apply_vote_events(self, events: list[VoteEvent]) -> None:
        async with self._weights_lock:
            await self.projection.apply_events(events, self.trend())

    async def agent_changed(self, agent_id: str) -> None:
        """The agent's weight may have changed (flagged, cleared): re-weigh its votes."""
        async with self._weights_lock:
            await self.projection.reweigh_agent(agent_id, self.trend())

    async def rebuild_trending(self) -> int:
        """Recomputes the trending sets from the vote projection; moves the
        epoch first when the scale would grow too large (or none is stored)."""
        async with self._weights_lock:  # no batch may move trending while the sets are replaced
            return await self._rebuild_trending()

    async def _rebuild_trending(self) -> int:
        now = self.clock()
        stored = await self.trending_sets.epoch()
        if stored is not None:
            self.epoch = stored
        if stored is None or trending.needs_new_epoch(now, self.epoch, self.half_life_s):
            self.epoch = now.replace(minute=0, second=0, microsecond=0)
            await self.trending_sets.set_epoch(self.epoch)
            log.info("trending epoch set to %s", self.epoch.isoformat())
        return await self.trending_sets.rebuild(self.trend())

    # -- trending ----------------------------------------------------------------

    async def trending(self, limit: int, genre: str, platform: str, category: str) -> TrendingLists:
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
                songs=await self._trending_entries("song", song_keys, limit, now),
                tools=await self._trending_entries("tool", tool_keys, limit, now),
                updated_at=now,
            )

        return await self._cached(self._trending, ("trending", *key), compute)

    async def _trending_entries(self, item_type: str, filter_keys: list[str], limit: int, now: datetime) -> list[Entry]:
        if len(filter_keys) > 1:
            members = await self.trending_sets.top_in_all(filter_keys, limit)
        else:
            members = await self.trending_sets.top(filter_keys[0] if filter_keys else f"trending:{item_type}", limit)
        rows = await self.items.items_by_id(item_type, [m for m, _ in members])
        members = [(m, s) for m, s in members if m in rows]
        yesterday = now.date() - timedelta(days=1)
        stats = await self.chart_store.snapshot_stats(item_type, [m for m, _ in members], yesterday)
        previous = await self._daily_ranks(item_type, yesterday)
        return [
            _entry(
                rank,
                item_type,
                item_id,
                rows[item_id],
                (rows[item_id].up_votes, rows[item_id].down_votes),
                round(trending.unscale(stored, now, self.epoch, self.half_life_s), 6),
                previous.get(item_id),
                stats.get(item_id, (0, 0)),
            )
            for rank, (item_id, stored) in enumerate(members, start=1)
        ]

    # -- period charts -------------------------------------------------------------

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

        entries, updated_at = await self._cached(self._charts, key, compute)
        return TopChart(
            period=period, date=day.isoformat(), item_type=item_type, entries=entries, updated_at=updated_at
        )

    async def _ranked(self, period: str, day: date, item_type: str, sort: str, filters: dict[str, str]) -> list[Tally]:
        first, last = charts.window(period, day)
        filters = {k: v for k, v in filters.items() if v} if item_type == "song" else {}
        return charts.rank(await self.chart_store.window_tallies(item_type, first, last, filters), sort)

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
        rows = await self.items.items_by_id(item_type, ids)
        stats = await self.chart_store.snapshot_stats(item_type, ids, min(day, now.date() - timedelta(days=1)))
        live = await self._daily_ranks(item_type, day) if day >= now.date() else {}
        trend_scores = await self._trend_scores(item_type, ids, now)
        entries = []
        for rank, tally in enumerate(ranked, start=1):
            peak, days = stats.get(tally.item_id, (0, 0))
            if tally.item_id in live:  # today counts as a day on the chart too
                peak = min(peak, live[tally.item_id]) if peak else live[tally.item_id]
                days += 1
            entries.append(
                _entry(
                    rank,
                    item_type,
                    tally.item_id,
                    rows.get(tally.item_id),
                    (tally.up, tally.down),
                    trend_scores.get(tally.item_id, 0.0),
                    previous.get(tally.item_id),
                    (peak, days),
                )
            )
        return entries

    async def _trend_scores(self, item_type: str, ids: list[str], now: datetime) -> dict[str, float]:
        stored = await self.trending_sets.scores(item_type, ids)
        return {i: round(trending.unscale(s, now, self.epoch, self.half_life_s), 6) for i, s in stored.items()}

    # -- history and snapshots -------------------------------------------------------

    async def history(self, collection: str, item_id: str, days: int) -> ItemHistory:
        item_type = COLLECTIONS.get(collection)
        if item_type is None:
            raise InvalidArgument("collection", "must be songs or tools")
        item_id = validation.identifier(f"{item_type}_id", item_id)
        days = validation.count("days", days, default=HISTORY_DEFAULT_DAYS, maximum=HISTORY_MAX_DAYS)
        today = self.clock().date()

        # Checked on every read (one key lookup): a deleted item is 404 at once.
        if not await self.items.items_by_id(item_type, [item_id]):
            raise NotFound(f"{item_type} {item_id!r} does not exist")

        async def compute() -> ItemHistory:
            first = today - timedelta(days=days - 1)
            points = list(await self.chart_store.history(item_type, item_id, first, today - timedelta(days=1)))
            ranks = await self._cached(
                self._today_ranks, (item_type, today), lambda: self._ranks_today(item_type, today)
            )
            if item_id in ranks:
                rank, tally = ranks[item_id]
                points.append(HistoryPoint(today, rank, tally.score, tally.up, tally.down))
            return ItemHistory(item_type=item_type, item_id=item_id, points=points)

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
            tallied = await self.chart_store.tally_days(item_type, today)
            missing = tallied - await self.chart_store.snapshotted_days(item_type)
            for day in sorted(missing | {today - timedelta(days=1)}):
                ranked = await self._ranked("daily", day, item_type, "score", {})
                await self.chart_store.save_snapshot(item_type, day, ranked)
                written += 1
        return written


def _entry(
    rank: int,
    item_type: str,
    item_id: str,
    item: Item | None,
    votes: tuple[int, int],
    trending_score: float,
    previous: int | None,
    peak_and_days: tuple[int, int],
) -> Entry:
    """One ChartEntry's fields, for trending and period charts alike."""
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
        previous_rank=previous or 0,
        movement=charts.movement(rank, previous),
        peak_rank=peak_and_days[0],
        days_on_chart=peak_and_days[1],
    )
