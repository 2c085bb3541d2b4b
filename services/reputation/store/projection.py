"""The reputation service's projection of the vote event stream (votes, item
scores, vote counts) and the reputation recomputed from it, in SQL for many
agents at once."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select, text, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.common.processed_events import only_new
from services.common.vote_order import newest_per_key
from services.reputation.formula import (
    DAYS_PER_BONUS_POINT,
    MAX_REPUTATION,
    MAX_TIME_BONUS,
    sign_flipped,
    vote_earns,
)
from services.reputation.store.rows import AgentScore
from services.reputation.tables import agents, item_scores, processed_events, votes

Item = tuple[str, str]  # (item_type, item_id)
VoteKey = tuple[str, str, str]  # (agent_id, item_type, item_id)
# A vote as the projection gave it up or took it in: (agent, item type, item id, direction).
ProjectedVote = tuple[str, str, str, int]


@dataclass(slots=True)
class AgentVotes:
    """One agent's share of a batch: live votes added (the projection's
    change: votes taken in minus votes taken out), and the first and last
    vote time among its vote events (every one: in order, each vote was
    projected, if only until its retraction)."""

    added: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None


@dataclass
class BatchTally:
    per_agent: dict[str, AgentVotes] = field(default_factory=dict)
    # The newest event per (agent, item): the only one of the batch that can
    # stand (services/common/vote_order.py), and one row per key, as the
    # statements need.
    final: dict[VoteKey, VoteEvent] = field(default_factory=dict)
    # Net change of each item's score (up - down) in the batch.
    score_delta: dict[Item, int] = field(default_factory=dict)

    def count_change(self, removed: Iterable[ProjectedVote], added: Iterable[ProjectedVote]) -> None:
        """Adds the projection's change (what it gave up, what it took in)
        to the agents' vote counts and the items' scores."""
        for changed, sign in ((removed, -1), (added, 1)):
            for agent_id, item_type, item_id, direction in changed:
                entry = self.per_agent.get(agent_id)
                if entry is None:
                    entry = self.per_agent[agent_id] = AgentVotes()
                entry.added += sign
                item = (item_type, item_id)
                self.score_delta[item] = self.score_delta.get(item, 0) + sign * direction


def tally(events: Iterable[VoteEvent]) -> BatchTally:
    """What a batch of vote events brings (no I/O): every voter, its vote
    times, and the newest event per (agent, item). Counts and scores are
    added from the projection's change (BatchTally.count_change)."""
    events = list(events)
    batch = BatchTally(final=newest_per_key(events))
    per_agent = batch.per_agent
    for event in events:
        entry = per_agent.get(event.agent_id)
        if entry is None:
            entry = per_agent[event.agent_id] = AgentVotes()
        if event.type == "vote":
            at = event.voted_at.ToDatetime(tzinfo=UTC)
            entry.first_at = at if entry.first_at is None else min(entry.first_at, at)
            entry.last_at = at if entry.last_at is None else max(entry.last_at, at)
    return batch


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


