"""The live chart windows in PostgreSQL (ranking.chart_totals): each item's
votes in the windows of the period charts ending on the anchor day
(ranking.chart_anchor, today once rolled over) and in the windows one period
earlier, so a chart of today is the first rows of an index and a rank is a
count along one.

- Vote batches and re-weighs write the daily tallies and append the same
  per-(item, day) changes to ranking.chart_deltas, in one statement
  (ADD_TALLIES): an unindexed heap insert per row, in the batch's
  transaction (so a change is in both or in neither).
- The fold (a background job, every AIMUSICSTORE_CHART_FOLD_INTERVAL_S)
  takes the pending changes out (DELETE ... RETURNING) and adds them,
  summed per item, to every window whose days hold their day, in one
  statement: a window row is updated once per fold however many batches
  changed it. The windows are behind the tallies by the changes not folded
  yet: at most one interval plus two folds (a change that just missed a
  fold waits for the next one to end).
- The roll-over to a new day (a background job, every second, and any read
  that finds the anchor behind today) locks chart_deltas against appends
  and folds (SHARE ROW EXCLUSIVE: the transactions appending finish first,
  new ones wait), folds what is pending at the old day, then moves each
  window by the days entering and leaving it, a day's tallies per window.
  With no append able to commit meanwhile, the tallies it reads are the
  windows' tallies exactly: a change is counted once, by the fold before the
  move or by a fold after it, whatever day it is for.
- Deleted items leave with their rows (CatalogStore.delete_item); the fold
  skips changes of items no longer in the catalog.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.ranking.charts import Tally
from services.ranking.tables import chart_anchor, chart_deltas, chart_totals, daily_tallies

# Each live window by the days back from the anchor: (first, last) days back,
# first None = from the beginning. "<period>:previous" is the window
# movement compares with (services/ranking/charts.py, previous_date).
WINDOWS: dict[str, tuple[int | None, int]] = {
    "daily": (0, 0),
    "weekly": (6, 0),
    "monthly": (29, 0),
    "all_time": (None, 0),
    "daily:previous": (1, 1),
    "weekly:previous": (13, 7),
    "monthly:previous": (59, 30),
    "all_time:previous": (None, 1),
}
_WINDOW_VALUES = "(VALUES {}) AS w(period, first_back, last_back)".format(
    ", ".join(
        f"('{name}', {'NULL::int' if first is None else first}, {last})" for name, (first, last) in WINDOWS.items()
    )
)
_TOTALS_SET = """
    up_votes = c.up_votes + EXCLUDED.up_votes, down_votes = c.down_votes + EXCLUDED.down_votes,
    weighted_up = c.weighted_up + EXCLUDED.weighted_up, weighted_down = c.weighted_down + EXCLUDED.weighted_down
