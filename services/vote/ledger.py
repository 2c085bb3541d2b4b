"""VoteLedgerService (internal): the votes table's truth for the consumers'
reconciliation of their projections (they never read vote.votes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from aimusicstore.vote.v1 import vote_ledger_service_pb2, vote_ledger_service_pb2_grpc
from services.common.credentials import require_service
from services.common.errors import InvalidArgument
from services.common.grpc_types import Context
from services.common.vote_order import LIVE_VOTES_DIGEST_SQL

MAX_ITEMS = 1000

# One statement, one snapshot: each item's live votes (an index range of
# votes_item_idx) and whether the outbox still holds an event of it. An
# outbox row goes only once every consumer group has applied it
# (services/vote/store/outbox.py), so an item without one has had every
# event committed before this snapshot applied by every group. The outbox
# check scans the outbox once (no index on the payload: it adds nothing to
# the vote path); the outbox keeps about a minute of events, unless a
# consumer is behind.
_ITEM_TRUTH = text(
    """
    WITH wanted AS (
        SELECT * FROM unnest(CAST(:item_types AS text[]), CAST(:item_ids AS text[])) AS w(item_type, item_id)
    ), in_flight AS (
        SELECT DISTINCT o.payload->>'item_type' AS item_type, o.payload->>'item_id' AS item_id
        FROM vote.outbox o
        JOIN wanted w ON w.item_type = o.payload->>'item_type' AND w.item_id = o.payload->>'item_id'
    )
    SELECT w.item_type, w.item_id, c.up, c.down, c.rating_sum, c.rating_count, c.reviews,
           NOT EXISTS (SELECT 1 FROM in_flight f WHERE (f.item_type, f.item_id) = (w.item_type, w.item_id)) AS settled
    FROM wanted w
    CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE v.direction = 1) AS up, count(*) FILTER (WHERE v.direction = -1) AS down,
               coalesce(sum(v.rating), 0) AS rating_sum, count(v.rating) AS rating_count,
               count(*) FILTER (WHERE v.comment <> '' OR v.rating IS NOT NULL) AS reviews
        FROM vote.votes v
        WHERE v.item_type = w.item_type AND v.item_id = w.item_id
    ) AS c
    """
)


# Per agent: its live votes' count and digest (services/common/vote_order.py,
# the reputation service computes the same over its projection), and
# whether the outbox still holds an event of it (as for items above).
_AGENT_SUMMARY = text(
    f"""
    WITH wanted AS (
        SELECT * FROM unnest(CAST(:agent_ids AS text[])) AS w(agent_id)
    ), in_flight AS (
        SELECT DISTINCT o.payload->>'agent_id' AS agent_id
        FROM vote.outbox o JOIN wanted w ON w.agent_id = o.payload->>'agent_id'
    )
    SELECT w.agent_id, s.n, s.digest,
           NOT EXISTS (SELECT 1 FROM in_flight f WHERE f.agent_id = w.agent_id) AS settled
    FROM wanted w
    CROSS JOIN LATERAL (
        SELECT count(*) AS n, {LIVE_VOTES_DIGEST_SQL} AS digest FROM vote.votes v WHERE v.agent_id = w.agent_id
    ) AS s
    """
)
_AGENT_VOTES = text(
    """
    SELECT agent_id, item_type, item_id, direction, created_at FROM vote.votes
    WHERE agent_id = ANY(CAST(:agent_ids AS text[]))
    """
)
MAX_VOTES_PER_REPLY = 10_000

# The next page of agents with a live vote, in id order: a skip scan of
# votes_one_per_agent_item (agent_id leads it), one index probe per agent
# (the next id after the last), however many votes each has. A DISTINCT read
# every vote of the page's agents: 200 agents of 1,500 votes each missed the
# 2 s internal deadline under load (make bench, batch-max).
_VOTERS = text(
    """
    WITH RECURSIVE voters(agent_id, n) AS (
        (SELECT agent_id, 1 FROM vote.votes WHERE agent_id > :after ORDER BY agent_id LIMIT 1)
        UNION ALL
        SELECT (SELECT v.agent_id FROM vote.votes v WHERE v.agent_id > voters.agent_id ORDER BY v.agent_id LIMIT 1),
            voters.n + 1
        FROM voters WHERE voters.agent_id IS NOT NULL AND voters.n < :n
    )
    SELECT agent_id FROM voters WHERE agent_id IS NOT NULL
    """
)


@dataclass(frozen=True, slots=True)
class AgentTruth:
    agent_id: str
    vote_count: int
    digest: str
    settled: bool
    votes: list[tuple[str, str, int, str]] | None  # (item_type, item_id, direction, voted_at) when included


@dataclass(frozen=True, slots=True)
class ItemTruth:
    item_type: str
    item_id: str
    up: int
    down: int
    rating_sum: int
    rating_count: int
    reviews: int
    settled: bool


class VoteLedger:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.reads = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def item_truth(self, items: Sequence[tuple[str, str]]) -> list[ItemTruth]:
        """Per item (in the given order): its live votes' counts, and whether it is settled."""
        if not items:
            return []
        params = {"item_types": [t for t, _ in items], "item_ids": [i for _, i in items]}
        async with self.reads.connect() as conn:
            found = {(r.item_type, r.item_id): r for r in await conn.execute(_ITEM_TRUTH, params)}
        return [
            ItemTruth(t, i, int(r.up), int(r.down), int(r.rating_sum), int(r.rating_count), int(r.reviews), r.settled)
            for (t, i), r in ((item, found[item]) for item in items)
        ]

    async def voters(self, after: str, page_size: int) -> list[str]:
        """The next page of agents with a live vote, after `after`, in id order."""
        async with self.reads.connect() as conn:
            return list((await conn.execute(_VOTERS, {"after": after, "n": page_size})).scalars())


