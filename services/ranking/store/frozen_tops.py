"""The frozen chart tops in PostgreSQL (ranking.chart_tops and its state):
what the freezer reads to compute a run of finished days, its writes, and
the read of a past date's chart.

A pass first claims the marked days (pending_from, set by the fold, a
deleted item or a rebuild) into dirty_from, once the sweep before is done;
then it reads one snapshot (REPEATABLE READ): the state, the live windows'
day, each item's all-time votes before the first day (the all_time live
window, plus the changes not folded into it, less the tallies from the first
day on: a cost that follows the items and the days recomputed, never every
tally), and the days' tallies. A change folded after the claim marks
pending_from again, for a later sweep; one committed before the snapshot is
in it too (frozen twice, harmlessly).

Lock order: the fold takes chart_deltas, chart_totals, then the state row;
a deleted item the same and chart_tops before the state; a pass writes
chart_tops, then the state row, last (never held while it computes).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.ranking.charts import Tally
from services.ranking.frozen_tops import LOOKBACK_DAYS, FreezeInput, FrozenRow
from services.ranking.tables import chart_anchor, chart_tops_state

# Each catalog item's votes on every day before :first: its all_time live
# window, the pending changes of days it holds, less the tallies from :first
# to the windows' day.
_BEFORE_FIRST = """
    SELECT b.item_id, sum(b.up) AS up_votes, sum(b.down) AS down_votes,
        sum(b.wup) AS weighted_up, sum(b.wdown) AS weighted_down
    FROM (
        SELECT item_id, up_votes AS up, down_votes AS down, weighted_up AS wup, weighted_down AS wdown
        FROM ranking.chart_totals WHERE period = 'all_time' AND item_type = :t
        UNION ALL
        SELECT d.item_id, d.up_votes, d.down_votes, d.weighted_up, d.weighted_down
        FROM ranking.chart_deltas d WHERE d.item_type = :t AND d.day <= :anchor
        UNION ALL
        SELECT item_id, -up_votes, -down_votes, -weighted_up, -weighted_down
        FROM ranking.daily_tallies WHERE item_type = :t AND day BETWEEN :first AND :anchor
    ) b
    JOIN ranking.{table} c ON c.id = b.item_id
    GROUP BY b.item_id
    HAVING sum(b.up) + sum(b.down) > 0
"""
_DAY_TALLIES = """
    SELECT t.day, t.item_id, t.up_votes, t.down_votes, t.weighted_up, t.weighted_down
    FROM ranking.daily_tallies t JOIN ranking.{table} c ON c.id = t.item_id
    WHERE t.item_type = :t AND t.day BETWEEN :first AND :last AND t.up_votes + t.down_votes > 0
