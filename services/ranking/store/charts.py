"""Chart data in PostgreSQL: per-window sums of the daily tallies (raw and
weighted), and the daily snapshots (frozen charts) behind movement, peaks
and history."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ranking.charts import NO_WEIGHT, HistoryPoint, Tally
from services.ranking.store.catalog import TABLES
from services.ranking.store.frozen_tops import FrozenTops
from services.ranking.store.live_charts import LiveCharts
from services.ranking.tables import chart_snapshots, daily_tallies


class ChartStore(LiveCharts, FrozenTops):
    """Window sums of the daily tallies (charts of past dates not frozen
    yet, and filtered ones), the daily snapshots, the live windows of today's
    charts (LiveCharts) and the frozen tops of past dates' (FrozenTops)."""

    def __init__(self, engine: AsyncEngine) -> None:
        # Reads run in autocommit: no BEGIN/ROLLBACK round trips around a
        # single SELECT (writes use engine.begin() and real transactions).
        super().__init__(engine)

    async def window_tallies(
        self, item_type: str, first: date | None, last: date, filters: dict[str, str]
    ) -> list[Tally]:
        """Per-item votes cast in [first, last], raw and weighted (items with votes only)."""
        table = TABLES[item_type]
        t = daily_tallies.c
        query = (
            select(
                t.item_id,
                func.sum(t.up_votes).label("up"),
                func.sum(t.down_votes).label("down"),
                func.sum(t.weighted_up).label("weighted_up"),
                func.sum(t.weighted_down).label("weighted_down"),
            )
            .join(table, table.c.id == t.item_id)
            .where(t.item_type == item_type, t.day <= last)
            .group_by(t.item_id)
            .having(func.sum(t.up_votes) + func.sum(t.down_votes) > 0)
        )
        if first is not None:
            query = query.where(t.day >= first)
        for name, value in filters.items():
            if value:
                query = query.where(table.c[name] == value)
        async with self.reads.connect() as conn:
            return [_tally(row) for row in await conn.execute(query)]

    async def day_tallies(self, item_type: str, days: list[date]) -> dict[date, list[Tally]]:
        """Each day's per-item votes (items with votes only), in one query."""
        table = TABLES[item_type]
        t = daily_tallies.c
        query = (
            select(
                t.day,
                t.item_id,
                t.up_votes.label("up"),
                t.down_votes.label("down"),
                t.weighted_up,
                t.weighted_down,
            )
            .join(table, table.c.id == t.item_id)
            .where(t.item_type == item_type, t.day.in_(days), t.up_votes + t.down_votes > 0)
        )
        found: dict[date, list[Tally]] = {}
        async with self.reads.connect() as conn:
            for row in await conn.execute(query):
                found.setdefault(row.day, []).append(_tally(row))
        return found

    async def snapshot_stats(self, item_type: str, ids: list[str], until: date) -> dict[str, tuple[int, int]]:
        """(best rank, days on chart) from the daily snapshots up to `until`:
        for each item, the running figures of its latest frozen day up to
        it (one index probe per item, however many days it was on)."""
        if not ids:
            return {}
        async with self.reads.connect() as conn:
            rows = await conn.execute(_LATEST_STATS, {"t": item_type, "ids": sorted(set(ids)), "until": until})
            return {row[0]: (int(row[1]), int(row[2])) for row in rows}

    async def snapshotted_days(self, item_type: str) -> set[date]:
        async with self.reads.connect() as conn:
            rows = await conn.execute(
                select(chart_snapshots.c.day).where(chart_snapshots.c.item_type == item_type).distinct()
            )
            return {row[0] for row in rows}

    async def tally_days(self, item_type: str, before: date) -> set[date]:
        """Days before `before` with at least one counted vote (a day whose
        votes were all retracted, or weigh nothing, has an empty chart:
        nothing to freeze)."""
        t = daily_tallies.c
        async with self.reads.connect() as conn:
            rows = await conn.execute(
                select(t.day)
                .where(t.item_type == item_type, t.day < before)
                .group_by(t.day)
                .having(func.sum(t.weighted_up + t.weighted_down) > NO_WEIGHT)
            )
            return {row[0] for row in rows}

    async def save_snapshots(self, item_type: str, ranked_days: dict[date, list[Tally]]) -> None:
        """Replaces each day's frozen chart with its ranking (rank 1 first),
        and the running peak and days on chart of each item it changes from
        the first of those days on, in one transaction."""
        if not ranked_days:
            return
        rows = [
            {
                "day": day,
                "item_type": item_type,
                "item_id": t.item_id,
                "rank": n,
                "score": t.score,
                "up_votes": t.up,
                "down_votes": t.down,
                "peak_rank": n,
                "days_on_chart": 1,
            }
            for day, ranked in ranked_days.items()
            for n, t in enumerate(ranked, start=1)
        ]
        async with self.engine.begin() as conn:
            gone = await conn.execute(
                delete(chart_snapshots)
                .where(chart_snapshots.c.item_type == item_type, chart_snapshots.c.day.in_(list(ranked_days)))
                .returning(chart_snapshots.c.item_id)
            )
            changed: set[str] = {row[0] for row in gone} | {str(row["item_id"]) for row in rows}
            if rows:
                await conn.execute(insert(chart_snapshots), rows)
            if changed:
                await conn.execute(_RUNNING_STATS, {"t": item_type, "ids": sorted(changed), "first": min(ranked_days)})

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


_LATEST_STATS = text(
    """
    SELECT i.id, latest.peak_rank, latest.days_on_chart
    FROM unnest(CAST(:ids AS text[])) AS i(id)
    JOIN LATERAL (
        SELECT peak_rank, days_on_chart FROM ranking.chart_snapshots s
        WHERE s.item_type = :t AND s.item_id = i.id AND s.day <= :until
        ORDER BY s.day DESC LIMIT 1
    ) latest ON true
    """
)
# The running peak and days on chart of the items `ids` on their frozen days
# from `first` on, continuing from each item's last frozen day before it.
_RUNNING_STATS = text(
    """
    WITH base AS (
        SELECT i.id, b.peak_rank, b.days_on_chart
        FROM unnest(CAST(:ids AS text[])) AS i(id)
        LEFT JOIN LATERAL (
            SELECT peak_rank, days_on_chart FROM ranking.chart_snapshots p
            WHERE p.item_type = :t AND p.item_id = i.id AND p.day < :first
            ORDER BY p.day DESC LIMIT 1
        ) b ON true
    ), running AS (
        SELECT r.day, r.item_id,
            least(coalesce(base.peak_rank, r.rank), min(r.rank) OVER w) AS peak_rank,
            coalesce(base.days_on_chart, 0) + count(*) OVER w AS days_on_chart
        FROM ranking.chart_snapshots r JOIN base ON base.id = r.item_id
        WHERE r.item_type = :t AND r.day >= :first
        WINDOW w AS (PARTITION BY r.item_id ORDER BY r.day)
    )
    UPDATE ranking.chart_snapshots s SET peak_rank = running.peak_rank, days_on_chart = running.days_on_chart
    FROM running
    WHERE s.item_type = :t AND s.item_id = running.item_id AND s.day = running.day
        AND (s.peak_rank, s.days_on_chart) IS DISTINCT FROM (running.peak_rank, running.days_on_chart)
    """
)


def _tally(row: Any) -> Tally:
    return Tally(row.item_id, int(row.up), int(row.down), float(row.weighted_up), float(row.weighted_down))
