"""All SQL of the reputation service."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import and_, delete, func, insert, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.common import auth
from services.common.errors import AlreadyExists, NotFound
from services.common.events import only_new
from services.common.weights import WEIGHTS_KEY
from services.reputation.tables import agents, api_keys, item_scores, processed_events, votes


@dataclass(frozen=True)
class AgentRow:
    id: str
    name: str
    tier: str
    reputation_score: int
    vote_count: int
    created_at: datetime
    last_vote_at: datetime | None
    flagged: bool
    flag_reason: str


log = logging.getLogger("reputation.store")


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
# `final` holds one event per (agent, item), as ON CONFLICT DO UPDATE needs.
_PROJECT_VOTES = text(
    """
    INSERT INTO reputation.votes (agent_id, item_type, item_id, direction, cast_at, earns)
    SELECT agent_id, item_type, item_id, direction, cast_at, earns
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS b(
        agent_id text, item_type text, item_id text, direction smallint, cast_at timestamptz, earns boolean
    )
    ON CONFLICT (agent_id, item_type, item_id)
    DO UPDATE SET direction = EXCLUDED.direction, cast_at = EXCLUDED.cast_at, earns = EXCLUDED.earns
    """
)


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


_AGENT_COLUMNS = [getattr(agents.c, f) for f in AgentRow.__dataclass_fields__]


class ReputationStore:
    def __init__(self, engine: AsyncEngine, redis: Redis) -> None:
        self.engine = engine
        # Reads run in autocommit: no BEGIN/ROLLBACK round trips around a
        # single SELECT (writes use engine.begin() and real transactions).
        self.reads = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.redis = redis

    async def announce_key_revoked(self, key_hash: bytes) -> bool:
        """Sets the key's revocation marker and announces it; records that it
        did. False when Redis could not be reached: announce_pending_revocations
        tries again until it is."""
        try:
            await auth.announce_key_revoked(self.redis, key_hash)
        except RedisError:
            log.warning("could not announce a revoked key yet; retrying until Redis answers")
            return False
        async with self.engine.begin() as conn:
            await conn.execute(
                update(api_keys).where(api_keys.c.key_hash == key_hash).values(revocation_announced_at=func.now())
            )
        return True

    async def announce_pending_revocations(self, limit: int = 500) -> int:
        """Announces revocations that have not reached Redis yet (oldest first); returns how many did."""
        async with self.reads.connect() as conn:
            pending = (
                (
                    await conn.execute(
                        select(api_keys.c.key_hash)
                        .where(api_keys.c.revoked_at.is_not(None), api_keys.c.revocation_announced_at.is_(None))
                        .order_by(api_keys.c.revoked_at)
                        .limit(limit)
                    )
                )
                .scalars()
                .all()
            )
        done = 0
        for key_hash in pending:
            if not await self.announce_key_revoked(key_hash):
                break
            done += 1
        if done:
            log.info("announced %d revocations that had not reached Redis", done)
        return done

    async def announce_agent_changed(self, agent_id: str, *, flag_cleared: bool = False) -> None:
        try:
            await auth.announce_agent_changed(self.redis, agent_id, flag_cleared=flag_cleared)
        except RedisError:
            log.warning("could not announce an agent change; other services see it within their cache TTL")

    async def create_agent(self, agent_id: str, name: str, key_hash: bytes) -> AgentRow:
        try:
            async with self.engine.begin() as conn:
                row = (
                    await conn.execute(insert(agents).values(id=agent_id, name=name).returning(*_AGENT_COLUMNS))
                ).one()
                await conn.execute(insert(api_keys).values(key_hash=key_hash, agent_id=agent_id))
        except IntegrityError:
            raise AlreadyExists(f"agent {agent_id!r} already exists; choose another id") from None
        return AgentRow(*row)

    async def get_agent(self, agent_id: str) -> AgentRow:
        async with self.reads.connect() as conn:
            row = (await conn.execute(select(*_AGENT_COLUMNS).where(agents.c.id == agent_id))).one_or_none()
        if row is None:
            raise NotFound(f"agent {agent_id!r} does not exist")
        return AgentRow(*row)

    async def agent_for_key(self, key_hash: bytes) -> AgentRow | None:
        query = (
            select(*_AGENT_COLUMNS)
            .join(api_keys, api_keys.c.agent_id == agents.c.id)
            .where(api_keys.c.key_hash == key_hash, api_keys.c.revoked_at.is_(None))
        )
        async with self.reads.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        return None if row is None else AgentRow(*row)

    async def update_agent(self, agent_id: str, tier: str | None, flagged: bool | None) -> AgentRow:
        values: dict[str, object] = {}
        if tier is not None:
            values["tier"] = tier
        if flagged is not None:
            values["flagged"] = flagged
            if flagged:
                # Keep the reason and time of an automatic flag; otherwise say who.
                values["flag_reason"] = func.coalesce(func.nullif(agents.c.flag_reason, ""), "flagged by an admin")
                values["flagged_at"] = func.coalesce(agents.c.flagged_at, func.now())
            else:
                values["flag_reason"] = ""
                values["flagged_at"] = None
        statement = update(agents).where(agents.c.id == agent_id).returning(*_AGENT_COLUMNS)
        if values:
            statement = statement.values(**values)
        else:  # nothing to change: still answer with the agent
            statement = statement.values(id=agents.c.id)
        async with self.engine.begin() as conn:
            row = (await conn.execute(statement)).one_or_none()
        if row is None:
            raise NotFound(f"agent {agent_id!r} does not exist")
        return AgentRow(*row)

    async def replace_key(self, agent_id: str, new_hash: bytes) -> bytes | None:
        """Revokes the agent's live key and stores the new one; returns the old hash."""
        async with self.engine.begin() as conn:
            exists = (
                await conn.execute(select(agents.c.id).where(agents.c.id == agent_id).with_for_update())
            ).one_or_none()
            if exists is None:
                raise NotFound(f"agent {agent_id!r} does not exist")
            old = (
                await conn.execute(
                    update(api_keys)
                    .where(api_keys.c.agent_id == agent_id, api_keys.c.revoked_at.is_(None))
                    .values(revoked_at=func.now())
                    .returning(api_keys.c.key_hash)
                )
            ).one_or_none()
            await conn.execute(insert(api_keys).values(key_hash=new_hash, agent_id=agent_id))
        return None if old is None else old[0]

    async def leaderboard(self, limit: int, after: tuple[int, str] | None) -> list[AgentRow]:
        query = select(*_AGENT_COLUMNS).order_by(agents.c.reputation_score.desc(), agents.c.id).limit(limit)
        if after is not None:
            score, agent_id = after
            query = query.where(
                or_(
                    agents.c.reputation_score < score,
                    and_(agents.c.reputation_score == score, agents.c.id > agent_id),
                )
            )
        async with self.reads.connect() as conn:
            return [AgentRow(*row) for row in await conn.execute(query)]

    async def count_flagged(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).where(agents.c.flagged))).scalar_one())

    async def flag(self, agent_id: str, reason: str) -> bool:
        """Flags the agent unless it already is; True when this call flagged it."""
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    update(agents)
                    .where(agents.c.id == agent_id, agents.c.flagged.is_(False))
                    .values(flagged=True, flag_reason=reason, flagged_at=func.now())
                    .returning(agents.c.id)
                )
            ).one_or_none()
        return row is not None

    async def apply_events(self, events: Iterable[VoteEvent], now: datetime) -> list[tuple[str, int, bool]]:
        """Applies vote events exactly once: vote counts and times, the vote
        projection, item scores, then the reputation of every agent whose
        score can have moved (the voters, and everyone who voted on an item
        whose sign flipped). Returns (agent, reputation, flagged) of those
        whose reputation changed."""
        events = list(events)
        if not events:
            return []
        async with self.engine.begin() as conn:
            fresh = await only_new(conn, processed_events, events)
            if not fresh:
                return []
            batch_agents = sorted({e.agent_id for e in fresh})
            flagged = {
                row.id: row.flagged
                for row in await conn.execute(
                    select(agents.c.id, agents.c.flagged).where(agents.c.id.in_(batch_agents))
                )
            }
            # agent id -> [votes added, first and last vote time in the batch]
            per_agent: dict[str, list] = {}
            final: dict[tuple[str, str, str], VoteEvent] = {}
            score_delta: dict[tuple[str, str], int] = {}
            for event in fresh:
                entry = per_agent.setdefault(event.agent_id, [0, None, None])
                item = (event.item_type, event.item_id)
                if event.type == "vote":
                    entry[0] += 1
                    at = event.voted_at.ToDatetime(tzinfo=UTC)
                    entry[1] = at if entry[1] is None else min(entry[1], at)
                    entry[2] = at if entry[2] is None else max(entry[2], at)
                    score_delta[item] = score_delta.get(item, 0) + event.direction
                else:
                    entry[0] -= 1
                    score_delta[item] = score_delta.get(item, 0) - event.direction
                final[(event.agent_id, *item)] = event

            counted = [
                {"id": agent_id, "n": n, "first_at": _iso(first), "last_at": _iso(last)}
                for agent_id, (n, first, last) in sorted(per_agent.items())
            ]
            await conn.execute(_COUNT_AGENT_VOTES, {"rows": json.dumps(counted)})
            await self._project_votes(conn, final, flagged)
            flipped = await self._apply_score_deltas(conn, score_delta)
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

    async def _project_votes(self, conn, final: dict, flagged: dict[str, bool]) -> None:  # type: ignore[no-untyped-def]
        gone = [key for key, event in final.items() if event.type != "vote"]
        cast = [
            {
                "agent_id": event.agent_id,
                "item_type": event.item_type,
                "item_id": event.item_id,
                "direction": event.direction,
                "cast_at": event.voted_at.ToDatetime(tzinfo=UTC).isoformat(),
                "earns": not flagged.get(event.agent_id, False),
            }
            for event in final.values()
            if event.type == "vote"
        ]
        if gone:
            await conn.execute(
                delete(votes).where(tuple_(votes.c.agent_id, votes.c.item_type, votes.c.item_id).in_(gone))
            )
        if cast:
            await conn.execute(_PROJECT_VOTES, {"rows": json.dumps(cast)})

    async def _apply_score_deltas(self, conn, deltas: dict[tuple[str, str], int]) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
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
        flipped = []
        for item_type, item_id, score in new_scores:
            before = score - changed[(item_type, item_id)]
            if _sign(before) != _sign(score):
                flipped.append((item_type, item_id))
        return flipped

    async def _recompute(self, conn, agent_ids: list[str] | None, now: datetime) -> list[tuple[str, int, bool]]:  # type: ignore[no-untyped-def]
        rows = await conn.execute(_RECOMPUTE, {"all": agent_ids is None, "ids": agent_ids or [], "now": now})
        return [(row.id, row.reputation_score, False) for row in rows]

    async def recompute_agents(self, agent_ids: list[str], now: datetime) -> list[tuple[str, int, bool]]:
        async with self.engine.begin() as conn:
            return await self._recompute(conn, agent_ids, now)

    async def recompute_all(self, now: datetime) -> list[tuple[str, int, bool]]:
        """The periodic set-based pass that corrects any drift: item scores
        from the projection, then every unflagged agent's reputation."""
        async with self.engine.begin() as conn:
            await conn.execute(_RECOMPUTE_ITEM_SCORES)
            return await self._recompute(conn, None, now)

    async def all_weights_inputs(self) -> list[tuple[str, int, bool]]:
        async with self.reads.connect() as conn:
            result = await conn.execute(select(agents.c.id, agents.c.reputation_score, agents.c.flagged))
            return [tuple(row) for row in result]

    async def publish_weights(self, weights: dict[str, float]) -> None:
        """Writes trending weights for the ranking service (best effort: the
        periodic pass republishes them all)."""
        if not weights:
            return
        try:
            items = list(weights.items())
            for start in range(0, len(items), 5000):
                await self.redis.hset(WEIGHTS_KEY, mapping=dict(items[start : start + 5000]))
        except RedisError:
            log.warning("could not publish %d trending weights; the next full pass will", len(weights))


def _sign(value: int) -> int:
    return (value > 0) - (value < 0)


# Reputation for the given agents (or all, with :all), skipping flagged ones:
# they earn nothing while flagged, so their score stays where it was.
_RECOMPUTE = text(
    """
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
               LEAST(1000, coalesce(st.votes_cast, 0) + coalesce(st.agreements, 0) + CASE
                   WHEN t.first_vote_at IS NULL THEN 0
                   -- whole days since the first vote (never negative), a tenth of a point each
                   ELSE LEAST(100, GREATEST(0, floor(extract(epoch FROM (CAST(:now AS timestamptz) - t.first_vote_at))
                                                     / 86400)::int) / 10)
               END) AS score
        FROM target t LEFT JOIN stats st ON st.agent_id = t.id
    )
    UPDATE reputation.agents a SET reputation_score = scored.score
    FROM scored
    WHERE a.id = scored.id AND a.reputation_score <> scored.score
    RETURNING a.id, a.reputation_score
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
