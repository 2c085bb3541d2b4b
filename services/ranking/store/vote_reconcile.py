"""Reconciliation of the ranking service's vote projection with the votes table.

The projection (ranking.votes: per agent and item the live vote with its
weights and event id, or a tombstone) and what follows it (the daily
tallies, raw and chart-weighted, the live chart windows' pending changes
in ranking.chart_deltas, trending) are applied exactly once in any order;
they drift only if events are lost for good (trimmed from the stream before
the group read them) or a bug. The item counts have their own
reconciliation (services/ranking/store/reconcile.py).

A pass takes the next page of agents (in id order, resuming where the
last stopped) the projection knows (with a live vote or a tombstone) or the
vote service lists as having a live vote (VoteLedgerService.ListVoters),
computes each one's digest of its projected votes, and asks the vote
service for the truth (services/common/vote_reconcile.py, shared with the
reputation service's reconciler: only settled agents, our digest read
before the truth was asked for and still the same when the repair runs).
The repair of an agent applies synthesized events through the projection's
own code path (VoteProjection.repair_votes), so the tallies, the windows'
changes and trending move with the rows, with the agent's current weights:

- a ghost (projected, not in the table): a retraction with the id after the
  row's event id. It takes the row out only if the row still holds that
  event (a newer vote projected meanwhile stands), and leaves a tombstone
  no real event of the key needs to beat: the vote's own retraction has a
  higher id still, and any later vote of the key a higher one again;
- a wrong direction: a vote with the table's direction and cast time and the
  id after the row's (it replaces that row only, as a late re-vote does);
- a missing vote: a vote with the id after the key's tombstone (0 without
  one): any retraction applied before the truth was read is older than the
  table's vote, so this stands; a key whose tombstone was written since the
  agent's digest was read (perhaps the retraction of this very vote) is left
  for the next sweep.

Synthesized rows hold no rating or review (the table's LiveVote does not
carry them): a retraction of the vote takes back what its event carries,
as for rows projected before those were kept. An agent the projection
holds nothing of (neither a vote nor a tombstone: every event of theirs
lost) is visited through the vote service's list, and its votes are
missing votes as above.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import grpc
from prometheus_client import Counter
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aimusicstore.vote.v1 import vote_ledger_service_pb2, vote_ledger_service_pb2_grpc
from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.common.jobs import describe
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
from services.ranking import vote_batch
from services.ranking.vote_batch import ProjectedVote

log = logging.getLogger("ranking.reconcile")

VOTES_REPAIRED = Counter(
    "ranking_votes_repaired_total",
    "Projected votes the ranking service repaired from the votes table (ghosts retracted, directions rewritten, "
    "missing votes applied), with their daily tallies, live chart windows and trending",
    ["kind"],
)
for _kind in REPAIR_KINDS:  # exported at 0 before the first repair (an alert rule reads it)
    VOTES_REPAIRED.labels(_kind)
AGENTS_REWEIGHED = Counter(
    "ranking_agents_reweighed_by_reconciliation_total",
    "Agents whose projected votes held a chart weight other than the published one (a change of standing "
    "announced while no ranking replica listened), re-weighed by the projection reconciliation",
)

# The next page of agents with a projected vote or a tombstone, or in the
# vote service's next page of voters (:voters, all after :after), with their
# digests and when they were read (a tombstone written since is a
# retraction the truth may not hold yet).
_PAGE = text(
    f"""
    WITH agents AS (
        SELECT agent_id FROM (
            (SELECT DISTINCT agent_id FROM ranking.votes WHERE agent_id > :after ORDER BY agent_id LIMIT :n)
            UNION
            (SELECT DISTINCT agent_id FROM ranking.vote_tombstones WHERE agent_id > :after ORDER BY agent_id LIMIT :n)
            UNION
            SELECT unnest(CAST(:voters AS text[]))
        ) a
        ORDER BY agent_id LIMIT :n
    )
    SELECT a.agent_id, s.digest, now() AS read_at
    FROM agents a
    CROSS JOIN LATERAL (
        SELECT {LIVE_VOTES_DIGEST_SQL} AS digest FROM ranking.votes v WHERE v.agent_id = a.agent_id
    ) s
    ORDER BY a.agent_id
    """
)
# The chart weights the page's agents' projected votes hold (through the
# primary key, which leads with the agent).
_HELD_WEIGHTS = text("SELECT DISTINCT agent_id, chart_weight FROM ranking.votes WHERE agent_id = ANY(:ids)")
_OWN_DIGEST = text(f"SELECT {LIVE_VOTES_DIGEST_SQL} FROM ranking.votes v WHERE v.agent_id = :a")
_OWN_ROWS = text("SELECT item_type, item_id, direction, voted_at, event_id FROM ranking.votes WHERE agent_id = :a")
_OWN_TOMBSTONES = text(
    """
    SELECT item_type, item_id, event_id, retracted_at >= :read_at AS since_read
    FROM ranking.vote_tombstones WHERE agent_id = :a
    """
)

RepairPlan = Callable[[AsyncConnection], Awaitable[list[VoteEvent]]]
# TrendScale.repair_votes: applies a plan's events under the weights lock.
Repair = Callable[[str, RepairPlan], Awaitable[tuple[list[ProjectedVote], list[ProjectedVote]]]]
Refreeze = Callable[[Iterable[tuple[str, date]]], Awaitable[Any]]
# VoteWeights.published_chart: the chart weight published for each agent that has one.
PublishedWeights = Callable[[set[str]], Awaitable[dict[str, float]]]
# TrendScale.agent_changed: re-weighs the agent's past votes, adding the
# (item type, day) tallies it moved to the set.
Reweigh = Callable[[str, set[tuple[str, date]]], Awaitable[None]]


@dataclass
class VotePassResult:
    checked: int
    unsettled: int
    repaired: int
    reweighed: int = 0


def _event(kind: str, agent_id: str, key: Key, event_id: int, direction: int, voted_at: datetime | str) -> VoteEvent:
    event = VoteEvent(
        event_id=event_id, type=kind, agent_id=agent_id, item_type=key[0], item_id=key[1], direction=direction
    )
    event.voted_at.FromDatetime(datetime.fromisoformat(voted_at) if isinstance(voted_at, str) else voted_at)
    return event


class ProjectionReconciler:
    def __init__(
        self,
        engine: AsyncEngine,
        ledger: vote_ledger_service_pb2_grpc.VoteLedgerServiceStub,
        repair: Repair,
        page_size: int,
        refreeze: Refreeze | None = None,
        weights: tuple[PublishedWeights, Reweigh] | None = None,
    ) -> None:
        self.engine = engine
        self.ledger = ledger
        self.repair = repair
        self.refreeze = refreeze  # finished days whose tallies a repair moved are frozen again
        # With them, each pass also re-weighs the page's agents whose votes
        # hold a chart weight other than the published one.
        self.weights = weights
        self.pages = PageSize(page_size)
        self.after = ""  # the last agent id checked; the sweep resumes after it

    async def reconcile(self) -> VotePassResult:
        """One pass over the next page of agents; returns what it did."""
        start, size = self.after, self.pages.size
        try:
            voters = await voters_after(self.ledger, start, size)
            async with self.engine.connect() as conn:
                params = {"after": start, "n": size, "voters": voters}
                page = (await conn.execute(_PAGE, params)).all()
            self.after = next_after([r.agent_id for r in page], size)
            if not page:
                return VotePassResult(0, 0, 0)
            settled = await settled_truth(self.ledger, [(r.agent_id, r.digest) for r in page])
        except grpc.aio.AioRpcError as exc:
            if self.pages.timed_out(exc):
                self.after = start  # the same agents again, fewer at a time
            raise
        self.pages.succeeded()
        repaired = 0
        agents: list[str] = []
        days: set[tuple[str, date]] = set()  # (item type, day) whose tallies moved
        for mine in page:
            truth = settled.get(mine.agent_id)
            if truth is None or truth.digest == mine.digest or not truth.votes_included:
                continue
            changed = await self._repair_agent(mine.agent_id, mine.digest, mine.read_at, truth.votes)
            if changed:
                repaired += len({(vote.item_type, vote.item_id) for vote in changed})
                agents.append(mine.agent_id)
                days.update((vote.item_type, vote.day[2]) for vote in changed)
        if repaired:
            log.warning(
                "ranking vote projection repaired from the votes table",
                extra={"repaired": repaired, "agents": agents[:5], "agents_repaired": len(agents)},
            )
            if self.refreeze is not None:
                await self.refreeze(days)
        reweighed = await self._reweigh_stale([r.agent_id for r in page])
        return VotePassResult(len(page), len(page) - len(settled), repaired, len(reweighed))

    async def _reweigh_stale(self, agent_ids: list[str]) -> list[str]:
        """Re-weighs the agents whose projected votes hold a chart weight
        other than the published one: a flag, a clearing or a graduation
        announced while no ranking replica listened (pub/sub keeps nothing),
        whose votes would otherwise keep their old weight for good. The
        finished days they moved are frozen again once for the page (a ring
        flagged unheard voted on the same days). Returns those re-weighed."""
        if self.weights is None or not agent_ids:
            return []
        published_chart, reweigh = self.weights
        async with self.engine.connect() as conn:
            held = [(r.agent_id, r.chart_weight) for r in await conn.execute(_HELD_WEIGHTS, {"ids": agent_ids})]
        try:
            published = await published_chart({agent for agent, _ in held}) if held else {}
        except RedisError as exc:
            # The pass's repairs stand; these agents are looked at next sweep.
            log.warning("could not read the published weights to check (%s)", describe(exc))
            return []
        reweighed: list[str] = []
        days: set[tuple[str, date]] = set()
        for agent_id in vote_batch.stale_chart_weights(held, published):
            try:
                await reweigh(agent_id, days)
            except Exception:  # this agent is looked at again next sweep; the others go on
                log.warning("could not re-weigh agent %s; next sweep", agent_id, exc_info=True)
                continue
            reweighed.append(agent_id)
            AGENTS_REWEIGHED.inc()
        if reweighed:
            log.warning(
                "agents re-weighed: their projected votes held a chart weight other than the published one",
                extra={"agents": reweighed[:5], "agents_reweighed": len(reweighed)},
            )
        if days and self.refreeze is not None:
            await self.refreeze(days)
        return reweighed

    async def _repair_agent(
        self,
        agent_id: str,
        digest: str,
        read_at: datetime,
        table: Iterable[vote_ledger_service_pb2.LiveVote],
    ) -> list[ProjectedVote]:
        """Repairs one agent's projected votes; returns the votes given up and
        taken in (empty when nothing changed)."""
        kinds: dict[Key, str] = {}

        async def plan(conn: AsyncConnection) -> list[VoteEvent]:
            if (await conn.execute(_OWN_DIGEST, {"a": agent_id})).scalar_one() != digest:
                return []  # a batch changed the agent's votes since the page was read: the next sweep looks again
            own = {(r.item_type, r.item_id): r for r in await conn.execute(_OWN_ROWS, {"a": agent_id})}
            drift = vote_drift({key: r.direction for key, r in own.items()}, table)
            events = []
            for key in drift.ghosts:
                row = own[key]
                events.append(_event("retract", agent_id, key, row.event_id + 1, row.direction, row.voted_at))
                kinds[key] = "ghost"
            for vote in drift.rewrites:
                key = (vote.item_type, vote.item_id)
                events.append(_event("vote", agent_id, key, own[key].event_id + 1, vote.direction, vote.voted_at))
                kinds[key] = "direction"
            if drift.missing:
                params = {"a": agent_id, "read_at": read_at}
                tombstones = {(r.item_type, r.item_id): r for r in await conn.execute(_OWN_TOMBSTONES, params)}
                for vote in drift.missing:
                    key = (vote.item_type, vote.item_id)
                    tombstone = tombstones.get(key)
                    if tombstone is not None and tombstone.since_read:
                        continue
                    after = tombstone.event_id if tombstone is not None else 0
                    events.append(_event("vote", agent_id, key, after + 1, vote.direction, vote.voted_at))
                    kinds[key] = "missing"
            return events

        removed, added = await self.repair(agent_id, plan)
        for key in {(v.item_type, v.item_id) for v in removed + added}:
            VOTES_REPAIRED.labels(kinds[key]).inc()
        return removed + added
