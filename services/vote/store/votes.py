"""The votes table, the daily usage table and the outbox rows written with them."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.vote.model import Counts, VoteRow
from services.vote.rings import RecentVote
from services.vote.tables import daily_usage, outbox, votes

# The up and down votes of several items: one index-only count of each
# item's range (LATERAL makes it a nested loop whatever the planner
# estimates), so the cost follows those items' votes, not the table. The
# row-value IN list this replaced, `(item_type, item_id) IN ((...), ...)`, was
# planned as a scan of the whole index testing N ORs per entry: 188 ms
# against 4-5 ms for 158 items at 93,000 votes (a join on the arrays still
# chose a merge join over the whole index: 25 ms).
_COUNTS_FOR = text(
    """
    SELECT wanted.item_type, wanted.item_id, counted.up, counted.down
    FROM unnest(CAST(:item_types AS text[]), CAST(:item_ids AS text[])) AS wanted(item_type, item_id)
    CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE v.direction = 1) AS up, count(*) FILTER (WHERE v.direction = -1) AS down
        FROM vote.votes AS v
        WHERE v.item_type = wanted.item_type AND v.item_id = wanted.item_id
    ) AS counted
    """
)

# One statement (atomic on its own): the votes, the agents' daily usage, and
# an outbox event for each vote actually inserted, in the order of the votes'
# ids. One round trip per batch.
_INSERT_VOTES_WITH_EVENTS = text(
    """
    WITH input AS (
        SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS t(
            agent_id text, item_type text, item_id text, direction smallint, comment text, rating smallint,
            created_at timestamptz, event jsonb
        )
    ), inserted AS (
        INSERT INTO vote.votes (agent_id, item_type, item_id, direction, comment, rating, created_at)
        SELECT agent_id, item_type, item_id, direction, comment, rating, created_at FROM input
        ON CONFLICT ON CONSTRAINT votes_one_per_agent_item DO NOTHING
        RETURNING agent_id, item_type, item_id, id, created_at
    ), counted AS (
        INSERT INTO vote.daily_usage AS u (agent_id, day, used)
        SELECT agent_id, (created_at AT TIME ZONE 'UTC')::date, count(*) FROM inserted GROUP BY 1, 2
        ON CONFLICT (agent_id, day) DO UPDATE SET used = u.used + EXCLUDED.used
    ), queued AS (
        INSERT INTO vote.outbox (payload)
        SELECT i.event FROM inserted v JOIN input i USING (agent_id, item_type, item_id) ORDER BY v.id
    )
    SELECT agent_id, item_type, item_id, id, created_at FROM inserted
    """
)

# The newest votes, for the coordinated-voting detection: at most :limit
# rows, read as a range of the primary key below its maximum (ids follow
# insertion; one index lookup finds the maximum), so a pass never scans the
# table, however old it is, and needs no index on created_at that every
# vote would pay for. Ids burnt by refused duplicates only make the range
# hold fewer rows.
_RECENT_VOTES = text(
    """
    SELECT agent_id, item_type, item_id, direction, CAST(extract(epoch FROM created_at) AS float8)
    FROM vote.votes
    WHERE id > (SELECT coalesce(max(id), 0) FROM vote.votes) - :limit AND created_at >= :since
    """
)

_VOTE_COLUMNS = [
    votes.c.agent_id,
    votes.c.item_type,
    votes.c.item_id,
    votes.c.direction,
    votes.c.comment,
    votes.c.rating,
    votes.c.created_at,
    votes.c.id,
]


class VotesTable:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # Reads run in autocommit: no BEGIN/ROLLBACK round trips around a
        # single SELECT (writes use engine.begin() and real transactions).
        self.reads = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def insert_batch(
        self, batch: Sequence[tuple[VoteRow, dict[str, Any]]]
    ) -> dict[tuple[str, str, str], VoteRow]:
        """Inserts the votes and their outbox events in one transaction;
        returns the stored votes (with their ids) by VoteRow.key. The same
        agent and item twice in one batch: the first wins."""
        wanted: dict[tuple[str, str, str], tuple[VoteRow, dict[str, Any]]] = {}
        for vote, event in batch:
            wanted.setdefault(vote.key, (vote, event))
        # The batch travels as one JSON document: json.dumps is C code, where
        # eight typed array parameters were dumped element by element in
        # Python (~5% of the service's CPU).
        rows = [
            {
                "agent_id": vote.agent_id,
                "item_type": vote.item_type,
                "item_id": vote.item_id,
                "direction": vote.direction,
                "comment": vote.comment,
                "rating": vote.rating,
                "created_at": vote.created_at.isoformat(),
                "event": event,
            }
            for vote, event in wanted.values()
        ]
        async with self.reads.connect() as conn:
            result = await conn.execute(_INSERT_VOTES_WITH_EVENTS, {"rows": json.dumps(rows)})
            stored = {}
            for agent_id, item_type, item_id, vote_id, created_at in result:
                key = (agent_id, item_type, item_id)
                stored[key] = VoteRow(**{**wanted[key][0].__dict__, "id": vote_id, "created_at": created_at})
        return stored

    async def delete_vote(
        self, agent_id: str, item_type: str, item_id: str, event_for: Callable[[VoteRow], dict[str, Any]]
    ) -> VoteRow | None:
        """Deletes the agent's vote on the item and queues `event_for(vote)`
        in the same transaction; None when there was no vote."""
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    delete(votes)
                    .where(votes.c.agent_id == agent_id, votes.c.item_type == item_type, votes.c.item_id == item_id)
                    .returning(votes.c.direction, votes.c.comment, votes.c.rating, votes.c.created_at, votes.c.id)
                )
            ).one_or_none()
            if row is None:
                return None
            removed = VoteRow(
                agent_id, item_type, item_id, row.direction, row.comment, row.rating, row.created_at, row.id
            )
            await conn.execute(insert(outbox).values(payload=event_for(removed)))
        return removed

    async def list_votes(
        self,
        *,
        agent_id: str | None = None,
        item: tuple[str, str] | None = None,
        reviews_only: bool = False,
        limit: int,
        after: tuple[datetime, int] | None,
    ) -> list[VoteRow]:
        """Votes newest first (keyset on created_at, id), by agent or by item."""
        query = select(*_VOTE_COLUMNS).order_by(votes.c.created_at.desc(), votes.c.id.desc()).limit(limit)
        if agent_id is not None:
            query = query.where(votes.c.agent_id == agent_id)
        if item is not None:
            query = query.where(votes.c.item_type == item[0], votes.c.item_id == item[1])
        if reviews_only:
            query = query.where(or_(votes.c.comment != "", votes.c.rating.is_not(None)))
        if after is not None:
            at, last_id = after
            query = query.where(or_(votes.c.created_at < at, and_(votes.c.created_at == at, votes.c.id < last_id)))
        async with self.reads.connect() as conn:
            return [VoteRow(*row) for row in await conn.execute(query)]

    async def counts_for(self, items: Sequence[tuple[str, ...]]) -> dict[tuple[str, ...], Counts]:
        """The items' counts as the table has them (items without votes are absent)."""
        if not items:
            return {}
        params = {"item_types": [item[0] for item in items], "item_ids": [item[1] for item in items]}
        async with self.reads.connect() as conn:
            return {(t, i): Counts(up, down) for t, i, up, down in await conn.execute(_COUNTS_FOR, params)}

    async def counts_many(self, items: list[tuple[str, str]]) -> dict[tuple[str, str], Counts]:
        """Counts of several items from the table, in one query, zero included.

        The live feed uses this rather than the Redis copy: an event is only
        relayed after its transaction committed, but its Redis bump may still
        be on its way."""
        unique = list(dict.fromkeys(items))
        found = await self.counts_for(unique)
        return {item: found.get(item, Counts(0, 0)) for item in unique}

    async def recent_votes(self, since: datetime, limit: int) -> list[RecentVote]:
        """Votes cast since `since`, at most the `limit` newest (see _RECENT_VOTES)."""
        async with self.reads.connect() as conn:
            result = await conn.execute(_RECENT_VOTES, {"since": since, "limit": limit})
            return [RecentVote(*row) for row in result]

    async def votes_on_day(self, agents: Sequence[str], day: date) -> dict[str, int]:
        """Votes each agent cast on a UTC day (the append-only usage:
        retracted votes still count)."""
        query = select(daily_usage.c.agent_id, daily_usage.c.used).where(
            daily_usage.c.agent_id.in_(sorted(set(agents))), daily_usage.c.day == day
        )
        async with self.reads.connect() as conn:
            return {agent: used for agent, used in await conn.execute(query)}

    async def prune_daily_usage(self, keep_days: int = 7) -> int:
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(daily_usage).where(daily_usage.c.day < func.current_date() - keep_days))
        return result.rowcount
