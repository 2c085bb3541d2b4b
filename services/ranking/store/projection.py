"""Vote events into PostgreSQL: item counters, daily tallies (raw counts and
chart-weighted sums) and the projection of live votes (ranking.votes), then
the Redis copies and the trending sets; and the re-weighing of an agent's
past votes. What a batch changes is decided in services/ranking/vote_batch.py;
this module writes it."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, date
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.common.processed_events import only_new
from services.ranking import vote_batch
from services.ranking.store.catalog import trending_attributes
from services.ranking.store.item_cache import COUNT_FIELDS, ItemCache, NewCounts
from services.ranking.store.live_charts import ADD_TALLIES
from services.ranking.store.trending_sets import TrendingSets
from services.ranking.store.vote_weights import VoteWeights
from services.ranking.tables import processed_events
from services.ranking.trending import TrendClock
from services.ranking.vote_batch import AgentWeights, CountChange, DayKey, ProjectedVote, VoteKey

# A consumer batch's changes go to PostgreSQL as one JSON document per
# statement: one statement for PostgreSQL to plan and run, where an
# executemany ran one execution per row (measured: the consumers' largest
# cost, in Python and in PostgreSQL). One consumer applies the events; if
# two ever overlap (a rolling restart) and lock the same rows in another
# order, PostgreSQL aborts one batch as a deadlock and it is retried whole.
_ADD_COUNTS = {
    "song": text(
        """
        UPDATE ranking.songs AS t SET up_votes = t.up_votes + b.up, down_votes = t.down_votes + b.down
        FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS b(id text, up int, down int)
        WHERE t.id = b.id
        RETURNING t.id, t.up_votes, t.down_votes
        """
    ),
    "tool": text(
        """
        UPDATE ranking.tools AS t SET
            up_votes = t.up_votes + b.up, down_votes = t.down_votes + b.down,
            rating_sum = t.rating_sum + b.rsum, rating_count = t.rating_count + b.rcount,
            review_count = t.review_count + b.reviews
        FROM jsonb_to_recordset(CAST(:rows AS jsonb))
            AS b(id text, up int, down int, rsum int, rcount int, reviews int)
        WHERE t.id = b.id
        RETURNING t.id, t.up_votes, t.down_votes, t.rating_sum, t.rating_count, t.review_count
        """
    ),
}
# The daily tallies, and the same changes appended for the live chart
# windows' fold, in one statement (services/ranking/store/live_charts.py).
_ADD_DAILY_TALLIES = ADD_TALLIES
# Order-independent (services/common/vote_order.py): per agent and item the
# projection holds the event id of its live vote (votes.event_id) or of the
# retraction it applied last (vote_tombstones); an older event changes nothing.
_BATCH_KEYS = (
    "jsonb_to_recordset(CAST(:rows AS jsonb)) AS b(agent_id text, item_type text, item_id text, event_id bigint"
)
# A vote that is newer than the tombstone of its key (if any) is projected
# unless a live vote holds the key (ON CONFLICT: an older one is replaced on
# the slow path, a newer or equal one stands); tombstones older than it go.
_PROJECT_VOTES = text(
    f"""
    WITH b AS (
        SELECT * FROM {_BATCH_KEYS},
            direction smallint, voted_at timestamptz, weight float8, chart_weight float8, rating smallint,
            has_review boolean)
    ), superseded AS (
        DELETE FROM ranking.vote_tombstones t USING b
        WHERE (t.agent_id, t.item_type, t.item_id) = (b.agent_id, b.item_type, b.item_id) AND t.event_id < b.event_id
    )
    INSERT INTO ranking.votes
        (agent_id, item_type, item_id, direction, voted_at, weight, chart_weight, rating, has_review, event_id)
    SELECT agent_id, item_type, item_id, direction, voted_at, weight, chart_weight, rating, has_review, event_id
    FROM b
    WHERE NOT EXISTS (
        SELECT 1 FROM ranking.vote_tombstones t
        WHERE (t.agent_id, t.item_type, t.item_id) = (b.agent_id, b.item_type, b.item_id) AND t.event_id >= b.event_id
    )
    ON CONFLICT DO NOTHING
    """
)
# Which of these votes this transaction projected (inserted): asked only when
# the insert took in fewer rows than it was given (a vote of the key was
# projected already, older or newer), which is rare. Cheaper than RETURNING
# every row of every batch.
_PROJECTED_HERE = text(
    """
    SELECT v.agent_id, v.item_type, v.item_id
    FROM ranking.votes v
    JOIN jsonb_to_recordset(CAST(:rows AS jsonb)) AS b(agent_id text, item_type text, item_id text)
        ON (v.agent_id, v.item_type, v.item_id) = (b.agent_id, b.item_type, b.item_id)
    WHERE v.xmin = pg_current_xact_id()::xid
    """
)
# Takes out the projected votes older than the batch's events of their key
# (retractions, or newer votes replacing them), with what they were held
# with. Rows projected before event ids were kept (has_review NULL) take the
# rating and review from the event (a retraction carries its vote's).
_TAKE_OUT_OLDER = text(
    f"""
    DELETE FROM ranking.votes v USING {_BATCH_KEYS}, rating smallint, has_review boolean)
    WHERE (v.agent_id, v.item_type, v.item_id) = (b.agent_id, b.item_type, b.item_id) AND v.event_id < b.event_id
    RETURNING v.item_type, v.item_id, v.direction, v.voted_at, v.weight, v.chart_weight,
        CASE WHEN v.has_review IS NULL THEN b.rating ELSE v.rating END AS rating,
        coalesce(v.has_review, b.has_review, false) AS has_review
    """
)
# A retraction leaves a tombstone (its event id) unless a newer vote is projected.
_LEAVE_TOMBSTONES = text(
    f"""
    INSERT INTO ranking.vote_tombstones AS t (agent_id, item_type, item_id, event_id)
    SELECT b.agent_id, b.item_type, b.item_id, b.event_id FROM {_BATCH_KEYS})
    WHERE NOT EXISTS (
        SELECT 1 FROM ranking.votes v
        WHERE (v.agent_id, v.item_type, v.item_id) = (b.agent_id, b.item_type, b.item_id) AND v.event_id > b.event_id
    )
    ON CONFLICT (agent_id, item_type, item_id)
    DO UPDATE SET event_id = EXCLUDED.event_id, retracted_at = now() WHERE t.event_id < EXCLUDED.event_id
    """
)
# One chunk of an agent's votes whose weights differ from its current ones,
# with the weights they had (locked, so a concurrent re-weigh of the same
# agent waits and then finds nothing left to change).
_REWEIGH_AGENT = text(
    """
    UPDATE ranking.votes v SET weight = :w, chart_weight = :cw
    FROM (SELECT agent_id, item_type, item_id, weight AS old_weight, chart_weight AS old_chart_weight
          FROM ranking.votes WHERE agent_id = :a AND (weight <> :w OR chart_weight <> :cw)
          ORDER BY item_type, item_id LIMIT :n FOR UPDATE) old
    WHERE v.agent_id = old.agent_id AND v.item_type = old.item_type AND v.item_id = old.item_id
    RETURNING v.item_type, v.item_id, v.direction, v.voted_at, old.old_weight, old.old_chart_weight
    """
)
# Votes re-weighed per transaction: an agent with many votes is re-weighed in
# bounded steps (each one consistent: its votes and their tallies together).
REWEIGH_CHUNK = 5000

TrendDeltas = dict[tuple[str, str], float]
# A reconciliation's repair of one agent: run first in the repair's
# transaction, returns the events to apply.
RepairPlan = Callable[[AsyncConnection], Awaitable[list[VoteEvent]]]
ChangedDays = set[tuple[str, date]]  # (item_type, day) whose weighted tallies changed


def _tally_rows(day_changes: Iterable[tuple[DayKey, CountChange]]) -> str:
    return json.dumps(
        [
            {
                "item_type": item_type,
                "item_id": item_id,
                "day": day.isoformat(),
                "up": c.up,
                "down": c.down,
                "wup": c.weighted_up,
                "wdown": c.weighted_down,
            }
            for (item_type, item_id, day), c in day_changes
        ]
    )


def _projected(
    row: Any, chart_weight: float, rating: int | None = None, has_review: bool | None = False
) -> ProjectedVote:
    return ProjectedVote(
        row.item_type, row.item_id, row.direction, row.voted_at, chart_weight, rating, bool(has_review)
    )


class VoteProjection:
    def __init__(
        self, engine: AsyncEngine, weights: VoteWeights, item_cache: ItemCache, trending_sets: TrendingSets
    ) -> None:
        self.engine = engine
        self.weights = weights
        self.item_cache = item_cache
        self.trending_sets = trending_sets

    async def apply_events(self, events: Iterable[VoteEvent], trend: TrendClock) -> int:
        """Applies a batch of vote events exactly once and in any order;
        returns how many were new.

        One transaction: record the event ids (skipping ones seen before),
        drop events of deleted items, then one change of the vote projection
        (per agent and item, the batch's newest event, if newer than what the
        projection holds: services/common/vote_order.py), one UPDATE per table
        and one upsert of daily tallies for the whole batch, so a hot item
        costs one row update per batch, not per vote. Counts and tallies
        follow the projection's change (what it took in and gave up, with
        what it held them with), so a stale event changes nothing. The
        trending sets are moved after the commit (a failure there is repaired
        by the periodic rebuild from the projection).
        """
        events = list(events)
        if not events:
            return 0
        weights = await self.weights.for_batch({e.agent_id for e in events if e.type == "vote"})
        async with self.engine.begin() as conn:
            fresh = await only_new(conn, processed_events, events)
            attributes = await trending_attributes(conn, {(e.item_type, e.item_id) for e in fresh})
            fresh = [e for e in fresh if (e.item_type, e.item_id) in attributes]
            if not fresh:
                return 0
            removed, added, trend_deltas = await self._apply_projection(conn, fresh, weights, trend)
            counts = await self._apply_counts(conn, removed, added)
        await self.item_cache.copy_counts(counts)
        await self.trending_sets.move(trend_deltas, attributes)
        return len(fresh)

    async def _apply_counts(
        self, conn: AsyncConnection, removed: Sequence[ProjectedVote], added: Sequence[ProjectedVote]
    ) -> NewCounts:
        """Applies the projection's change to the counters and daily tallies;
        returns the new absolute counts of every item it changed."""
        item_changes, day_changes = vote_batch.count_changes(removed, added)
        new_counts: NewCounts = {}
        for item_type, statement in _ADD_COUNTS.items():
            rows = [
                {
                    "id": item_id,
                    "up": c.up,
                    "down": c.down,
                    "rsum": c.rating_sum,
                    "rcount": c.rating_count,
                    "reviews": c.reviews,
                }
                for (kind, item_id), c in item_changes
                if kind == item_type
            ]
            if not rows:
                continue
            fields = COUNT_FIELDS[item_type]
            for row in await conn.execute(statement, {"rows": json.dumps(rows)}):
                new_counts[(item_type, row.id)] = {f: int(row._mapping[f]) for f in fields}
        if day_changes:
            await conn.execute(_ADD_DAILY_TALLIES, {"rows": _tally_rows(day_changes)})
        return new_counts

    async def repair_votes(
        self, agent_id: str, plan: RepairPlan, trend: TrendClock
    ) -> tuple[list[ProjectedVote], list[ProjectedVote]]:
        """Applies the events a reconciliation synthesized to repair one
        agent's projected votes (services/ranking/store/vote_reconcile.py)
        the way a batch applies events, in one transaction: the projection
        with its event-id and tombstone rules, the daily tallies and the live
        windows' changes (raw, and weighted by the agent's current chart
        weight), then trending. Not the item counts: the count reconciliation
        owns them (it repairs them from the same table, so moving them here
        too would count a lost vote twice). `plan` runs first in the
        transaction and returns the events, all of `agent_id` (none: nothing to do, e.g. the
        projection changed since the agent was checked). Returns the votes
        given up and taken in."""
        weights = await self.weights.of({agent_id})  # any Redis error raised: a weight is never guessed here
        async with self.engine.begin() as conn:
            planned = await plan(conn)
            if not planned:
                return [], []
            attributes = await trending_attributes(conn, {(e.item_type, e.item_id) for e in planned})
            planned = [e for e in planned if (e.item_type, e.item_id) in attributes]  # not of deleted items
            if not planned:
                return [], []
            removed, added, trend_deltas = await self._apply_projection(
                conn, planned, weights, trend, review_unknown=True
            )
            _, day_changes = vote_batch.count_changes(removed, added)
            if day_changes:
                await conn.execute(_ADD_DAILY_TALLIES, {"rows": _tally_rows(day_changes)})
        await self.trending_sets.move(trend_deltas, attributes)
        return removed, added

    async def _apply_projection(
        self,
        conn: AsyncConnection,
        fresh: list[VoteEvent],
        weights: dict[str, AgentWeights],
        trend: TrendClock,
        review_unknown: bool = False,
    ) -> tuple[list[ProjectedVote], list[ProjectedVote], TrendDeltas]:
        """Keeps ranking.votes equal to the live votes; returns the votes it
        gave up and took in, and the scaled trending change per item (what
        was added minus what was removed). `review_unknown`: the votes' rating
        and review are not known (a reconciliation's repair), so their rows
        hold none and a retraction takes back what it carries, as for rows
        projected before they were kept."""
        retracted, cast = vote_batch.live_vote_changes(fresh)
        deltas: TrendDeltas = defaultdict(float)
        removed = await self._take_out(conn, retracted) if retracted else []
        if cast:
            replaced, added = await self._take_in(conn, cast, weights, review_unknown)
            removed += replaced
        else:
            added = []
        for vote, trending_weight, sign in [(v, w, -1) for v, w in removed] + [(v, w, 1) for v, w in added]:
            deltas[(vote.item_type, vote.item_id)] += sign * trend.scaled(
                trending_weight, vote.direction, vote.voted_at
            )
        return [v for v, _ in removed], [v for v, _ in added], deltas

    async def _take_out_older(
        self, conn: AsyncConnection, rows: list[dict[str, Any]]
    ) -> list[tuple[ProjectedVote, float]]:
        """Deletes the projected votes older than the rows' events; returns
        them with the weights they were held with (chart in the vote,
        trending beside it)."""
        deleted = await conn.execute(_TAKE_OUT_OLDER, {"rows": json.dumps(rows)})
        return [(_projected(row, row.chart_weight, row.rating, row.has_review), row.weight) for row in deleted]

    async def _take_out(
        self, conn: AsyncConnection, retracted: list[tuple[VoteKey, VoteEvent]]
    ) -> list[tuple[ProjectedVote, float]]:
        """Applies the retractions that stand: takes out the older votes
        projected under their keys and leaves their tombstones."""
        rows = [
            {
                "agent_id": agent_id,
                "item_type": item_type,
                "item_id": item_id,
                "event_id": event.event_id,
                "rating": event.rating if event.HasField("rating") else None,
                "has_review": event.has_review,
            }
            for (agent_id, item_type, item_id), event in retracted
        ]
        removed = await self._take_out_older(conn, rows)
        await conn.execute(_LEAVE_TOMBSTONES, {"rows": json.dumps(rows)})
        return removed

    async def _take_in(
        self,
        conn: AsyncConnection,
        cast: list[tuple[VoteKey, VoteEvent]],
        weights: dict[str, AgentWeights],
        review_unknown: bool = False,
    ) -> tuple[list[tuple[ProjectedVote, float]], list[tuple[ProjectedVote, float]]]:
        """Projects the cast votes that stand, with their agents' weights;
        returns the older votes they replaced and the votes taken in, each
        with its trending weight."""
        rows, taken_in = [], []
        for (agent_id, item_type, item_id), event in cast:
            weight, voted_at = weights[agent_id], event.voted_at.ToDatetime(tzinfo=UTC)
            rating = event.rating if event.HasField("rating") else None
            rows.append(
                {
                    "agent_id": agent_id,
                    "item_type": item_type,
                    "item_id": item_id,
                    "event_id": event.event_id,
                    "direction": event.direction,
                    "voted_at": voted_at.isoformat(),
                    "weight": weight.trending,
                    "chart_weight": weight.chart,
                    "rating": rating,
                    "has_review": None if review_unknown else event.has_review,
                }
            )
            vote = ProjectedVote(item_type, item_id, event.direction, voted_at, weight.chart, rating, event.has_review)
            taken_in.append((vote, weight.trending))
        replaced: list[tuple[ProjectedVote, float]] = []
        if (await conn.execute(_PROJECT_VOTES, {"rows": json.dumps(rows)})).rowcount != len(rows):
            # Some keys hold a vote already: an older one (its retraction is
            # late, or was never seen) is replaced, a newer one stands.
            older = [{**row, "rating": None, "has_review": None} for row in rows]
            replaced = await self._take_out_older(conn, older)
            if replaced:
                await conn.execute(_PROJECT_VOTES, {"rows": json.dumps(rows)})
            projected = {tuple(r) for r in await conn.execute(_PROJECTED_HERE, {"rows": json.dumps(rows)})}
            taken_in = [vote for (key, _), vote in zip(cast, taken_in, strict=True) if key in projected]
        return replaced, taken_in

    async def reweigh_agent(self, agent_id: str, trend: TrendClock, changed_days: ChangedDays) -> int:
        """Re-applies an agent's live votes with its current weights (0 while
        flagged): moves its daily tallies' weighted sums and trending by the
        difference, in chunks of REWEIGH_CHUNK votes, one transaction each;
        adds to `changed_days` each (item type, day) tallied anew as its
        chunk commits (whose frozen charts must follow); returns the votes
        changed. Any Redis error is raised: a weight is never guessed here."""
        weights = (await self.weights.of({agent_id}))[agent_id]
        changed = 0
        while True:
            async with self.engine.begin() as conn:
                params = {"a": agent_id, "w": weights.trending, "cw": weights.chart, "n": REWEIGH_CHUNK}
                rows = (await conn.execute(_REWEIGH_AGENT, params)).all()
                old = [_projected(row, row.old_chart_weight) for row in rows]
                day_changes = vote_batch.reweighed_days(old, weights.chart)
                if day_changes:
                    await conn.execute(_ADD_DAILY_TALLIES, {"rows": _tally_rows(day_changes)})
                moved = [row for row in rows if row.old_weight != weights.trending]
                attributes = await trending_attributes(conn, {(r.item_type, r.item_id) for r in moved})
            changed += len(rows)
            changed_days.update((item_type, day) for (item_type, _, day), _ in day_changes)
            deltas: TrendDeltas = defaultdict(float)
            for row in moved:
                delta = weights.trending - row.old_weight
                deltas[(row.item_type, row.item_id)] += trend.scaled(delta, row.direction, row.voted_at)
            await self.trending_sets.move(deltas, attributes)
            if len(rows) < REWEIGH_CHUNK:
                return changed
