"""What the consumers' reconcilers of projected votes share (the ranking
service's services/ranking/store/vote_reconcile.py and the reputation
service's services/reputation/store/reconcile.py): the sweep over agents in
id order, the questions put to the vote service (VoteLedgerService: a
consumer never reads vote.votes), and what differs between a projection's
live votes of an agent and the table's.

The rules both follow (their module docstrings say how each repairs):

- a pass's page of agents is the first page-size agents, after where the
  last pass stopped, of the union of the projection's agents and the vote
  service's agents with a live vote (ListVoters: the next page of those,
  merged with the projection's next page in the query that reads the
  digests). An agent the projection holds nothing of (every event of theirs
  lost) is visited too, and a page is still at most page-size agents: the
  first n of a union need at most the first n of each side;
- only the agents the vote service reports settled are repaired (no event of
  theirs left in the outbox: every group applied every event of theirs
  committed before the truth was read), and only if the projection's digest
  of the agent was read before the truth was asked for and is still the same
  when the repair runs (a consumer batch that changed it meanwhile wins; the
  next sweep looks again);
- a repair is compare-and-set on each row it changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import grpc

from aimusicstore.vote.v1 import vote_ledger_service_pb2, vote_ledger_service_pb2_grpc

# VoteLedgerService's limit per call.
MAX_AGENTS_PER_CHECK = 1000

Key = tuple[str, str]  # (item_type, item_id)
REPAIR_KINDS = ("ghost", "direction", "missing")


def page_size_for_check(page_size: int) -> int:
    return min(page_size, MAX_AGENTS_PER_CHECK)


class PageSize:
    """How many agents a pass takes: the configured page, halved after a pass
    whose question to the vote service ran out of time (a page of heavy
    voters on a loaded vote service: CheckAgentVotes reads all their votes),
    grown by a quarter after each pass that did not (doubling back failed
    every other pass under make bench's batch load). The caller starts a
    timed-out pass over from where it began."""

    def __init__(self, configured: int) -> None:
        self.most = page_size_for_check(configured)
        self.size = self.most

    def timed_out(self, exc: grpc.aio.AioRpcError) -> bool:
        if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            return False
        self.size = max(1, self.size // 2)
        return True

    def succeeded(self) -> None:
        self.size = min(self.most, self.size + max(1, self.size // 4))


def next_after(page: Sequence[str], page_size: int) -> str:
    """Where the sweep resumes after a page of agent ids: after its last, or
    from the start again once a page came back short (the end was reached)."""
    return page[-1] if len(page) == page_size else ""


async def voters_after(
    ledger: vote_ledger_service_pb2_grpc.VoteLedgerServiceStub, after: str, page_size: int
) -> list[str]:
    """The vote service's next page of agents with a live vote, after
    `after`, in id order (merged with the projection's own page in SQL, in
    the same database's order)."""
    reply = await ledger.ListVoters(
        vote_ledger_service_pb2.ListVotersRequest(after_agent_id=after, page_size=page_size)
    )
    return list(reply.agent_ids)


async def settled_truth(
    ledger: vote_ledger_service_pb2_grpc.VoteLedgerServiceStub, digests: Iterable[tuple[str, str]]
) -> dict[str, vote_ledger_service_pb2.AgentVotes]:
    """Per agent (of the (agent id, our digest) given): the table's truth,
    for the settled agents only (the others may have events on their way)."""
    reply = await ledger.CheckAgentVotes(
        vote_ledger_service_pb2.CheckAgentVotesRequest(
            agents=[vote_ledger_service_pb2.AgentDigest(agent_id=a, digest=d) for a, d in digests]
        )
    )
    return {truth.agent_id: truth for truth in reply.agents if truth.settled}


@dataclass(frozen=True, slots=True)
class VoteDrift:
    """How a projection's live votes of one agent differ from the table's."""

    ghosts: list[Key] = field(default_factory=list)  # projected, not in the table
    # Projected with the other direction: the table's vote.
    rewrites: list[vote_ledger_service_pb2.LiveVote] = field(default_factory=list)
    missing: list[vote_ledger_service_pb2.LiveVote] = field(default_factory=list)  # in the table, not projected

    def __bool__(self) -> bool:
        return bool(self.ghosts or self.rewrites or self.missing)


def vote_drift(projected: Mapping[Key, int], table: Iterable[vote_ledger_service_pb2.LiveVote]) -> VoteDrift:
    """Compares an agent's projected live votes (direction per key) with the
    table's; each list is in key order (rows are written in that order)."""
    truth = {(v.item_type, v.item_id): v for v in table}
    return VoteDrift(
        ghosts=sorted(key for key in projected if key not in truth),
        rewrites=[truth[key] for key in sorted(projected) if key in truth and truth[key].direction != projected[key]],
        missing=[truth[key] for key in sorted(truth) if key not in projected],
    )
