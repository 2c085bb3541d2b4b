"""Chart data in PostgreSQL: per-window sums of the daily tallies, and the
daily snapshots (frozen charts) behind movement, peaks and history."""

from __future__ import annotations

from datetime import date

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ranking.charts import HistoryPoint, Tally
from services.ranking.store.catalog import TABLES
from services.ranking.tables import chart_snapshots, daily_tallies


class ChartStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # Reads run in autocommit: no BEGIN/ROLLBACK round trips around a
        # single SELECT (writes use engine.begin() and real transactions).
        self.reads = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def window_tallies(
        self, item_type: str, first: date | None, last: date, filters: dict[str, str]
    ) -> list[Tally]:
        """Per-item up/down of the votes cast in [first, last] (items with votes only)."""
        table = TABLES[item_type]
        query = (
            select(
                daily_tallies.c.item_id,
                func.sum(daily_tallies.c.up_votes).label("up"),
                func.sum(daily_tallies.c.down_votes).label("down"),
            )
            .join(table, table.c.id == daily_tallies.c.item_id)
            .where(daily_tallies.c.item_type == item_type, daily_tallies.c.day <= last)
            .group_by(daily_tallies.c.item_id)
            .having(func.sum(daily_tallies.c.up_votes) + func.sum(daily_tallies.c.down_votes) > 0)
        )
        if first is not None:
            query = query.where(daily_tallies.c.day >= first)
        for name, value in filters.items():
            if value:
                query = query.where(table.c[name] == value)
        async with self.reads.connect() as conn:
            return [Tally(row.item_id, int(row.up), int(row.down)) for row in await conn.execute(query)]

    async def snapshot_stats(self, item_type: str, ids: list[str], until: date) -> dict[str, tuple[int, int]]:
        """(best rank, days on chart) from the daily snapshots up to `until`."""
        if not ids:
            return {}
        query = (
            select(chart_snapshots.c.item_id, func.min(chart_snapshots.c.rank), func.count())
            .where(
                chart_snapshots.c.item_type == item_type,
                chart_snapshots.c.item_id.in_(ids),
                chart_snapshots.c.day <= until,
            )
            .group_by(chart_snapshots.c.item_id)
        )
        async with self.reads.connect() as conn:
            return {row[0]: (int(row[1]), int(row[2])) for row in await conn.execute(query)}

    async def snapshotted_days(self, item_type: str) -> set[date]:
        async with self.reads.connect() as conn:
            rows = await conn.execute(
                select(chart_snapshots.c.day).where(chart_snapshots.c.item_type == item_type).distinct()
            )
            return {row[0] for row in rows}

    async def tally_days(self, item_type: str, before: date) -> set[date]:
        """Days before `before` with at least one counted vote (a day whose
        votes were all retracted has an empty chart: nothing to freeze)."""
        async with self.reads.connect() as conn:
            rows = await conn.execute(
                select(daily_tallies.c.day)
                .where(daily_tallies.c.item_type == item_type, daily_tallies.c.day < before)
                .group_by(daily_tallies.c.day)
                .having(func.sum(daily_tallies.c.up_votes + daily_tallies.c.down_votes) > 0)
            )
            return {row[0] for row in rows}

    async def save_snapshot(self, item_type: str, day: date, ranked: list[Tally]) -> None:
        """Replaces the day's frozen chart with `ranked` (rank 1 first)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(chart_snapshots).where(chart_snapshots.c.item_type == item_type, chart_snapshots.c.day == day)
            )
            if ranked:
                await conn.execute(
                    insert(chart_snapshots),
                    [
                        {
                            "day": day,
                            "item_type": item_type,
                            "item_id": t.item_id,
                            "rank": n,
                            "score": t.score,
                            "up_votes": t.up,
                            "down_votes": t.down,
                        }
                        for n, t in enumerate(ranked, start=1)
                    ],
                )

    async def history(self, item_type: str, item_id: str, first: date, last: date) -> list[HistoryPoint]:
        """The item's frozen daily ranks in [first, last], oldest first."""
        s = chart_snapshots.c
        query = (
            select(s.day, s.rank, s.score, s.up_votes, s.down_votes)
            .where(s.item_type == item_type, s.item_id == item_id, s.day.between(first, last))
            .order_by(s.day)
        )
        async with self.reads.connect() as conn:
            return [HistoryPoint(*row) for row in await conn.execute(query)]
