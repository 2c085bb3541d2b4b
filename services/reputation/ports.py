"""The ports of the reputation domain (agents.Agents, weighing.Weighing):
narrow Protocols that services/reputation/store implements, so the domain is
unit-tested against in-memory fakes (tests/unit/reputation/fakes.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Protocol

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.reputation.standing import Activity, CandidateFilter
from services.reputation.store.rows import AgentRow, AgentScore


class AgentRecords(Protocol):
    """Agent rows and their API keys (store.AgentStore)."""

    async def create_agent(
        self, agent_id: str, name: str, key_hash: bytes, counted: tuple[bytes, timedelta] | None = None
    ) -> AgentRow: ...
    async def get_agent(self, agent_id: str) -> AgentRow: ...
    async def agent_for_key(self, key_hash: bytes) -> AgentRow | None: ...
    async def update_agent(
        self, agent_id: str, tier: str | None, flagged: bool | None, flag_reason: str
    ) -> AgentRow: ...
    async def replace_key(self, agent_id: str, new_hash: bytes) -> bytes | None: ...
    async def flag(self, agent_id: str, reason: str) -> bool: ...
    async def leaderboard(self, limit: int, after: tuple[int, str] | None) -> list[AgentRow]: ...
    async def list_agents(
        self, flagged: bool | None, limit: int, after: tuple[datetime, str] | None
    ) -> list[AgentRow]: ...
    async def all_scores(self) -> list[AgentScore]: ...


class ReputationProjection(Protocol):
    """The vote projection and the reputation computed from it (store.VoteProjection)."""

    async def apply_events(self, events: Iterable[VoteEvent], now: datetime) -> list[AgentScore]: ...
    async def recompute_agents(self, agent_ids: list[str], now: datetime) -> list[AgentScore]: ...
    async def recompute_all(self, now: datetime) -> list[AgentScore]: ...


class StandingRecords(Protocol):
    """What the graduation rule reads, and the trust it grants (store.Standings)."""

    async def probation_activity(
        self, candidates: CandidateFilter, only: list[str] | None = None
    ) -> list[Activity]: ...
    async def mark_trusted(self, agent_ids: list[str]) -> list[str]: ...


class ChangeAnnouncer(Protocol):
    """Tells the other services' caches (store.Announcements)."""

    async def announce_key_revoked(self, key_hash: bytes) -> bool: ...
    async def announce_agent_changed(self, agent_id: str, *, flag_cleared: bool = False) -> None: ...


class WeightPublisher(Protocol):
    """The chart and trending weights the ranking service reads (store.VoteWeights)."""

    async def publish_weights(self, chart: Mapping[str, float], trending: Mapping[str, float]) -> None: ...
    async def published_chart_weights(self) -> dict[str, float] | None: ...