class VoteProjection:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def apply_events(self, events: Iterable[VoteEvent], now: datetime) -> list[AgentScore]:
        """Applies vote events exactly once: vote counts and times, the vote
        projection, item scores, then the reputation of every agent whose
        score can have moved (the voters, and everyone who voted on an item
        whose sign flipped). Returns the agents whose reputation changed."""
        events = list(events)
        if not events:
            return []
        async with self.engine.begin() as conn:
            fresh = await only_new(conn, processed_events, events)
            if not fresh:
                return []
            batch = tally(fresh)
            batch_agents = sorted(batch.per_agent)
            flagged = {
                row.id: row.flagged
                for row in await conn.execute(
                    select(agents.c.id, agents.c.flagged).where(agents.c.id.in_(batch_agents))
                )
            }
            removed, added = await self._project_votes(conn, batch.final, flagged)
            batch.count_change(removed, added)
            await self._count_agent_votes(conn, batch.per_agent)
            flipped = await self._apply_score_deltas(conn, batch.score_delta)
            affected = set(batch_agents)
            if flipped:
                affected |= set(
                    (
                        await conn.execute(
                            select(votes.c.agent_id)
                            .where(tuple_(votes.c.item_type, votes.c.item_id).in_(flipped))
                            .distinct()
                        )
                    ).scalars()
                )
            return await self._recompute(conn, sorted(affected), now)

    async def recompute_agents(self, agent_ids: list[str], now: datetime) -> list[AgentScore]:
        async with self.engine.begin() as conn:
            return await self._recompute(conn, agent_ids, now)

    async def recompute_all(self, now: datetime) -> list[AgentScore]:
        """The periodic set-based pass that corrects any drift: item scores
        from the projection, then every unflagged agent's reputation."""
        async with self.engine.begin() as conn:
            await conn.execute(_RECOMPUTE_ITEM_SCORES)
            return await self._recompute(conn, None, now)

    async def _count_agent_votes(self, conn: AsyncConnection, per_agent: dict[str, AgentVotes]) -> None:
        counted = [
            {"id": agent_id, "n": entry.added, "first_at": _iso(entry.first_at), "last_at": _iso(entry.last_at)}
            for agent_id, entry in sorted(per_agent.items())
        ]
        await conn.execute(_COUNT_AGENT_VOTES, {"rows": json.dumps(counted)})

    async def _project_votes(
        self, conn: AsyncConnection, final: dict[VoteKey, VoteEvent], flagged: dict[str, bool]
    ) -> tuple[list[ProjectedVote], list[ProjectedVote]]:
        """Applies each key's newest event if it is newer than what the
        projection holds; returns the votes given up and taken in."""
        keys = sorted(final)  # rows locked in key order
        gone = [
            {"agent_id": a, "item_type": t, "item_id": i, "event_id": final[(a, t, i)].event_id}
            for a, t, i in keys
            if final[(a, t, i)].type != "vote"
        ]
        cast = [
            {
                "agent_id": event.agent_id,
                "item_type": event.item_type,
                "item_id": event.item_id,
                "event_id": event.event_id,
                "direction": event.direction,
                "cast_at": event.voted_at.ToDatetime(tzinfo=UTC).isoformat(),
                "earns": vote_earns(flagged.get(event.agent_id, False)),
            }
            for event in (final[key] for key in keys)
            if event.type == "vote"
        ]
        removed: list[ProjectedVote] = []
        added: list[ProjectedVote] = []
        if gone:
            removed += await self._take_out_older(conn, gone)
            await conn.execute(_LEAVE_TOMBSTONES, {"rows": json.dumps(gone)})
        if cast:
            added = await self._project(conn, cast)
            if len(added) < len(cast):
                # Some keys hold a vote already: an older one (its retraction
                # is late, or was never seen) is replaced, a newer one stands.
                taken = {vote[:3] for vote in added}
                rest = [row for row in cast if (row["agent_id"], row["item_type"], row["item_id"]) not in taken]
                replaced = await self._take_out_older(conn, rest)
                if replaced:
                    removed += replaced
                    added += await self._project(conn, rest)
        return removed, added

    async def _take_out_older(self, conn: AsyncConnection, rows: list[dict[str, object]]) -> list[ProjectedVote]:
        deleted = await conn.execute(_TAKE_OUT_OLDER, {"rows": json.dumps(rows)})
        return [(r.agent_id, r.item_type, r.item_id, r.direction) for r in deleted]

    async def _project(self, conn: AsyncConnection, rows: list[dict[str, object]]) -> list[ProjectedVote]:
        inserted = await conn.execute(_PROJECT_VOTES, {"rows": json.dumps(rows)})
        return [(r.agent_id, r.item_type, r.item_id, r.direction) for r in inserted]

    async def _apply_score_deltas(self, conn: AsyncConnection, deltas: dict[Item, int]) -> list[Item]:
        """Adds the batch's score changes; returns the items whose sign changed."""
        changed = {item: delta for item, delta in deltas.items() if delta}
        if not changed:
            return []
        rows = [{"item_type": t, "item_id": i, "score": d} for (t, i), d in sorted(changed.items())]
        upsert = pg_insert(item_scores)
        new_scores = (
            await conn.execute(
                upsert.on_conflict_do_update(
                    index_elements=[item_scores.c.item_type, item_scores.c.item_id],
                    set_={"score": item_scores.c.score + upsert.excluded.score},
                ).returning(item_scores.c.item_type, item_scores.c.item_id, item_scores.c.score),
                rows,
            )
        ).all()
        return [
            (item_type, item_id)
            for item_type, item_id, score in new_scores
            if sign_flipped(score - changed[(item_type, item_id)], score)
        ]

    async def _recompute(self, conn: AsyncConnection, agent_ids: list[str] | None, now: datetime) -> list[AgentScore]:
        rows = await conn.execute(_RECOMPUTE, {"all": agent_ids is None, "ids": agent_ids or [], "now": now})
        # Flagged agents are never recomputed, so every one returned is unflagged.
        return [AgentScore(row.id, row.reputation_score, False, row.trusted, row.registration_crowd) for row in rows]


