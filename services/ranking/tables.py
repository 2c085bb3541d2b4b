"""The ranking service's tables (schema `ranking`). Only this service writes them.

Counters on songs and tools are applied from vote events in batches (one
UPDATE per item per batch, never one per vote). daily_tallies keeps per-day
up/down counts per item, raw and weighted by the voters' chart weights, so
any chart window is a sum over days, and chart_snapshots freezes each
finished day's chart for history and movement.
"""

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR

from services.common.processed_events import processed_events_table, vote_tombstones_table

SCHEMA = "ranking"
metadata = MetaData(schema=SCHEMA)

songs = Table(
    "songs",
    metadata,
    Column("id", Text, primary_key=True),
    Column("title", Text, nullable=False),
    Column("artist", Text, nullable=False),
    Column("platform", Text, nullable=False),
    Column("platform_url", Text, nullable=False, server_default=""),
    Column("genre", Text, nullable=False, server_default=""),
    Column("mood", Text, nullable=False, server_default=""),
    Column("tempo", SmallInteger),
    Column("submitted_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("up_votes", Integer, nullable=False, server_default="0"),
    Column("down_votes", Integer, nullable=False, server_default="0"),
    Column("score", Integer, Computed("up_votes - down_votes", persisted=True)),
    # Title and artist case-folded by the service (services/ranking/search.py).
    Column("search_text", Text, nullable=False, server_default=""),
    Column("search", TSVECTOR, Computed("to_tsvector('simple', search_text)", persisted=True)),
    CheckConstraint("tempo IS NULL OR tempo BETWEEN 20 AND 400", name="songs_tempo_range"),
    Index("songs_created_idx", text("created_at DESC"), text("id DESC")),
    Index("songs_platform_idx", "platform"),
    Index("songs_genre_idx", "genre"),
    Index("songs_mood_idx", "mood"),
    Index("songs_score_idx", text("score DESC")),
    Index("songs_search_idx", "search", postgresql_using="gin"),
)

tools = Table(
    "tools",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("website", Text, nullable=False, server_default=""),
    Column("affiliate_link", Text, nullable=False, server_default=""),
    Column("commission_rate", SmallInteger, nullable=False, server_default="0"),
    Column("category", Text, nullable=False, server_default=""),
    Column("features", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("pricing", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("up_votes", Integer, nullable=False, server_default="0"),
    Column("down_votes", Integer, nullable=False, server_default="0"),
    Column("score", Integer, Computed("up_votes - down_votes", persisted=True)),
    Column("rating_sum", BigInteger, nullable=False, server_default="0"),
    Column("rating_count", Integer, nullable=False, server_default="0"),
    Column("review_count", Integer, nullable=False, server_default="0"),
    # The name case-folded by the service (services/ranking/search.py).
    Column("search_text", Text, nullable=False, server_default=""),
    Column("search", TSVECTOR, Computed("to_tsvector('simple', search_text)", persisted=True)),
    CheckConstraint("commission_rate BETWEEN 0 AND 100", name="tools_commission_range"),
    Index("tools_created_idx", text("created_at DESC"), text("id DESC")),
    Index("tools_category_idx", "category"),
    Index("tools_score_idx", text("score DESC")),
    Index("tools_search_idx", "search", postgresql_using="gin"),
)

# Ids of deleted items, never given to a new item: the vote service keeps the
# votes cast on a deleted item (they are its voters' history), so a new item
# under the same id would inherit them (and retracting one would take the new
# item's counts below zero).
deleted_items = Table(
    "deleted_items",
    metadata,
    Column("item_type", Text, nullable=False),
    Column("item_id", Text, nullable=False),
    Column("deleted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("item_type", "item_id"),
)

# Songs each agent submitted per UTC day, for the daily quota: a song adds
# one in the transaction that stores it (its row lock makes one agent's
# concurrent submissions count in turn), and a deletion takes nothing back.
# Rows older than a week are pruned.
daily_submissions = Table(
    "daily_submissions",
    metadata,
    Column("agent_id", Text, nullable=False),
    Column("day", Date, nullable=False),
    Column("used", Integer, nullable=False),
    PrimaryKeyConstraint("agent_id", "day"),
)

daily_tallies = Table(
    "daily_tallies",
    metadata,
    Column("item_type", Text, nullable=False),
    Column("item_id", Text, nullable=False),
    Column("day", Date, nullable=False),
    Column("up_votes", Integer, nullable=False, server_default="0"),
    Column("down_votes", Integer, nullable=False, server_default="0"),
    # The sums of the chart weights of the day's live votes (what charts
    # rank by); the raw counts above are what they show.
    Column("weighted_up", Float, nullable=False, server_default="0"),
    Column("weighted_down", Float, nullable=False, server_default="0"),
    PrimaryKeyConstraint("item_type", "item_id", "day"),
    Index("daily_tallies_day_idx", "item_type", "day"),
)

chart_snapshots = Table(
    "chart_snapshots",
    metadata,
    Column("day", Date, nullable=False),
    Column("item_type", Text, nullable=False),
    Column("item_id", Text, nullable=False),
    Column("rank", Integer, nullable=False),
    Column("score", Integer, nullable=False),
    Column("up_votes", Integer, nullable=False),
    Column("down_votes", Integer, nullable=False),
    # The item's best rank and its days on the daily charts frozen up to
    # this day, so peak_rank and days_on_chart as of any day are one row
    # (the item's latest frozen day up to it), not a sum over its days.
    # Kept by ChartStore.save_snapshots whenever days are (re)frozen.
    Column("peak_rank", Integer, nullable=False),
    Column("days_on_chart", Integer, nullable=False),
    PrimaryKeyConstraint("day", "item_type", "item_id"),
    Index("chart_snapshots_item_idx", "item_type", "item_id", "day"),
)

# The day the live chart windows end on (one row): chart_totals holds the
# windows ending on it. The roll-over to a new day changes it, holding
# chart_deltas locked against appends and folds (live_charts.py).
chart_anchor = Table(
    "chart_anchor",
    metadata,
    Column("id", Boolean, primary_key=True, server_default=text("true")),
    Column("day", Date, nullable=False),
    CheckConstraint("id", name="chart_anchor_one_row"),
)

# The changes of daily tallies not yet added to the live windows: the
# transaction that writes the tallies (a vote batch, a re-weigh) appends its
# per-(item, day) changes here, and the fold job (every
# AIMUSICSTORE_CHART_FOLD_INTERVAL_S) takes them out and adds them to every
# window holding their day, one row update per item and window however many
# batches came in between (services/ranking/store/live_charts.py). Append
# only and without indexes: an append costs the batch one heap insert per
# row, where adding to the windows cost it up to four row updates across
# ten indexes each. Rows live for one fold.
chart_deltas = Table(
    "chart_deltas",
    metadata,
    Column("item_type", Text, nullable=False),
    Column("item_id", Text, nullable=False),
    Column("day", Date, nullable=False),
    Column("up_votes", Integer, nullable=False),
    Column("down_votes", Integer, nullable=False),
    Column("weighted_up", Float, nullable=False),
    Column("weighted_down", Float, nullable=False),
)

# Each item's votes in each live window (services/ranking/store/live_charts.py):
# the windows of the period charts ending on chart_anchor.day ("daily",
# "weekly", "monthly", "all_time") and the windows one period earlier that
# movement compares with ("daily:previous"...). Raw counts (shown) and
# chart-weighted sums (ranked by), kept from the changes of the daily
# tallies by the fold of chart_deltas; genre and platform copied from the song so a filtered
# chart is an index scan. The sort keys are the chart rules of
# services/ranking/charts.py in SQL (NULL when the votes weigh nothing: off
# the chart), so the top of any sort is the first rows of an index.
_COUNTED = "weighted_up + weighted_down > 1e-9"
# Float8 throughout, in the order services/ranking/charts.py computes them,
# so the keys are the same doubles before rounding.
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
    """A ranking key as services/ranking/charts.py compares it: to 9 decimals."""
    return f"round(CAST({expression} AS numeric), 9)"


def _sort_indexes(sort: str) -> list[Index]:
    key, tie = f"{sort}_key", f"{sort}_tie"
    order: list[Any] = [text(f"{key} DESC"), text(f"{tie} DESC"), "item_id"]
    where = text(f"{key} IS NOT NULL")
    return [
        Index(f"chart_totals_{sort}_idx", "period", "item_type", *order, postgresql_where=where),
        Index(f"chart_totals_{sort}_genre_idx", "period", "item_type", "genre", *order, postgresql_where=where),
        Index(f"chart_totals_{sort}_platform_idx", "period", "item_type", "platform", *order, postgresql_where=where),
    ]


chart_totals = Table(
    "chart_totals",
    metadata,
    Column("period", Text, nullable=False),
    Column("item_type", Text, nullable=False),
    Column("item_id", Text, nullable=False),
    Column("genre", Text, nullable=False, server_default=""),
    Column("platform", Text, nullable=False, server_default=""),
    Column("up_votes", Integer, nullable=False, server_default="0"),
    Column("down_votes", Integer, nullable=False, server_default="0"),
    Column("weighted_up", Float, nullable=False, server_default="0"),
    Column("weighted_down", Float, nullable=False, server_default="0"),
    Column(
        "score_key",
        Numeric,
        Computed(f"CASE WHEN {_COUNTED} THEN {_settled('weighted_up - weighted_down')} END", persisted=True),
    ),
    Column("score_tie", Numeric, Computed(_settled("weighted_up"), persisted=True)),
    Column("best_key", Numeric, Computed(f"CASE WHEN {_COUNTED} THEN {_settled(_WILSON)} END", persisted=True)),
    Column("best_tie", Numeric, Computed(_settled("weighted_up"), persisted=True)),
    Column(
        "controversial_key",
        Numeric,
        Computed(f"CASE WHEN {_COUNTED} THEN {_settled(_CONTROVERSY)} END", persisted=True),
    ),
    Column("controversial_tie", Numeric, Computed(_settled("weighted_up + weighted_down"), persisted=True)),
    PrimaryKeyConstraint("period", "item_type", "item_id"),
    *_sort_indexes("score"),
    *_sort_indexes("best"),
    *_sort_indexes("controversial"),
)

# The first rows of every period chart of every finished day (each sort, no
# filters) with each row's rank one period earlier: charts of past dates are
# read from here (services/ranking/frozen_tops.py computes them,
# services/ranking/rankings/freezer.py keeps them). Written by the freezer
# job only, a day's rows replaced whole.
chart_tops = Table(
    "chart_tops",
    metadata,
    Column("item_type", Text, nullable=False),
    Column("period", Text, nullable=False),
    Column("sort", Text, nullable=False),
    Column("day", Date, nullable=False),
    Column("rank", Integer, nullable=False),
    Column("item_id", Text, nullable=False),
    Column("up_votes", Integer, nullable=False),
    Column("down_votes", Integer, nullable=False),
    Column("weighted_up", Float, nullable=False),
    Column("weighted_down", Float, nullable=False),
    Column("previous_rank", Integer),
    PrimaryKeyConstraint("item_type", "period", "sort", "day", "rank"),
)

# Per item type, which days chart_tops holds and which it must compute
# again: [frozen_from, frozen_through] are frozen. A change of the tallies of
# a day before the live windows' day (a late vote, a re-weigh, a repair, a
# deleted item) sets pending_from to the earliest such day (the fold does,
# services/ranking/store/live_charts.py); the freezer claims it into
# dirty_from once its current sweep is done (so marks arriving every pass
# cannot keep it from the later days), then freezes from there on.
chart_tops_state = Table(
    "chart_tops_state",
    metadata,
    Column("item_type", Text, primary_key=True),
    Column("frozen_from", Date),
    Column("frozen_through", Date),
    Column("dirty_from", Date),
    Column("pending_from", Date),
)

# Vote events already applied, so a redelivered event is not counted twice.
processed_events = processed_events_table(metadata)

# The ranking service's projection of live votes (from vote events), with
# the trending weight and the chart weight each vote was applied with, so a
# retraction or a flag change removes exactly what was added.
votes = Table(
    "votes",
    metadata,
    Column("agent_id", Text, nullable=False),
    Column("item_type", Text, nullable=False),
    Column("item_id", Text, nullable=False),
    Column("direction", SmallInteger, nullable=False),
    Column("voted_at", DateTime(timezone=True), nullable=False),
    Column("weight", Float, nullable=False),
    Column("chart_weight", Float, nullable=False),
    # The event that projected it (services/common/vote_order.py): an older
    # event of the same agent and item changes nothing. 0 for votes projected
    # before the ids were kept (any event is newer).
    Column("event_id", BigInteger, nullable=False, server_default="0"),
    # What it added to its item's counts, taken back exactly when it goes.
    # has_review NULL: projected before these were kept (a retraction then
    # takes back the rating and review its event carries).
    Column("rating", SmallInteger),
    Column("has_review", Boolean),
    PrimaryKeyConstraint("agent_id", "item_type", "item_id"),
    Index("ranking_votes_recent_idx", "voted_at"),
    Index("ranking_votes_item_idx", "item_type", "item_id"),
)

# The retractions applied last per agent and item (while no newer vote is
# projected): a vote event older than its tombstone (applied out of order)
# is not projected.
vote_tombstones = vote_tombstones_table(metadata, "ranking")
