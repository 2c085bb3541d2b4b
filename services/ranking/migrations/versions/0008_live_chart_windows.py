"""live chart windows: per-item totals of each period's window, running peaks

Revision ID: 0008
Revises: 0007
Create Date: 2027-01-20 10:00:00

Today's period charts are read from ranking.chart_totals (each item's votes
in the windows ending on ranking.chart_anchor's day, and in the windows one
period earlier), kept in step with the daily tallies by the consumer; peak
rank and days on chart from running figures on each frozen day. The changes
of the tallies reach the windows through ranking.chart_deltas (appended with
the tallies, folded in by a job). Both are
built here from the tallies and snapshots there are: the anchor is today
(UTC), and the service rolls it over from there. The windows are written
out here rather than imported, so this revision keeps building what it
built when the code moves on.
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# As services/ranking/store/live_charts.py WINDOWS: (first, last) days back from the anchor.
WINDOWS = {
    "daily": (0, 0),
    "weekly": (6, 0),
    "monthly": (29, 0),
    "all_time": (None, 0),
    "daily:previous": (1, 1),
    "weekly:previous": (13, 7),
    "monthly:previous": (59, 30),
    "all_time:previous": (None, 1),
}
# As services/ranking/tables.py, frozen here.
_COUNTED = "weighted_up + weighted_down > 1e-9"
_N = "(weighted_up + weighted_down)"
_P = f"(weighted_up / {_N})"
_Z = "CAST(1.959963984540054 AS float8)"
_ZZ = f"({_Z} * {_Z})"
# greatest(.., 0) under the root: the same double for any row's votes (the
# root's argument is never negative for them), but the key is computed for
# an upsert's proposed row too, which holds a change (a retracted probation
# up vote and a trusted down vote: negative up, positive down), not votes.
_WILSON = (
    f"(({_P} + {_ZZ} / (2 * {_N}) - {_Z} * sqrt(greatest(({_P} * (1 - {_P}) + {_ZZ} / (4 * {_N})) / {_N}, 0)))"
    f" / (1 + {_ZZ} / {_N}))"
)
_CONTROVERSY = (
    "CASE WHEN weighted_up <= 1e-9 OR weighted_down <= 1e-9 THEN 0"
    " WHEN weighted_up + weighted_down < 1"
    " THEN (weighted_up + weighted_down) * (least(weighted_up, weighted_down) / greatest(weighted_up, weighted_down))"
    " ELSE power(weighted_up + weighted_down, least(weighted_up, weighted_down) / greatest(weighted_up, weighted_down))"
    " END"
)


def _settled(expression: str) -> str:
    return f"round(CAST({expression} AS numeric), 9)"


def upgrade() -> None:
    # Running peak and days on chart on each frozen day.
    for column in ("peak_rank", "days_on_chart"):
        op.add_column("chart_snapshots", sa.Column(column, sa.Integer(), nullable=True), schema="ranking")
    op.execute(
        """
        UPDATE ranking.chart_snapshots s SET peak_rank = r.peak_rank, days_on_chart = r.days_on_chart
        FROM (
            SELECT day, item_type, item_id,
                min(rank) OVER (PARTITION BY item_type, item_id ORDER BY day) AS peak_rank,
                count(*) OVER (PARTITION BY item_type, item_id ORDER BY day) AS days_on_chart
            FROM ranking.chart_snapshots
        ) r
        WHERE (s.day, s.item_type, s.item_id) = (r.day, r.item_type, r.item_id)
        """
    )
    for column in ("peak_rank", "days_on_chart"):
        op.alter_column("chart_snapshots", column, nullable=False, schema="ranking")

    op.create_table(
        "chart_anchor",
        sa.Column("id", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.CheckConstraint("id", name="chart_anchor_one_row"),
        sa.PrimaryKeyConstraint("id"),
        schema="ranking",
    )
    op.execute("INSERT INTO ranking.chart_anchor (day) VALUES ((now() AT TIME ZONE 'UTC')::date)")

    # Append only, no index, no key: the vote batches' pending changes.
    op.create_table(
        "chart_deltas",
        sa.Column("item_type", sa.Text(), nullable=False),
        sa.Column("item_id", sa.Text(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("up_votes", sa.Integer(), nullable=False),
        sa.Column("down_votes", sa.Integer(), nullable=False),
        sa.Column("weighted_up", sa.Float(), nullable=False),
        sa.Column("weighted_down", sa.Float(), nullable=False),
        schema="ranking",
    )
    op.create_table(
        "chart_totals",
        sa.Column("period", sa.Text(), nullable=False),
        sa.Column("item_type", sa.Text(), nullable=False),
        sa.Column("item_id", sa.Text(), nullable=False),
        sa.Column("genre", sa.Text(), server_default="", nullable=False),
        sa.Column("platform", sa.Text(), server_default="", nullable=False),
        sa.Column("up_votes", sa.Integer(), server_default="0", nullable=False),
        sa.Column("down_votes", sa.Integer(), server_default="0", nullable=False),
        sa.Column("weighted_up", sa.Float(), server_default="0", nullable=False),
        sa.Column("weighted_down", sa.Float(), server_default="0", nullable=False),
        sa.Column(
            "score_key",
            sa.Numeric(),
            sa.Computed(f"CASE WHEN {_COUNTED} THEN {_settled('weighted_up - weighted_down')} END", persisted=True),
        ),
        sa.Column("score_tie", sa.Numeric(), sa.Computed(_settled("weighted_up"), persisted=True)),
        sa.Column(
            "best_key", sa.Numeric(), sa.Computed(f"CASE WHEN {_COUNTED} THEN {_settled(_WILSON)} END", persisted=True)
        ),
        sa.Column("best_tie", sa.Numeric(), sa.Computed(_settled("weighted_up"), persisted=True)),
        sa.Column(
            "controversial_key",
            sa.Numeric(),
            sa.Computed(f"CASE WHEN {_COUNTED} THEN {_settled(_CONTROVERSY)} END", persisted=True),
        ),
        sa.Column(
            "controversial_tie", sa.Numeric(), sa.Computed(_settled("weighted_up + weighted_down"), persisted=True)
        ),
        sa.PrimaryKeyConstraint("period", "item_type", "item_id"),
        schema="ranking",
    )
    # Filled before its sort indexes are built: one sort per index, not a
    # row-by-row insert into nine of them.
    for window, (first_back, last_back) in WINDOWS.items():
        since = "" if first_back is None else f"AND t.day >= a.day - {first_back}"
        op.execute(
            sa.text(
                f"""
                INSERT INTO ranking.chart_totals
                    (period, item_type, item_id, genre, platform, up_votes, down_votes, weighted_up, weighted_down)
                SELECT :w, t.item_type, t.item_id, coalesce(s.genre, ''), coalesce(s.platform, ''),
                    sum(t.up_votes), sum(t.down_votes), sum(t.weighted_up), sum(t.weighted_down)
                FROM ranking.daily_tallies t CROSS JOIN ranking.chart_anchor a
                LEFT JOIN ranking.songs s ON t.item_type = 'song' AND s.id = t.item_id
                LEFT JOIN ranking.tools o ON t.item_type = 'tool' AND o.id = t.item_id
                WHERE (s.id IS NOT NULL OR o.id IS NOT NULL) AND t.day <= a.day - {last_back} {since}
                GROUP BY t.item_type, t.item_id, s.genre, s.platform
                HAVING sum(t.up_votes) + sum(t.down_votes) > 0
                """
            ).bindparams(w=window)
        )
    for sort in ("score", "best", "controversial"):
        key, tie = f"{sort}_key", f"{sort}_tie"
        order: list[Any] = [sa.text(f"{key} DESC"), sa.text(f"{tie} DESC"), "item_id"]
        where = sa.text(f"{key} IS NOT NULL")
        for suffix, scope in (("", []), ("_genre", ["genre"]), ("_platform", ["platform"])):
            op.create_index(
                f"chart_totals_{sort}{suffix}_idx",
                "chart_totals",
                ["period", "item_type", *scope, *order],
                unique=False,
                schema="ranking",
                postgresql_where=where,
            )
    # Statistics at once: without them the planner scanned a whole window
    # for a rank (measured on the first attempt at this, docs/benchmarks.md).
    op.execute("ANALYZE ranking.chart_totals")
    op.execute("ANALYZE ranking.chart_anchor")  # one row, not the 2,470 a table never analysed is taken for
    op.execute("ANALYZE ranking.chart_snapshots")


def downgrade() -> None:
    op.drop_table("chart_totals", schema="ranking")
    op.drop_table("chart_deltas", schema="ranking")
    op.drop_table("chart_anchor", schema="ranking")
    op.drop_column("chart_snapshots", "days_on_chart", schema="ranking")
    op.drop_column("chart_snapshots", "peak_rank", schema="ranking")
