"""An item's history: its place on each frozen daily chart, then today's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from services.common import validation
from services.common.errors import InvalidArgument, NotFound
from services.ranking.charts import HistoryPoint, Tally
from services.ranking.rankings.chart_rows import ranked
from services.ranking.rankings.live_windows import LiveWindows
from services.ranking.rankings.ports import HistoryPort, ItemsPort
from services.ranking.rankings.short_cache import ShortCache

HISTORY_DEFAULT_DAYS, HISTORY_MAX_DAYS = 30, 365
COLLECTIONS = {"songs": "song", "tools": "tool", "song": "song", "tool": "tool"}


@dataclass(frozen=True)
class ItemHistory:
    item_type: str
    item_id: str
    points: list[HistoryPoint]


class History:
    def __init__(
        self,
        items: ItemsPort,
        chart_store: HistoryPort,
        clock: Callable[[], datetime] | None = None,
        live: LiveWindows | None = None,
    ) -> None:
        self.items = items
        self.chart_store = chart_store
        self.clock = clock or (lambda: datetime.now(UTC))
        self.live = live or LiveWindows(chart_store, self.clock)
        # The history answers: the edge does not cache history (one entry
        # per item would be unbounded there), so the service keeps a bounded
        # set. Today's daily ranks, ranked whole, only while the live
        # windows are not rolled over to today yet (a second after midnight).
        self._today_ranks: ShortCache[dict[str, tuple[int, Tally]]] = ShortCache(maxsize=4, ttl=1.0)
        # Both within the charts' 2 s freshness bound together.
        self._histories: ShortCache[ItemHistory] = ShortCache(maxsize=4096, ttl=1.0)

    async def item_history(self, collection: str, item_id: str, days: int) -> ItemHistory:
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
            if await self.live.ready(today):
                # Today's rank: counted along the live daily window's index.
                ranks = await self.chart_store.live_ranks("daily", item_type, [item_id], "score", {})
            else:
                ranks = await self._today_ranks.get((item_type, today), lambda: self._ranks_today(item_type, today))
            if item_id in ranks:
                rank, tally = ranks[item_id]
                points.append(HistoryPoint(today, rank, tally.score, tally.up, tally.down))
            return ItemHistory(item_type=item_type, item_id=item_id, points=points)

        return await self._histories.get((item_type, item_id, days, today), compute)

    async def _ranks_today(self, item_type: str, today: date) -> dict[str, tuple[int, Tally]]:
        ranking = await ranked(self.chart_store, "daily", today, item_type, "score", {})
        return {tally.item_id: (rank, tally) for rank, tally in enumerate(ranking, start=1)}