"""
# A batch's changes of daily tallies, into the tallies and appended to the
# pending changes of the live windows, in one statement.
ADD_TALLIES = text(
    """
    WITH b AS (
        SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb))
            AS b(item_type text, item_id text, day date, up int, down int, wup float8, wdown float8)
    ), tallied AS (
        INSERT INTO ranking.daily_tallies AS t
            (item_type, item_id, day, up_votes, down_votes, weighted_up, weighted_down)
        SELECT item_type, item_id, day, up, down, wup, wdown FROM b
        ON CONFLICT (item_type, item_id, day)
        DO UPDATE SET up_votes = t.up_votes + EXCLUDED.up_votes, down_votes = t.down_votes + EXCLUDED.down_votes,
            weighted_up = t.weighted_up + EXCLUDED.weighted_up,
            weighted_down = t.weighted_down + EXCLUDED.weighted_down
    )
    INSERT INTO ranking.chart_deltas (item_type, item_id, day, up_votes, down_votes, weighted_up, weighted_down)
    SELECT item_type, item_id, day, up, down, wup, wdown FROM b
    """
)
# The pending changes taken out and added to every live window holding their
# day (the anchor's windows), summed per item and window: one row update
# each. Changes of days before the anchor (a late vote, a re-weigh, a
# repair) also mark those days for the freezer of past charts
# (frozen_tops.py). The marking CTE runs after the insert (PostgreSQL runs
# unreferenced data-modifying CTEs last): locks go chart_deltas,
# chart_totals, chart_tops_state. Items deleted since are skipped. A fold that waited for a roll-over
# finds the rows it saw taken by it (skipped as deleted), and the changes
# committed since are for the new day.
FOLD = text(
    f"""
    WITH d AS (
        DELETE FROM ranking.chart_deltas
        RETURNING item_type, item_id, day, up_votes, down_votes, weighted_up, weighted_down
    ), marked AS (
        UPDATE ranking.chart_tops_state s SET pending_from = least(s.pending_from, m.day)
        FROM (
            SELECT d.item_type, min(d.day) AS day FROM d CROSS JOIN ranking.chart_anchor a
            WHERE d.day < a.day GROUP BY d.item_type
        ) m
        WHERE s.item_type = m.item_type
    )
    INSERT INTO ranking.chart_totals AS c
        (period, item_type, item_id, genre, platform, up_votes, down_votes, weighted_up, weighted_down)
    SELECT w.period, d.item_type, d.item_id, coalesce(s.genre, ''), coalesce(s.platform, ''),
        sum(d.up_votes), sum(d.down_votes), sum(d.weighted_up), sum(d.weighted_down)
    FROM d CROSS JOIN (SELECT day AS anchor FROM ranking.chart_anchor) a CROSS JOIN {_WINDOW_VALUES}
    LEFT JOIN ranking.songs s ON d.item_type = 'song' AND s.id = d.item_id
    LEFT JOIN ranking.tools o ON d.item_type = 'tool' AND o.id = d.item_id
    WHERE (s.id IS NOT NULL OR o.id IS NOT NULL)
        AND d.day <= a.anchor - w.last_back AND (w.first_back IS NULL OR d.day >= a.anchor - w.first_back)
    GROUP BY w.period, d.item_type, d.item_id, s.genre, s.platform
    HAVING sum(d.up_votes) <> 0 OR sum(d.down_votes) <> 0 OR sum(d.weighted_up) <> 0 OR sum(d.weighted_down) <> 0
    ORDER BY w.period, d.item_type, d.item_id
    ON CONFLICT (period, item_type, item_id) DO UPDATE SET {_TOTALS_SET}
    """
)
# The fold's estimate multiplies the pending rows by the windows and the
# catalog joins, far past jit_above_cost: compiling it took 690 ms of a
# 900 ms fold of 1,200 rows (EXPLAIN ANALYZE at 1 M votes); it runs in 180.
_NO_JIT = text("SET LOCAL jit = off")
# Held by the roll-over and the rebuild: conflicts with the ROW EXCLUSIVE
# lock every append and fold takes, and with itself.
_HOLD_DELTAS = text("LOCK TABLE ranking.chart_deltas IN SHARE ROW EXCLUSIVE MODE")
# One window moved: the tallies of the days entering it added, of the days
# leaving it taken away (items still in the catalog).
_SHIFT_WINDOW = text(
    f"""
    INSERT INTO ranking.chart_totals AS c
        (period, item_type, item_id, genre, platform, up_votes, down_votes, weighted_up, weighted_down)
    SELECT :period, t.item_type, t.item_id, coalesce(s.genre, ''), coalesce(s.platform, ''),
        sum(t.sign * t.up_votes), sum(t.sign * t.down_votes),
        sum(t.sign * t.weighted_up), sum(t.sign * t.weighted_down)
    FROM (
        SELECT item_type, item_id, up_votes, down_votes, weighted_up, weighted_down, 1 AS sign
        FROM ranking.daily_tallies WHERE day BETWEEN :in_first AND :in_last
        UNION ALL
        SELECT item_type, item_id, up_votes, down_votes, weighted_up, weighted_down, -1
        FROM ranking.daily_tallies WHERE day BETWEEN :out_first AND :out_last
    ) t
    LEFT JOIN ranking.songs s ON t.item_type = 'song' AND s.id = t.item_id
    LEFT JOIN ranking.tools o ON t.item_type = 'tool' AND o.id = t.item_id
    WHERE s.id IS NOT NULL OR o.id IS NOT NULL
    GROUP BY t.item_type, t.item_id, s.genre, s.platform
    ORDER BY t.item_type, t.item_id
    ON CONFLICT (period, item_type, item_id) DO UPDATE SET {_TOTALS_SET}
    RETURNING c.item_type, c.item_id, c.up_votes, c.down_votes
    """
)
_DROP_EMPTY = text(
    """
    DELETE FROM ranking.chart_totals c
    USING jsonb_to_recordset(CAST(:rows AS jsonb)) AS b(item_type text, item_id text)
    WHERE c.period = :period AND (c.item_type, c.item_id) = (b.item_type, b.item_id)
        AND c.up_votes = 0 AND c.down_votes = 0
    """
)
# One window built whole from the tallies (a rebuild).
_BUILD_WINDOW = text(
    """
    INSERT INTO ranking.chart_totals
        (period, item_type, item_id, genre, platform, up_votes, down_votes, weighted_up, weighted_down)
    SELECT :period, t.item_type, t.item_id, coalesce(s.genre, ''), coalesce(s.platform, ''),
        sum(t.up_votes), sum(t.down_votes), sum(t.weighted_up), sum(t.weighted_down)
    FROM ranking.daily_tallies t
    LEFT JOIN ranking.songs s ON t.item_type = 'song' AND s.id = t.item_id
    LEFT JOIN ranking.tools o ON t.item_type = 'tool' AND o.id = t.item_id
    WHERE (s.id IS NOT NULL OR o.id IS NOT NULL) AND t.day BETWEEN :first AND :last
    GROUP BY t.item_type, t.item_id, s.genre, s.platform
    HAVING sum(t.up_votes) + sum(t.down_votes) > 0
    """
)
# The earliest day of the pending changes, per item type, marked for the
# freezer of past charts (all of them: the rebuild may move the anchor).
_MARK_PENDING_DAYS = text(
    """
    UPDATE ranking.chart_tops_state s SET pending_from = least(s.pending_from, m.day)
    FROM (SELECT item_type, min(day) AS day FROM ranking.chart_deltas GROUP BY item_type) m
    WHERE s.item_type = m.item_type
    """
)
# A date before any vote, for an empty range.
_NEVER = date(1, 1, 1)


def shifted_days(window: str, old: date, new: date) -> tuple[tuple[date, date], tuple[date, date]]:
    """The days entering and leaving a window when its anchor moves from
    `old` to `new` (later), each as an inclusive range (empty: first > last)."""
    first_back, last_back = WINDOWS[window]
    old_last, new_last = old - timedelta(days=last_back), new - timedelta(days=last_back)
    if first_back is None:
        return (old_last + timedelta(days=1), new_last), (date.max, _NEVER)
    old_first, new_first = old - timedelta(days=first_back), new - timedelta(days=first_back)
    entering = (max(old_last + timedelta(days=1), new_first), new_last)
    leaving = (old_first, min(old_last, new_first - timedelta(days=1)))
    return entering, leaving


_SORTS = ("score", "best", "controversial")
_FILTERS = ("genre", "platform")


def _scope(alias: str, filters: Iterable[str]) -> str:
    conditions = [f"{alias}.period = :period", f"{alias}.item_type = :item_type"]
    return " AND ".join(conditions + [f"{alias}.{name} = :{name}" for name in filters])


@functools.cache
def _top_query(sort: str, filters: tuple[str, ...]) -> Any:
    """A window's first rows in a sort's order: the sort's index, from the start."""
    assert sort in _SORTS and set(filters) <= set(_FILTERS)
    return text(
        f"""
        SELECT c.item_id, c.up_votes, c.down_votes, c.weighted_up, c.weighted_down FROM ranking.chart_totals c
        WHERE {_scope("c", filters)} AND c.{sort}_key IS NOT NULL
        ORDER BY c.{sort}_key DESC, c.{sort}_tie DESC, c.item_id LIMIT :limit
        """
    )


