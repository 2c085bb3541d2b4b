"""Vote events into PostgreSQL: item counters, daily tallies and the
projection of live votes (ranking.votes), then the Redis copies and the
trending sets. What a batch changes is decided in services/ranking/vote_batch.py;
this module writes it."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import delete, text, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.common.processed_events import only_new
from services.common.weights import DEFAULT_WEIGHT, WEIGHTS_KEY
from services.ranking import vote_batch
from services.ranking.store.catalog import trending_attributes
from services.ranking.store.item_cache import COUNT_FIELDS, ItemCache, NewCounts
from services.ranking.store.trending_sets import TrendingSets
from services.ranking.tables import processed_events, votes
from services.ranking.trending import TrendClock

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
_ADD_DAILY_TALLIES = text(
    """
    INSERT INTO ranking.daily_tallies AS t (item_type, item_id, day, up_votes, down_votes)
    SELECT item_type, item_id, day, up, down
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS b(item_type text, item_id text, day date, up int, down int)
    ON CONFLICT (item_type, item_id, day)
    DO UPDATE SET up_votes = t.up_votes + EXCLUDED.up_votes, down_votes = t.down_votes + EXCLUDED.down_votes
    """
)
_PROJECT_VOTES = text(
    """
    INSERT INTO ranking.votes (agent_id, item_type, item_id, direction, voted_at, weight)
    SELECT agent_id, item_type, item_id, direction, voted_at, weight
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
        AS b(agent_id text, item_type text, item_id text, direction smallint, voted_at timestamptz, weight float8)
    ON CONFLICT DO NOTHING
    """
)
_REWEIGH_AGENT = text(
    """
    UPDATE ranking.votes v SET weight = :w
    FROM (SELECT agent_id, item_type, item_id, weight AS old_weight
          FROM ranking.votes WHERE agent_id = :a AND weight <> :w FOR UPDATE) old
    WHERE v.agent_id = old.agent_id AND v.item_type = old.item_type AND v.item_id = old.item_id
    RETURNING v.item_type, v.item_id, v.direction, v.voted_at, old.old_weight
    """
)

TrendDeltas = dict[tuple[str, str], float]


class VoteProjection:
    def __init__(self, engine: AsyncEngine, redis: Redis, item_cache: ItemCache, trending_sets: TrendingSets) -> None:
        self.engine = engine
        self.redis = redis
        self.item_cache = item_cache
        self.trending_sets = trending_sets

    async def apply_events(self, events: Iterable[VoteEvent], trend: TrendClock) -> int:
        """Applies a batch of vote events exactly once; returns how many were new.

        One transaction: record the event ids (skipping ones seen before),
        drop events of deleted items, then one UPDATE per table, one upsert
        of daily tallies and one change of the vote projection for the whole
        batch, so a hot item costs one row update per batch, not per vote.
        The trending sets are moved after the commit (a failure there is
        repaired by the periodic rebuild from the projection).
        """
        events = list(events)
        if not events:
            return 0
        weights = await self._weights({e.agent_id for e in events if e.type == "vote"})
        async with self.engine.begin() as conn:
            fresh = await only_new(conn, processed_events, events)
            attributes = await trending_attributes(conn, {(e.item_type, e.item_id) for e in fresh})
            fresh = [e for e in fresh if (e.item_type, e.item_id) in attributes]
            if not fresh:
                return 0
            counts = await self._apply_counts(conn, fresh)
            trend_deltas = await self._apply_projection(conn, fresh, weights, trend)
        await self.item_cache.copy_counts(counts)
        await self.trending_sets.move(trend_deltas, attributes)
        return len(fresh)

    async def _weights(self, agent_ids: set[str]) -> dict[str, float]:
        """The trending weight of each agent, as the reputation service publishes it."""
        if not agent_ids:
            return {}
        ordered = sorted(agent_ids)
        try:
            values = await self.redis.hmget(WEIGHTS_KEY, ordered)
        except RedisError:
            values = [None] * len(ordered)
        return {agent: DEFAULT_WEIGHT if v is None else float(v) for agent, v in zip(ordered, values, strict=True)}

    async def _apply_counts(self, conn: AsyncConnection, fresh: list[VoteEvent]) -> NewCounts:
        """Applies the batch to the counters and daily tallies; returns the new
        absolute counts of every item it changed."""
        item_changes, day_changes = vote_batch.count_changes(fresh)
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
        tally_rows = [
            {"item_type": item_type, "item_id": item_id, "day": day.isoformat(), "up": c.up, "down": c.down}
            for (item_type, item_id, day), c in day_changes
        ]
        await conn.execute(_ADD_DAILY_TALLIES, {"rows": json.dumps(tally_rows)})
        return new_counts

    async def _apply_projection(
        self, conn: AsyncConnection, fresh: list[VoteEvent], weights: dict[str, float], trend: TrendClock
    ) -> TrendDeltas:
        """Keeps ranking.votes equal to the live votes; returns the scaled
        trending change per item (what was added minus what was removed)."""
        retracted, cast = vote_batch.live_vote_changes(fresh)
        deltas: TrendDeltas = defaultdict(float)
        if retracted:
            removed = await conn.execute(
                delete(votes)
                .where(tuple_(votes.c.agent_id, votes.c.item_type, votes.c.item_id).in_(retracted))
                .returning(votes.c.item_type, votes.c.item_id, votes.c.direction, votes.c.voted_at, votes.c.weight)
            )
            for row in removed:
                deltas[(row.item_type, row.item_id)] -= trend.scaled(row.weight, row.direction, row.voted_at)
        rows = []
        for (agent_id, item_type, item_id), event in cast:
            voted_at = event.voted_at.ToDatetime(tzinfo=UTC)
            weight = weights.get(agent_id, DEFAULT_WEIGHT)
            rows.append(
                {
                    "agent_id": agent_id,
                    "item_type": item_type,
                    "item_id": item_id,
                    "direction": event.direction,
                    "voted_at": voted_at.isoformat(),
                    "weight": weight,
                }
            )
            deltas[(item_type, item_id)] += trend.scaled(weight, event.direction, voted_at)
        if rows:
            await conn.execute(_PROJECT_VOTES, {"rows": json.dumps(rows)})
        return deltas

    async def reweigh_agent(self, agent_id: str, trend: TrendClock) -> int:
        """Re-applies an agent's live votes with its current weight (0 while
        flagged), moving trending by the difference; returns votes changed."""
        weight = (await self._weights({agent_id}))[agent_id]
        async with self.engine.begin() as conn:
            rows = (await conn.execute(_REWEIGH_AGENT, {"a": agent_id, "w": weight})).all()
            attributes = await trending_attributes(conn, {(r.item_type, r.item_id) for r in rows})
        deltas: TrendDeltas = defaultdict(float)
        for row in rows:
            deltas[(row.item_type, row.item_id)] += trend.scaled(weight - row.old_weight, row.direction, row.voted_at)
        await self.trending_sets.move(deltas, attributes)
        return len(rows)
