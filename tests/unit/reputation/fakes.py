"""In-memory fakes of the ports services.reputation.agents.Agents depends on.

They keep the stores' observable contract (errors, keyset order, a flag that
keeps its first reason and ends trust, flagged agents frozen, votes cast while
flagged never earning, activity counted from earning votes) so the domain's
tests assert real outcomes. `calls` records, in order, what reached Redis in
the real service (weights and announcements). The fakes' "database time"
(created_at, flagged_at, trusted_at...) is the domain's clock."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.common.errors import AlreadyExists, NotFound
from services.reputation.agents import Agents
from services.reputation.formula import agrees, days_active, reputation, vote_earns
from services.reputation.registrations import AddressCounting
from services.reputation.standing import Activity, CandidateFilter, GraduationRule, StandingPolicy
from services.reputation.store.rows import AgentRow, AgentScore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
# The rule the unit tests use (the service's come from its settings).
RULE = GraduationRule(min_age_days=7, min_votes=4, min_active_days=3, flag_cooldown_days=7)
POLICY = StandingPolicy(probation_weight=0.25, graduation=RULE)


class FakeAgentRecords:
    def __init__(self) -> None:
        self.agents: dict[str, AgentRow] = {}
        self.first_vote_at: dict[str, datetime] = {}
        self.flag_cleared_at: dict[str, datetime] = {}
        # key hash -> (agent id, revoked)
        self.keys: dict[bytes, tuple[str, bool]] = {}
        # agent id -> the key of the address it registered from (counted ones only)
        self.registered_from: dict[str, bytes] = {}
        self.key_lookups = 0
        self.now: Callable[[], datetime] = lambda: T0  # the database's now(): world() sets the domain's clock

    def put(
        self,
        agent_id: str,
        *,
        name: str = "",
        score: int = 0,
        flagged: bool = False,
        tier: str = "free",
        created_at: datetime | None = None,
        trusted: bool = False,
    ) -> AgentRow:
        """An agent as a test needs it (no key)."""
        created_at = created_at or self.now()
        row = AgentRow(
            agent_id,
            name or agent_id,
            tier,
            score,
            0,
            created_at,
            None,
            flagged,
            "a rule" if flagged else "",
            created_at if flagged else None,
            created_at if trusted and not flagged else None,
            1,
        )
        self.agents[agent_id] = row
        return row

    def _existing(self, agent_id: str) -> AgentRow:
        if agent_id not in self.agents:
            raise NotFound(f"agent {agent_id!r} does not exist")
        return self.agents[agent_id]

    async def create_agent(
        self, agent_id: str, name: str, key_hash: bytes, counted: tuple[bytes, timedelta] | None = None
    ) -> AgentRow:
        if agent_id in self.agents:
            raise AlreadyExists(f"agent {agent_id!r} already exists; choose another id")
        self.keys[key_hash] = (agent_id, False)
        crowd = 1
        if counted is not None:
            address, window = counted
            crowd += sum(
                1
                for other, key in self.registered_from.items()
                if key == address and self.agents[other].created_at > self.now() - window
            )
            self.registered_from[agent_id] = address
        self.agents[agent_id] = replace(self.put(agent_id, name=name), registration_crowd=crowd)
        return self.agents[agent_id]

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
            row = replace(
                row,
                flagged=True,
                flag_reason=row.flag_reason or flag_reason,
                flagged_at=row.flagged_at or self.now(),
                trusted_at=None,
            )
        elif flagged is False:
            if row.flagged:
                self.flag_cleared_at[agent_id] = self.now()
            row = replace(row, flagged=False, flag_reason="", flagged_at=None)
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
        self.agents[agent_id] = replace(row, flagged=True, flag_reason=reason, flagged_at=self.now(), trusted_at=None)
        return True

    async def leaderboard(self, limit: int, after: tuple[int, str] | None) -> list[AgentRow]:
        ordered = sorted(self.agents.values(), key=lambda a: (-a.reputation_score, a.id))
        if after is not None:
            ordered = [a for a in ordered if (-a.reputation_score, a.id) > (-after[0], after[1])]
        return ordered[:limit]

    async def list_agents(self, flagged: bool | None, limit: int, after: tuple[datetime, str] | None) -> list[AgentRow]:
        def at(a: AgentRow) -> datetime:
            return (a.flagged_at if flagged else a.created_at) or a.created_at

        rows = [a for a in self.agents.values() if flagged is None or a.flagged == flagged]
        # Newest first, id breaks ties: sort by (-time, id) through a key that negates time.
        ordered = sorted(rows, key=lambda a: (-at(a).timestamp(), a.id))
        if after is not None:
            ordered = [a for a in ordered if (-at(a).timestamp(), a.id) > (-after[0].timestamp(), after[1])]
        return ordered[:limit]

    async def all_scores(self) -> list[AgentScore]:
        return [
            AgentScore(a.id, a.reputation_score, a.flagged, a.trusted, a.registration_crowd)
            for a in self.agents.values()
        ]


@dataclass
class FakeVote:
    direction: int
    earns: bool
    cast_at: datetime = T0


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
                cast_at = event.voted_at.ToDatetime(tzinfo=UTC)
                self.votes[key] = FakeVote(event.direction, vote_earns(flagged), cast_at)
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
                changed.append(AgentScore(agent_id, score, False, row.trusted, row.registration_crowd))
        return changed

    async def recompute_all(self, now: datetime) -> list[AgentScore]:
        return await self.recompute_agents(sorted(self.records.agents), now)


class FakeStandings:
    """Activity counted from the fake projection's earning votes."""

    def __init__(self, records: FakeAgentRecords, projection: FakeProjection) -> None:
        self.records = records
        self.projection = projection

    def activity(self, agent_id: str) -> Activity:
        row = self.records.agents[agent_id]
        earning = [v for (agent, _, _), v in self.projection.votes.items() if agent == agent_id and v.earns]
        days = {v.cast_at.astimezone(UTC).date() for v in earning}
        return Activity(
            agent_id, row.created_at, len(earning), len(days), row.flagged, self.records.flag_cleared_at.get(agent_id)
        )

    async def probation_activity(self, candidates: CandidateFilter, only: list[str] | None = None) -> list[Activity]:
        # Only the necessary conditions the real store filters on.
        return [
            self.activity(a.id)
            for a in self.records.agents.values()
            if not a.trusted
            and not a.flagged
            and a.created_at <= candidates.created_before
            and (only is None or a.id in only)
            and self.activity(a.id).votes >= candidates.min_votes
            and self.records.flag_cleared_at.get(a.id, candidates.cleared_before) <= candidates.cleared_before
        ]

    async def mark_trusted(self, agent_ids: list[str]) -> list[str]:
        done = []
        for agent_id in agent_ids:
            row = self.records.agents[agent_id]
            if not row.trusted and not row.flagged:
                self.records.agents[agent_id] = replace(row, trusted_at=self.records.now())
                done.append(agent_id)
        return done


