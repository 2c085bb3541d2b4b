"""The daily snapshot job: finished days' charts frozen for movement, peaks
and history; and their re-freezing when an agent's past votes are re-weighed."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta

from services.common import validation
from services.ranking.rankings.chart_rows import daily_chart
from services.ranking.rankings.ports import SnapshotsPort

# Days read and written per pair of statements: a re-weigh touching a year
# of days stays a few bounded statements, not two per day.
FREEZE_CHUNK_DAYS = 31


class Snapshots:
    def __init__(self, chart_store: SnapshotsPort, clock: Callable[[], datetime] | None = None) -> None:
        self.chart_store = chart_store
        self.clock = clock or (lambda: datetime.now(UTC))
        # The job and the re-freezing after a re-weigh write the same rows:
        # one at a time, so a chart read before a re-weigh is never saved
        # after the re-weigh's own.
        self._writing = asyncio.Lock()

    async def snapshot_finished_days(self) -> int:
        """Freezes each finished UTC day's daily chart (sort=score, no filters).
        Yesterday is redone on every pass, so late events still land in it."""
        today = self.clock().date()
        written = 0
        async with self._writing:
            for item_type in validation.ITEM_TYPES:
                tallied = await self.chart_store.tally_days(item_type, today)
                missing = tallied - await self.chart_store.snapshotted_days(item_type)
                written += await self._freeze(item_type, missing | {today - timedelta(days=1)})
        return written

    async def refreeze(self, days: Iterable[tuple[str, date]]) -> int:
        """Freezes again the finished days among `days` ((item type, day)
        whose tallies a re-weigh changed): history ranks, peaks and days on
        chart follow the agent's new weight. Today is live already."""
        today = self.clock().date()
        finished: dict[str, set[date]] = defaultdict(set)
        for item_type, day in days:
            if day < today:
                finished[item_type].add(day)
        written = 0
        async with self._writing:
            for item_type, item_days in sorted(finished.items()):
                written += await self._freeze(item_type, item_days)
        return written

    async def _freeze(self, item_type: str, days: set[date]) -> int:
        ordered = sorted(days)
        for start in range(0, len(ordered), FREEZE_CHUNK_DAYS):
            chunk = ordered[start : start + FREEZE_CHUNK_DAYS]
            tallies = await self.chart_store.day_tallies(item_type, chunk)
            await self.chart_store.save_snapshots(item_type, {day: daily_chart(tallies.get(day, [])) for day in chunk})
        return len(ordered)