@functools.cache
def _ranks_query(sort: str, filters: tuple[str, ...]) -> Any:
    """Items by primary key (one probe each), each with 1 + the items before
    it in the sort's order, counted along the sort's index in three ranges
    (greater key; equal key, greater tie; equal both, smaller id)."""
    assert sort in _SORTS and set(filters) <= set(_FILTERS)
    key, tie = f"{sort}_key", f"{sort}_tie"
    before = [
        f"o.{key} > x.{key}",
        f"o.{key} = x.{key} AND o.{tie} > x.{tie}",
        f"o.{key} = x.{key} AND o.{tie} = x.{tie} AND o.item_id < x.item_id",
    ]
    counts = " + ".join(
        f"(SELECT count(*) FROM ranking.chart_totals o WHERE {_scope('o', filters)} AND {condition})"
        for condition in before
    )
    return text(
        f"""
        SELECT x.item_id, x.up_votes, x.down_votes, x.weighted_up, x.weighted_down, x.{key} AS key,
            1 + {counts} AS rank
        FROM unnest(CAST(:ids AS text[])) AS i(id)
        JOIN ranking.chart_totals x ON {_scope("x", filters)} AND x.item_id = i.id
        """
    )


def _params(period: str, item_type: str, filters: dict[str, str]) -> tuple[tuple[str, ...], dict[str, Any]]:
    used = tuple(sorted(name for name, value in filters.items() if value))
    return used, {"period": period, "item_type": item_type} | {name: filters[name] for name in used}