async def agent_truth(engine: AsyncEngine, agents: Sequence[tuple[str, str]]) -> list[AgentTruth]:
    """Per (agent, the caller's digest), in order: the agent's count, digest
    and settledness, and its votes when settled and differing (one snapshot)."""
    if not agents:
        return []
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            summary = {r.agent_id: r for r in await conn.execute(_AGENT_SUMMARY, {"agent_ids": [a for a, _ in agents]})}
            room, wanted = MAX_VOTES_PER_REPLY, []
            for agent_id, theirs in agents:
                row = summary[agent_id]
                if row.settled and row.digest != theirs and row.n <= room:
                    wanted.append(agent_id)
                    room -= row.n
            votes: dict[str, list[tuple[str, str, int, str]]] = {a: [] for a in wanted}
            if wanted:
                for r in await conn.execute(_AGENT_VOTES, {"agent_ids": wanted}):
                    votes[r.agent_id].append((r.item_type, r.item_id, int(r.direction), r.created_at.isoformat()))
    return [AgentTruth(a, int(summary[a].n), summary[a].digest, summary[a].settled, votes.get(a)) for a, _ in agents]


class VoteLedgerService(vote_ledger_service_pb2_grpc.VoteLedgerServiceServicer):
    """Internal: for the other services only (their service credential)."""

    def __init__(self, ledger: VoteLedger, service_credential: str) -> None:
        self.ledger = ledger
        self.service_credential = service_credential

    async def CountItemVotes(  # noqa: N802 - the proto method name
        self, request: vote_ledger_service_pb2.CountItemVotesRequest, context: Context
    ) -> vote_ledger_service_pb2.CountItemVotesResponse:
        require_service(context, self.service_credential)
        if len(request.items) > MAX_ITEMS:
            raise InvalidArgument("items", f"at most {MAX_ITEMS}")
        items = list(dict.fromkeys((item.item_type, item.item_id) for item in request.items))
        truth = await self.ledger.item_truth(items)
        return vote_ledger_service_pb2.CountItemVotesResponse(
            counts=[
                vote_ledger_service_pb2.ItemVoteCounts(
                    item_type=t.item_type,
                    item_id=t.item_id,
                    up_votes=t.up,
                    down_votes=t.down,
                    rating_sum=t.rating_sum,
                    rating_count=t.rating_count,
                    review_count=t.reviews,
                    settled=t.settled,
                )
                for t in truth
            ]
        )

    async def CheckAgentVotes(  # noqa: N802 - the proto method name
        self, request: vote_ledger_service_pb2.CheckAgentVotesRequest, context: Context
    ) -> vote_ledger_service_pb2.CheckAgentVotesResponse:
        require_service(context, self.service_credential)
        if len(request.agents) > MAX_ITEMS:
            raise InvalidArgument("agents", f"at most {MAX_ITEMS}")
        agents = list({a.agent_id: a.digest for a in request.agents}.items())
        truth = await agent_truth(self.ledger.engine, agents)
        return vote_ledger_service_pb2.CheckAgentVotesResponse(
            agents=[
                vote_ledger_service_pb2.AgentVotes(
                    agent_id=t.agent_id,
                    vote_count=t.vote_count,
                    digest=t.digest,
                    settled=t.settled,
                    votes_included=t.votes is not None,
                    votes=[
                        vote_ledger_service_pb2.LiveVote(item_type=i, item_id=j, direction=d, voted_at=at)
                        for i, j, d, at in t.votes or []
                    ],
                )
                for t in truth
            ]
        )

    async def ListVoters(  # noqa: N802 - the proto method name
        self, request: vote_ledger_service_pb2.ListVotersRequest, context: Context
    ) -> vote_ledger_service_pb2.ListVotersResponse:
        require_service(context, self.service_credential)
        if not 1 <= request.page_size <= MAX_ITEMS:
            raise InvalidArgument("page_size", f"1 to {MAX_ITEMS}")
        voters = await self.ledger.voters(request.after_agent_id, request.page_size)
        return vote_ledger_service_pb2.ListVotersResponse(agent_ids=voters)
