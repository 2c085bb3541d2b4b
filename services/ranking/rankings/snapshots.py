"""The daily snapshot job: finished days' charts frozen for movement, peaks and history."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from services.common import validation
from services.ranking.rankings.chart_rows import ranked
from services.ranking.rankings.ports import SnapshotsPort


class Snapshots:
    def __init__(self, chart_store: SnapshotsPort, clock: Callable[[], datetime] | None = None) -> None:
        self.chart_store = chart_store
        self.clock = clock or (lambda: datetime.now(UTC))

    async def snapshot_finished_days(self) -> int:
        """Freezes each finished UTC day's daily chart (sort=score, no filters).
        Yesterday is redone on every pass, so late events still land in it."""
        today = self.clock().date()
        written = 0
        for item_type in validation.ITEM_TYPES:
            tallied = await self.chart_store.tally_days(item_type, today)
            missing = tallied - await self.chart_store.snapshotted_days(item_type)
            for day in sorted(missing | {today - timedelta(days=1)}):
                ranking = await ranked(self.chart_store, "daily", day, item_type, "score", {})
                await self.chart_store.save_snapshot(item_type, day, ranking)
                written += 1
        return written