class FakeAnnouncer:
    def __init__(self, calls: list[tuple[str, object]]) -> None:
        self.calls = calls

    async def announce_key_revoked(self, key_hash: bytes) -> bool:
        self.calls.append(("key revoked", key_hash))
        return True

    async def announce_agent_changed(self, agent_id: str, *, flag_cleared: bool = False) -> None:
        self.calls.append(("flag cleared" if flag_cleared else "agent changed", agent_id))


class FakeWeights:
    """The two hashes; `calls` gets ("chart", ...) and ("trending", ...) for each non-empty write."""

    def __init__(self, calls: list[tuple[str, object]]) -> None:
        self.calls = calls
        self.chart: dict[str, float] = {}
        self.trending: dict[str, float] = {}

    async def publish_weights(self, chart: Mapping[str, float], trending: Mapping[str, float]) -> None:
        for name, published, weights in (("chart", self.chart, chart), ("trending", self.trending, trending)):
            if weights:
                self.calls.append((name, dict(weights)))
            published.update(weights)

    async def published_chart_weights(self) -> dict[str, float] | None:
        return dict(self.chart) or None


@dataclass
class World:
    agents: Agents
    records: FakeAgentRecords
    projection: FakeProjection
    standings: FakeStandings
    weights: FakeWeights
    calls: list[tuple[str, object]]

    def later(self, **delta: float) -> datetime:
        """Moves the clock (the domain's and the fake database's) forward."""
        now = self.agents.clock() + timedelta(**delta)
        self.agents.clock = lambda: now
        return now


def world(now: datetime = T0, policy: StandingPolicy = POLICY, addresses: AddressCounting | None = None) -> World:
    calls: list[tuple[str, object]] = []
    records = FakeAgentRecords()
    projection = FakeProjection(records)
    standings = FakeStandings(records, projection)
    weights = FakeWeights(calls)
    agents = Agents(
        records, projection, standings, FakeAnnouncer(calls), weights, policy, clock=lambda: now, addresses=addresses
    )
    records.now = lambda: agents.clock()
    return World(agents, records, projection, standings, weights, calls)
