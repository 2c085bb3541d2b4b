"""Reconciliation of the reputation service's vote projection with the votes table.

Its projection (reputation.votes, agents.vote_count) follows the vote events,
applied exactly once in any order; it drifts only if events are lost for good
(trimmed from the stream before the group read them) or a bug. A pass takes
the next page of agents (in id order, resuming where the last stopped): of
the agents table, and of the vote service's agents with a live vote
(VoteLedgerService.ListVoters), so an agent the table lacks is checked too
(its rows and the items' scores are repaired as the projection applies an
unknown agent's events; it has no vote count to move). It computes each
one's digest of its projected votes, and asks the vote service
(VoteLedgerService.CheckAgentVotes: this service never reads vote.votes) for
the true count and digest, and the true votes of the settled agents whose
digest differs. It then repairs each such agent's rows, compare-and-set:

- only agents the vote service reports settled (no event of theirs left in
  the outbox: every group applied every event of theirs committed before the
  truth was read), and our rows were read before the truth was asked for;
- a ghost row is deleted, and a direction rewritten, only if the row still
  holds the event id it was read with; a missing vote is inserted only if no
  row and no newer tombstone came meanwhile (a consumer batch wins);
- the agent's vote count and the items' scores move by what was changed,
  and the agent's reputation is recomputed (the periodic recompute corrects
  the co-voters whose agreements moved).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime

import grpc
from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from aimusicstore.vote.v1 import vote_ledger_service_pb2, vote_ledger_service_pb2_grpc
from services.common.vote_order import LIVE_VOTES_DIGEST_SQL
from services.common.vote_reconcile import (
    REPAIR_KINDS,
    Key,
    PageSize,
    next_after,
    settled_truth,
    vote_drift,
    voters_after,
)
from services.reputation.formula import vote_earns
from services.reputation.store.projection import VoteProjection
from services.reputation.store.rows import AgentScore

log = logging.getLogger("reputation.reconcile")

VOTES_REPAIRED = Counter(
    "reputation_votes_repaired_total",
    "Projected votes (rows deleted, inserted or rewritten) and vote counts the reputation service repaired "
    "from the votes table",
    ["kind"],
)
for _kind in ("vote_count", *REPAIR_KINDS):  # exported at 0 before the first repair
    VOTES_REPAIRED.labels(_kind)

# The next page of agents, or of the vote service's next page of voters
# (:voters, all after :after), with their digests and when they were read.
_PAGE = text(
    f"""
    WITH page AS (
        SELECT id FROM (
            (SELECT id FROM reputation.agents WHERE id > :after ORDER BY id LIMIT :n)
            UNION
            SELECT unnest(CAST(:voters AS text[]))
        ) p
        ORDER BY id LIMIT :n
    )
    SELECT p.id, coalesce(a.vote_count, 0) AS vote_count, coalesce(a.flagged, false) AS flagged, s.digest,
           now() AS read_at
    FROM page p
    LEFT JOIN reputation.agents a ON a.id = p.id
    CROSS JOIN LATERAL (
        SELECT {LIVE_VOTES_DIGEST_SQL} AS digest FROM reputation.votes v WHERE v.agent_id = p.id
    ) s
    ORDER BY p.id
    """
)
_OWN_DIGEST = text(f"SELECT {LIVE_VOTES_DIGEST_SQL} FROM reputation.votes v WHERE v.agent_id = :a")
_OWN_ROWS = text("SELECT item_type, item_id, direction, event_id FROM reputation.votes WHERE agent_id = :a")
_DELETE_GHOSTS = text(
    """
    DELETE FROM reputation.votes v USING jsonb_to_recordset(CAST(:rows AS jsonb))
        AS b(item_type text, item_id text, event_id bigint)
    WHERE v.agent_id = :a AND (v.item_type, v.item_id, v.event_id) = (b.item_type, b.item_id, b.event_id)
    RETURNING v.item_type, v.item_id, v.direction
    """
)
_REWRITE = text(
    """
    UPDATE reputation.votes v SET direction = b.direction
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
        AS b(item_type text, item_id text, event_id bigint, direction smallint)
    WHERE v.agent_id = :a AND (v.item_type, v.item_id, v.event_id) = (b.item_type, b.item_id, b.event_id)
    RETURNING v.item_type, v.item_id, b.direction
    """
)
_INSERT_MISSING = text(
    """
    INSERT INTO reputation.votes (agent_id, item_type, item_id, direction, cast_at, earns, event_id)
    SELECT :a, b.item_type, b.item_id, b.direction, b.cast_at, :earns, 0
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
        AS b(item_type text, item_id text, direction smallint, cast_at timestamptz)
    WHERE NOT EXISTS (  -- a retraction applied since the page was read (the vote's own, committed after the truth)
        SELECT 1 FROM reputation.vote_tombstones t
        WHERE (t.agent_id, t.item_type, t.item_id) = (:a, b.item_type, b.item_id) AND t.retracted_at >= :read_at
    )
    ON CONFLICT (agent_id, item_type, item_id) DO NOTHING
    RETURNING item_type, item_id, direction
    """
)
_ADD_SCORES = text(
    """
    INSERT INTO reputation.item_scores AS s (item_type, item_id, score)
    SELECT item_type, item_id, delta FROM jsonb_to_recordset(CAST(:rows AS jsonb))
        AS b(item_type text, item_id text, delta int)
    ON CONFLICT (item_type, item_id) DO UPDATE SET score = s.score + EXCLUDED.score
    """
)
_ADD_VOTE_COUNT = text("UPDATE reputation.agents SET vote_count = greatest(vote_count + :n, 0) WHERE id = :a")
_SET_VOTE_COUNT = text("UPDATE reputation.agents SET vote_count = :n WHERE id = :a AND vote_count = :was")


class AgentVoteReconciler:
    def __init__(
        self,
        engine: AsyncEngine,
        ledger: vote_ledger_service_pb2_grpc.VoteLedgerServiceStub,
        projection: VoteProjection,
        page_size: int,
    ) -> None:
        self.engine = engine
        self.ledger = ledger
        self.projection = projection
        self.pages = PageSize(page_size)
        self.after = ""  # the last agent id checked; the sweep resumes after it

    async def reconcile(self, now: datetime) -> tuple[int, list[AgentScore]]:
        """One pass over the next page of agents; returns the repairs made and
        the agents whose reputation moved."""
        start, size = self.after, self.pages.size
        try:
            voters = await voters_after(self.ledger, start, size)
            async with self.engine.connect() as conn:
                params = {"after": start, "n": size, "voters": voters}
                page = (await conn.execute(_PAGE, params)).all()
            self.after = next_after([r.id for r in page], size)
            if not page:
                return 0, []
            settled = await settled_truth(self.ledger, [(r.id, r.digest) for r in page])
        except grpc.aio.AioRpcError as exc:
            if self.pages.timed_out(exc):
                self.after = start  # the same agents again, fewer at a time
            raise
        self.pages.succeeded()
        ours = {r.id: r for r in page}
        repaired, moved = 0, []
        for truth in settled.values():
            mine = ours.get(truth.agent_id)
            if mine is None:
                continue
            fixed = 0
            if truth.digest != mine.digest and truth.votes_included:
                fixed += await self._repair_rows(mine.id, mine.flagged, mine.digest, mine.read_at, truth.votes)
            elif truth.digest == mine.digest and truth.vote_count != mine.vote_count:
                async with self.engine.begin() as conn:
                    params = {"a": mine.id, "n": truth.vote_count, "was": mine.vote_count}
                    if (await conn.execute(_SET_VOTE_COUNT, params)).rowcount:
                        VOTES_REPAIRED.labels("vote_count").inc()
                        fixed += 1
            if fixed:
                repaired += fixed
                moved.append(mine.id)
        changed = await self.projection.recompute_agents(moved, now) if moved else []
        if repaired:
            log.warning(
                "vote projection repaired from the votes table",
                extra={"repaired": repaired, "agents": moved[:5], "agents_repaired": len(moved)},
            )
        return repaired, changed

    async def _repair_rows(
        self,
        agent_id: str,
        flagged: bool,
        digest: str,
        read_at: datetime,
        truth_votes: Sequence[vote_ledger_service_pb2.LiveVote],
    ) -> int:
        async with self.engine.begin() as conn:
            if (await conn.execute(_OWN_DIGEST, {"a": agent_id})).scalar_one() != digest:
                return 0  # a batch changed the agent's votes since the page was read: the next sweep looks again
            own = {(r.item_type, r.item_id): r for r in await conn.execute(_OWN_ROWS, {"a": agent_id})}
            drift = vote_drift({key: r.direction for key, r in own.items()}, truth_votes)
            ghosts = [{"item_type": t, "item_id": i, "event_id": own[(t, i)].event_id} for t, i in drift.ghosts]
            rewrites = [
                {
                    "item_type": v.item_type,
                    "item_id": v.item_id,
                    "event_id": own[(v.item_type, v.item_id)].event_id,
                    "direction": v.direction,
                }
                for v in drift.rewrites
            ]
            missing = [
                {"item_type": v.item_type, "item_id": v.item_id, "direction": v.direction, "cast_at": v.voted_at}
                for v in drift.missing
            ]
            deltas: dict[Key, int] = {}
            count = 0
            if ghosts:
                for r in await conn.execute(_DELETE_GHOSTS, {"a": agent_id, "rows": json.dumps(ghosts)}):
                    deltas[(r.item_type, r.item_id)] = deltas.get((r.item_type, r.item_id), 0) - r.direction
                    count -= 1
                    VOTES_REPAIRED.labels("ghost").inc()
            if rewrites:
                old = {(r["item_type"], r["item_id"]): own[(r["item_type"], r["item_id"])].direction for r in rewrites}
                for r in await conn.execute(_REWRITE, {"a": agent_id, "rows": json.dumps(rewrites)}):
                    key = (r.item_type, r.item_id)
                    deltas[key] = deltas.get(key, 0) + r.direction - old[key]
                    VOTES_REPAIRED.labels("direction").inc()
            if missing:
                params = {"a": agent_id, "earns": vote_earns(flagged), "read_at": read_at, "rows": json.dumps(missing)}
                for r in await conn.execute(_INSERT_MISSING, params):
                    deltas[(r.item_type, r.item_id)] = deltas.get((r.item_type, r.item_id), 0) + r.direction
                    count += 1
                    VOTES_REPAIRED.labels("missing").inc()
            if count:
                await conn.execute(_ADD_VOTE_COUNT, {"a": agent_id, "n": count})
            scores = [{"item_type": t, "item_id": i, "delta": d} for (t, i), d in sorted(deltas.items()) if d]
            if scores:
                await conn.execute(_ADD_SCORES, {"rows": json.dumps(scores)})
        return len(deltas)