"""
_FIRST_TALLY_DAY = text("SELECT min(day) FROM ranking.daily_tallies WHERE item_type = :t")
_TABLES = {"song": "songs", "tool": "tools"}

_SAVE_ROWS = text(
    """
    INSERT INTO ranking.chart_tops (item_type, period, sort, day, rank, item_id,
        up_votes, down_votes, weighted_up, weighted_down, previous_rank)
    SELECT :t, period, sort, day, rank, item_id, up, down, wup, wdown, previous
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(period text, sort text, day date, rank int,
        item_id text, up int, down int, wup float8, wdown float8, previous int)
    """
)
_CLEAR_DAYS = text("DELETE FROM ranking.chart_tops WHERE item_type = :t AND day BETWEEN :first AND :last")
# The marks since the last sweep become the next sweep, once the current
# one is done (marks arriving every pass must not hold it on the same days).
_CLAIM = text(
    """
    UPDATE ranking.chart_tops_state SET dirty_from = pending_from, pending_from = NULL
    WHERE item_type = :t AND dirty_from IS NULL AND pending_from IS NOT NULL
    """
)
# The days written are frozen. The sweep goes on after them, unless they
# reached the last frozen day (what follows is new days, frozen in order).
_FINISH = text(
    """
    UPDATE ranking.chart_tops_state SET
        frozen_from = least(coalesce(frozen_from, :first), :first),
        frozen_through = greatest(coalesce(frozen_through, :last), :last),
        dirty_from = CASE
            WHEN dirty_from IS NULL OR :last >= frozen_through THEN NULL
            ELSE greatest(dirty_from, CAST(:last AS date) + 1)
        END
    WHERE item_type = :t
    """
)
_TOP = text(
    """
    SELECT s.frozen_from <= :day AND :day <= s.frozen_through AS frozen,
        t.item_id, t.up_votes, t.down_votes, t.weighted_up, t.weighted_down, t.previous_rank
    FROM ranking.chart_tops_state s
    LEFT JOIN ranking.chart_tops t ON t.item_type = s.item_type AND t.period = :period AND t.sort = :sort
        AND t.day = :day AND t.rank <= :limit
    WHERE s.item_type = :t
    ORDER BY t.rank
    """
)


# The advisory lock a freezer pass holds (any 64-bit number of our own).
_FREEZER_LOCK = 0x6169_6D75_7369_6301


class FrozenTops:
    """Part of ChartStore (services/ranking/store/charts.py), which sets these."""

    engine: AsyncEngine
    reads: AsyncEngine

    @contextlib.asynccontextmanager
    async def freezing(self) -> AsyncIterator[bool]:
        """Whether this replica's pass runs: one replica at a time computes
        (the others' passes skip; their rows would be the same), through a
        session advisory lock held on a connection of its own for the pass
        (released with the connection if the process dies)."""
        async with self.engine.connect() as conn:
            got = bool(await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": _FREEZER_LOCK}))
            await conn.commit()
            try:
                yield got
            finally:
                if got:
                    await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _FREEZER_LOCK})
                    await conn.commit()

    async def freeze_input(self, item_type: str, max_days: int) -> FreezeInput | None:
        """The next run of finished days to freeze (at most `max_days`, the
        earliest marked first), read in one snapshot; None when every
        finished day is frozen and clean."""
        async with self.engine.begin() as conn:
            await conn.execute(_CLAIM, {"t": item_type})
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                state = (
                    await conn.execute(select(chart_tops_state).where(chart_tops_state.c.item_type == item_type))
                ).one_or_none()
                anchor = (await conn.execute(select(chart_anchor.c.day))).scalar_one_or_none()
                if state is None or anchor is None:
                    return None
                first = await _first_day(conn, item_type, state)
                if first is None or first >= anchor:
                    return None
                last = min(anchor - timedelta(days=1), first + timedelta(days=max_days - 1))
                table = _TABLES[item_type]
                params = {"t": item_type, "first": first, "anchor": anchor}
                before = [_tally(r) for r in await conn.execute(text(_BEFORE_FIRST.format(table=table)), params)]
                days: dict[date, list[Tally]] = {}
                lookback = {"t": item_type, "first": first - timedelta(days=LOOKBACK_DAYS), "last": last}
                for row in await conn.execute(text(_DAY_TALLIES.format(table=table)), lookback):
                    days.setdefault(row.day, []).append(_tally(row))
                return FreezeInput(item_type, first, last, before, days)

    async def save_tops(self, work: FreezeInput, frozen: Mapping[date, list[FrozenRow]]) -> None:
        """Replaces the run's days with their frozen rows and marks them
        frozen, in one transaction (the state row locked last)."""
        rows = [
            {
                "period": r.period,
                "sort": r.sort,
                "day": r.day.isoformat(),
                "rank": r.rank,
                "item_id": r.tally.item_id,
                "up": r.tally.up,
                "down": r.tally.down,
                "wup": r.tally.weighted_up,
                "wdown": r.tally.weighted_down,
                "previous": r.previous_rank,
            }
            for day_rows in frozen.values()
            for r in day_rows
        ]
        params = {"t": work.item_type, "first": work.first, "last": work.last}
        async with self.engine.begin() as conn:
            # One pass at a time (freezing(): the advisory lock), so no
            # other writer of these rows or of the sweep's progress.
            await conn.execute(_CLEAR_DAYS, params)
            if rows:
                await conn.execute(_SAVE_ROWS, {"t": work.item_type, "rows": json.dumps(rows)})
            await conn.execute(_FINISH, params)

    async def frozen_top(
        self, item_type: str, period: str, sort: str, day: date, limit: int
    ) -> list[tuple[Tally, int | None]] | None:
        """The first `limit` rows of a finished day's frozen chart (no
        filters), each with its rank one period earlier; None when the day
        is not frozen yet."""
        params = {"t": item_type, "period": period, "sort": sort, "day": day, "limit": limit}
        async with self.reads.connect() as conn:
            rows = (await conn.execute(_TOP, params)).all()
        if not rows or not rows[0].frozen:
            return None
        return [(_tally(row), row.previous_rank) for row in rows if row.item_id is not None]


async def _first_day(conn: AsyncConnection, item_type: str, state: Any) -> date | None:
    """Where the next run starts: the earliest marked day, or the day after
    the last frozen one, or (nothing frozen yet) the first tallied day."""
    candidates = [d for d in (state.dirty_from,) if d is not None]
    if state.frozen_through is not None:
        candidates.append(state.frozen_through + timedelta(days=1))
    else:
        first_tally = (await conn.execute(_FIRST_TALLY_DAY, {"t": item_type})).scalar_one_or_none()
        if first_tally is not None:
            candidates.append(first_tally)
    return min(candidates) if candidates else None


def _tally(row: Any) -> Tally:
    return Tally(row.item_id, int(row.up_votes), int(row.down_votes), float(row.weighted_up), float(row.weighted_down))
