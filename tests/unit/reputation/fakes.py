"""In-memory fakes of the ports services.reputation.agents.Agents depends on.

They keep the stores' observable contract (errors, keyset order, a flag that
keeps its first reason, flagged agents frozen, votes cast while flagged never
earning) so the domain's tests assert real outcomes. `calls` records, in
order, what reached Redis in the real service (weights and announcements)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.common.errors import AlreadyExists, NotFound
from services.reputation.agents import Agents
from services.reputation.formula import agrees, days_active, reputation, vote_earns
from services.reputation.store.rows import AgentRow, AgentScore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class FakeAgentRecords:
    def __init__(self) -> None:
        self.agents: dict[str, AgentRow] = {}
        self.first_vote_at: dict[str, datetime] = {}
        # key hash -> (agent id, revoked)
        self.keys: dict[bytes, tuple[str, bool]] = {}
        self.key_lookups = 0

    def put(
        self, agent_id: str, *, name: str = "", score: int = 0, flagged: bool = False, tier: str = "free"
    ) -> AgentRow:
        """An agent as a test needs it (no key)."""
        row = AgentRow(agent_id, name or agent_id, tier, score, 0, T0, None, flagged, "a rule" if flagged else "")
        self.agents[agent_id] = row
        return row

    def _existing(self, agent_id: str) -> AgentRow:
        if agent_id not in self.agents:
            raise NotFound(f"agent {agent_id!r} does not exist")
        return self.agents[agent_id]

    async def create_agent(self, agent_id: str, name: str, key_hash: bytes) -> AgentRow:
        if agent_id in self.agents:
            raise AlreadyExists(f"agent {agent_id!r} already exists; choose another id")
        self.keys[key_hash] = (agent_id, False)
        return self.put(agent_id, name=name)

    async def get_agent(self, agent_id: str) -> AgentRow:
        return self._existing(agent_id)

    async def agent_for_key(self, key_hash: bytes) -> AgentRow | None:
        self.key_lookups += 1
        agent_id, revoked = self.keys.get(key_hash, ("", True))
        return None if revoked else self.agents.get(agent_id)

    async def update_agent(self, agent_id: str, tier: str | None, flagged: bool | None, flag_reason: str) -> AgentRow:
        row = self._existing(agent_id)
        if tier is not None:
            row = replace(row, tier=tier)
        if flagged is True:
            row = replace(row, flagged=True, flag_reason=row.flag_reason or flag_reason)
        elif flagged is False:
            row = replace(row, flagged=False, flag_reason="")
        self.agents[agent_id] = row
        return row

    async def replace_key(self, agent_id: str, new_hash: bytes) -> bytes | None:
        self._existing(agent_id)
        old = next((h for h, (owner, revoked) in self.keys.items() if owner == agent_id and not revoked), None)
        if old is not None:
            self.keys[old] = (agent_id, True)
        self.keys[new_hash] = (agent_id, False)
        return old

    async def flag(self, agent_id: str, reason: str) -> bool:
        row = self.agents.get(agent_id)
        if row is None or row.flagged:
            return False
        self.agents[agent_id] = replace(row, flagged=True, flag_reason=reason)
        return True

    async def leaderboard(self, limit: int, after: tuple[int, str] | None) -> list[AgentRow]:
        ordered = sorted(self.agents.values(), key=lambda a: (-a.reputation_score, a.id))
        if after is not None:
            ordered = [a for a in ordered if (-a.reputation_score, a.id) > (-after[0], after[1])]
        return ordered[:limit]

    async def all_scores(self) -> list[AgentScore]:
        return [AgentScore(a.id, a.reputation_score, a.flagged) for a in self.agents.values()]


@dataclass
class FakeVote:
    direction: int
    earns: bool


class FakeProjection:
    """The vote projection in dictionaries, reputation by services.reputation.formula."""

    def __init__(self, records: FakeAgentRecords) -> None:
        self.records = records
        self.votes: dict[tuple[str, str, str], FakeVote] = {}
        self.applied: set[int] = set()

    def item_score(self, item_type: str, item_id: str) -> int:
        return sum(v.direction for (_, t, i), v in self.votes.items() if (t, i) == (item_type, item_id))

    async def apply_events(self, events: Iterable[VoteEvent], now: datetime) -> list[AgentScore]:
        voters, items = set(), set()
        for event in events:
            if event.event_id in self.applied:
                continue
            self.applied.add(event.event_id)
            voters.add(event.agent_id)
            items.add((event.item_type, event.item_id))
            key = (event.agent_id, event.item_type, event.item_id)
            if event.type == "vote":
                flagged = self.records.agents[event.agent_id].flagged
                self.votes[key] = FakeVote(event.direction, vote_earns(flagged))
                self.records.first_vote_at.setdefault(event.agent_id, event.voted_at.ToDatetime(tzinfo=UTC))
            else:
                self.votes.pop(key, None)
        # Simpler than the real one (voters, and the voters on items whose
        # sign flipped): every agent who votes on an item the batch touched.
        co_voters = {agent for (agent, t, i) in self.votes if (t, i) in items}
        return await self.recompute_agents(sorted(voters | co_voters), now)

    async def recompute_agents(self, agent_ids: list[str], now: datetime) -> list[AgentScore]:
        changed = []
        for agent_id in agent_ids:
            row = self.records.agents[agent_id]
            if row.flagged:  # frozen while flagged
                continue
            earning = [(key, v) for key, v in self.votes.items() if key[0] == agent_id and v.earns]
            agreements = sum(agrees(v.direction, self.item_score(t, i)) for (_, t, i), v in earning)
            days = days_active(self.records.first_vote_at.get(agent_id), now)
            score = reputation(len(earning), agreements, days)
            if score != row.reputation_score:
                self.records.agents[agent_id] = replace(row, reputation_score=score)
                changed.append(AgentScore(agent_id, score, False))
        return changed

    async def recompute_all(self, now: datetime) -> list[AgentScore]:
        return await self.recompute_agents(sorted(self.records.agents), now)


class FakeAnnouncer:
    def __init__(self, calls: list[tuple[str, object]]) -> None:
        self.calls = calls

    async def announce_key_revoked(self, key_hash: bytes) -> bool:
        self.calls.append(("key revoked", key_hash))
        return True

    async def announce_agent_changed(self, agent_id: str, *, flag_cleared: bool = False) -> None:
        self.calls.append(("flag cleared" if flag_cleared else "agent changed", agent_id))


class FakeWeights:
    def __init__(self, calls: list[tuple[str, object]]) -> None:
        self.calls = calls
        self.published: dict[str, float] = {}

    async def publish_weights(self, weights: dict[str, float]) -> None:
        if weights:
            self.calls.append(("weights", dict(weights)))
        self.published.update(weights)


@dataclass
class World:
    agents: Agents
    records: FakeAgentRecords
    projection: FakeProjection
    weights: FakeWeights
    calls: list[tuple[str, object]]


def world(now: datetime = T0) -> World:
    calls: list[tuple[str, object]] = []
    records = FakeAgentRecords()
    projection = FakeProjection(records)
    weights = FakeWeights(calls)
    agents = Agents(records, projection, FakeAnnouncer(calls), weights, clock=lambda: now)
    return World(agents, records, projection, weights, calls)