class LiveCharts:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.reads = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def live_day(self) -> date | None:
        async with self.reads.connect() as conn:
            return (await conn.execute(select(chart_anchor.c.day))).scalar_one_or_none()

    async def fold_live_windows(self) -> int:
        """Adds the pending changes of the daily tallies to the live windows
        (the fold job); returns the window rows changed."""
        async with self.engine.begin() as conn:
            await conn.execute(_NO_JIT)
            return (await conn.execute(FOLD)).rowcount

    async def roll_live_windows(self, today: date) -> date | None:
        """Moves every live window to end on `today` (never back); returns
        the anchor day after. One transaction, appends and folds held off."""
        anchor = await self.live_day()
        if anchor is None or anchor >= today:
            return anchor
        async with self.engine.begin() as conn:
            await conn.execute(_HOLD_DELTAS)
            anchor = (await conn.execute(select(chart_anchor.c.day).with_for_update())).scalar_one_or_none()
            if anchor is None or anchor >= today:
                return anchor
            # What is pending belongs to the windows as they are: folded at
            # the old day, so the move below reads tallies the windows hold.
            await conn.execute(_NO_JIT)
            await conn.execute(FOLD)
            for window in WINDOWS:
                await self._shift(conn, window, anchor, today)
            await conn.execute(chart_anchor.update().values(day=today))
        return today

    async def rebuild_live_windows(self, day: date) -> None:
        """Builds every live window anew from the daily tallies, ending on
        `day`, in one transaction (the migration's backfill; a repair if the
        windows ever drift from the tallies). Sums every tally: an
        operator's tool, never on a read."""
        async with self.engine.begin() as conn:
            await conn.execute(_HOLD_DELTAS)
            await conn.execute(select(chart_anchor.c.day).with_for_update())
            # The pending changes are in the tallies summed below; the past
            # days they change are marked for the freezer as a fold would.
            await conn.execute(_MARK_PENDING_DAYS)
            await conn.execute(chart_deltas.delete())
            await conn.execute(chart_totals.delete())
            for window, (first_back, last_back) in WINDOWS.items():
                first = _NEVER if first_back is None else day - timedelta(days=first_back)
                params = {"period": window, "first": first, "last": day - timedelta(days=last_back)}
                await conn.execute(_BUILD_WINDOW, params)
            await conn.execute(chart_anchor.update().values(day=day))

    async def _shift(self, conn: AsyncConnection, window: str, old: date, new: date) -> None:
        (in_first, in_last), (out_first, out_last) = shifted_days(window, old, new)
        params = {
            "period": window,
            "in_first": in_first,
            "in_last": in_last,
            "out_first": out_first,
            "out_last": out_last,
        }
        changed = (await conn.execute(_SHIFT_WINDOW, params)).all()
        empty = [{"item_type": r.item_type, "item_id": r.item_id} for r in changed if not (r.up_votes or r.down_votes)]
        if empty:
            await conn.execute(_DROP_EMPTY, {"period": window, "rows": json.dumps(empty)})

    async def live_top(
        self, period: str, item_type: str, sort: str, filters: dict[str, str], limit: int
    ) -> list[Tally]:
        """The first `limit` items of a live window in the sort's order (an
        index scan; items whose votes weigh nothing are not in it)."""
        used, params = _params(period, item_type, filters)
        async with self.reads.connect() as conn:
            rows = await conn.execute(_top_query(sort, used), params | {"limit": limit})
            return [_tally(row) for row in rows]

    async def live_ranks(
        self, period: str, item_type: str, ids: Iterable[str], sort: str, filters: dict[str, str]
    ) -> dict[str, tuple[int, Tally]]:
        """Each item's rank in a live window (sort and filters as a chart's)
        and its votes there, for those of `ids` on it: 1 + the items before
        it, counted along the sort's index (no window is ranked whole)."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        used, params = _params(period, item_type, filters)
        async with self.reads.connect() as conn:
            rows = await conn.execute(_ranks_query(sort, used), params | {"ids": wanted})
            # An item whose votes weigh nothing (no key) is off the chart.
            return {row.item_id: (int(row.rank), _tally(row)) for row in rows if row.key is not None}

    async def weighted_scores(self, item_type: str, ids: list[str]) -> dict[str, float]:
        """All-time weighted score of each item among `ids` that has votes:
        its all_time window, the changes not folded into it yet, and any
        tally of a day after it (a roll-over not done yet). One statement,
        one snapshot: a fold moves changes from the pending ones to the
        window at once."""
        if not ids:
            return {}
        c, d, t = chart_totals.c, chart_deltas.c, daily_tallies.c
        anchor = select(chart_anchor.c.day).scalar_subquery()
        in_window = select(c.item_id, (c.weighted_up - c.weighted_down).label("w")).where(
            c.period == "all_time", c.item_type == item_type, c.item_id.in_(ids)
        )
        pending = select(d.item_id, (d.weighted_up - d.weighted_down).label("w")).where(
            d.item_type == item_type, d.item_id.in_(ids), d.day <= anchor
        )
        after = select(t.item_id, (t.weighted_up - t.weighted_down).label("w")).where(
            t.item_type == item_type, t.item_id.in_(ids), t.day > anchor
        )
        both = in_window.union_all(pending, after).subquery()
        query = select(both.c.item_id, func.sum(both.c.w)).group_by(both.c.item_id)
        async with self.reads.connect() as conn:
            return {row[0]: float(row[1]) for row in await conn.execute(query)}


def _tally(row: Any) -> Tally:
    return Tally(row.item_id, int(row.up_votes), int(row.down_votes), float(row.weighted_up), float(row.weighted_down))