# A consumer batch's changes go to PostgreSQL as one JSON document per
# statement: one statement to plan and run, where an executemany ran one
# execution per row (measured: the consumer's largest cost, in Python and in
# PostgreSQL). LEAST/GREATEST skip NULLs: a batch of only retractions keeps
# both vote times.
_COUNT_AGENT_VOTES = text(
    """
    UPDATE reputation.agents AS a SET
        vote_count = greatest(a.vote_count + b.n, 0),
        first_vote_at = least(a.first_vote_at, b.first_at),
        last_vote_at = greatest(a.last_vote_at, b.last_at)
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS b(id text, n int, first_at timestamptz, last_at timestamptz)
    WHERE a.id = b.id
    """
)
# Order-independent (services/common/vote_order.py): per agent and item the
# projection holds the event id of its live vote (votes.event_id) or of the
# retraction it applied last (vote_tombstones); an older event changes nothing.
_BATCH_KEYS = (
    "jsonb_to_recordset(CAST(:rows AS jsonb)) AS b(agent_id text, item_type text, item_id text, event_id bigint"
)
# A vote newer than its key's tombstone (if any) is projected unless a live
# vote holds the key (ON CONFLICT: an older one is then replaced, a newer or
# equal one stands); tombstones older than it go.
_PROJECT_VOTES = text(
    f"""
    WITH b AS (
        SELECT * FROM {_BATCH_KEYS}, direction smallint, cast_at timestamptz, earns boolean)
    ), superseded AS (
        DELETE FROM reputation.vote_tombstones t USING b
        WHERE (t.agent_id, t.item_type, t.item_id) = (b.agent_id, b.item_type, b.item_id) AND t.event_id < b.event_id
    )
    INSERT INTO reputation.votes (agent_id, item_type, item_id, direction, cast_at, earns, event_id)
    SELECT agent_id, item_type, item_id, direction, cast_at, earns, event_id FROM b
    WHERE NOT EXISTS (
        SELECT 1 FROM reputation.vote_tombstones t
        WHERE (t.agent_id, t.item_type, t.item_id) = (b.agent_id, b.item_type, b.item_id) AND t.event_id >= b.event_id
    )
    ON CONFLICT (agent_id, item_type, item_id) DO NOTHING
    RETURNING agent_id, item_type, item_id, direction
    """
)
# Takes out the projected votes older than the rows' events (retractions, or
# newer votes replacing them).
_TAKE_OUT_OLDER = text(
    f"""
    DELETE FROM reputation.votes v USING {_BATCH_KEYS})
    WHERE (v.agent_id, v.item_type, v.item_id) = (b.agent_id, b.item_type, b.item_id) AND v.event_id < b.event_id
    RETURNING v.agent_id, v.item_type, v.item_id, v.direction
    """
)
# A retraction leaves a tombstone (its event id) unless a newer vote is projected.
_LEAVE_TOMBSTONES = text(
    f"""
    INSERT INTO reputation.vote_tombstones AS t (agent_id, item_type, item_id, event_id)
    SELECT b.agent_id, b.item_type, b.item_id, b.event_id FROM {_BATCH_KEYS})
    WHERE NOT EXISTS (
        SELECT 1 FROM reputation.votes v
        WHERE (v.agent_id, v.item_type, v.item_id) = (b.agent_id, b.item_type, b.item_id) AND v.event_id > b.event_id
    )
    ON CONFLICT (agent_id, item_type, item_id)
    DO UPDATE SET event_id = EXCLUDED.event_id, retracted_at = now() WHERE t.event_id < EXCLUDED.event_id
    """
)

# Reputation for the given agents (or all, with :all), skipping flagged ones:
# they earn nothing while flagged, so their score stays where it was.
# formula.reputation for many agents at once; the constants are formula.py's
# (tests/unit/reputation/test_formula.py checks the integer time bonus equals
# the contract's float form).
_RECOMPUTE = text(
    f"""
    WITH target AS (
        SELECT id, first_vote_at FROM reputation.agents
        WHERE NOT flagged AND (:all OR id = ANY(:ids))
    ), stats AS (
        SELECT v.agent_id,
               count(*) AS votes_cast,
               count(*) FILTER (WHERE sign(coalesce(s.score, 0)) = v.direction) AS agreements
        FROM reputation.votes v
        JOIN target t ON t.id = v.agent_id
        LEFT JOIN reputation.item_scores s ON s.item_type = v.item_type AND s.item_id = v.item_id
        WHERE v.earns
        GROUP BY v.agent_id
    ), scored AS (
        SELECT t.id,
               LEAST({MAX_REPUTATION:d}, coalesce(st.votes_cast, 0) + coalesce(st.agreements, 0) + CASE
                   WHEN t.first_vote_at IS NULL THEN 0
                   -- whole days since the first vote (never negative), a tenth of a point each
                   ELSE LEAST({MAX_TIME_BONUS:d},
                              GREATEST(0, floor(extract(epoch FROM (CAST(:now AS timestamptz) - t.first_vote_at))
                                                / 86400)::int) / {DAYS_PER_BONUS_POINT:d})
               END) AS score
        FROM target t LEFT JOIN stats st ON st.agent_id = t.id
    )
    UPDATE reputation.agents a SET reputation_score = scored.score
    FROM scored
    WHERE a.id = scored.id AND a.reputation_score <> scored.score
    RETURNING a.id, a.reputation_score, a.trusted_at IS NOT NULL AS trusted, a.registration_crowd
    """
)

_RECOMPUTE_ITEM_SCORES = text(
    """
    WITH truth AS (
        SELECT s.item_type, s.item_id, coalesce(sum(v.direction), 0)::int AS score
        FROM reputation.item_scores s
        LEFT JOIN reputation.votes v ON v.item_type = s.item_type AND v.item_id = s.item_id
        GROUP BY s.item_type, s.item_id
    )
    UPDATE reputation.item_scores s SET score = truth.score
    FROM truth
    WHERE s.item_type = truth.item_type AND s.item_id = truth.item_id AND s.score <> truth.score
    """
)
