"""Agents and API keys: the reputation service's rules, free of gRPC.

`Agents` reaches storage only through the ports below (narrow Protocols that
services/reputation/store implements), so it is unit-tested against
in-memory fakes (tests/unit/reputation/fakes.py).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.common import pagination, validation
from services.common.auth import RESERVED_AGENT_IDS, Caller, hash_api_key
from services.common.errors import InvalidArgument, PermissionDenied
from services.reputation.formula import MAX_REPUTATION, trending_weight
from services.reputation.store.rows import AgentRow, AgentScore
from services.reputation.tables import TIERS

API_KEY_PREFIX = "ams_"
# Longer than any key this service issues: not worth a lookup.
MAX_API_KEY_LENGTH = 256
# The reason an agent flagged by an admin shows, unless a rule flagged it first.
ADMIN_FLAG_REASON = "flagged by an admin"


def new_api_key() -> str:
    """256 bits from the OS CSPRNG; the prefix makes leaked keys greppable."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


class AgentRecords(Protocol):
    """Agent rows and their API keys (store.AgentStore)."""

    async def create_agent(self, agent_id: str, name: str, key_hash: bytes) -> AgentRow: ...
    async def get_agent(self, agent_id: str) -> AgentRow: ...
    async def agent_for_key(self, key_hash: bytes) -> AgentRow | None: ...
    async def update_agent(
        self, agent_id: str, tier: str | None, flagged: bool | None, flag_reason: str
    ) -> AgentRow: ...
    async def replace_key(self, agent_id: str, new_hash: bytes) -> bytes | None: ...
    async def flag(self, agent_id: str, reason: str) -> bool: ...
    async def leaderboard(self, limit: int, after: tuple[int, str] | None) -> list[AgentRow]: ...
    async def all_scores(self) -> list[AgentScore]: ...


class ReputationProjection(Protocol):
    """The vote projection and the reputation computed from it (store.VoteProjection)."""

    async def apply_events(self, events: Iterable[VoteEvent], now: datetime) -> list[AgentScore]: ...
    async def recompute_agents(self, agent_ids: list[str], now: datetime) -> list[AgentScore]: ...
    async def recompute_all(self, now: datetime) -> list[AgentScore]: ...


class ChangeAnnouncer(Protocol):
    """Tells the other services' caches (store.Announcements)."""

    async def announce_key_revoked(self, key_hash: bytes) -> bool: ...
    async def announce_agent_changed(self, agent_id: str, *, flag_cleared: bool = False) -> None: ...


class WeightPublisher(Protocol):
    """The trending weights the ranking service reads (store.TrendingWeights)."""

    async def publish_weights(self, weights: dict[str, float]) -> None: ...


def _weights(scores: Iterable[AgentScore]) -> dict[str, float]:
    return {agent: trending_weight(score, flagged) for agent, score, flagged in scores}


class Agents:
    def __init__(
        self,
        records: AgentRecords,
        projection: ReputationProjection,
        announcer: ChangeAnnouncer,
        weights: WeightPublisher,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.records = records
        self.projection = projection
        self.announcer = announcer
        self.weights = weights
        self.clock = clock  # injectable: tests build multi-day histories

    async def register(self, agent_id: str, name: str) -> tuple[AgentRow, str]:
        agent_id = validation.identifier("id", agent_id) if agent_id else f"agent-{uuid.uuid4().hex[:16]}"
        if agent_id.lower() in RESERVED_AGENT_IDS:
            raise InvalidArgument("id", f"{agent_id!r} is reserved for the service; choose another id")
        name = validation.text("name", name, max_len=200) or agent_id
        api_key = new_api_key()
        agent = await self.records.create_agent(agent_id, name, hash_api_key(api_key))
        return agent, api_key

    async def get(self, agent_id: str) -> AgentRow:
        return await self.records.get_agent(validation.identifier("agent_id", agent_id))

    async def verify_key(self, api_key: str) -> Caller | None:
        if not api_key.startswith(API_KEY_PREFIX) or len(api_key) > MAX_API_KEY_LENGTH:
            return None
        agent = await self.records.agent_for_key(hash_api_key(api_key))
        if agent is None:
            return None
        return Caller(agent_id=agent.id, tier=agent.tier, flagged=agent.flagged)

    async def update(self, caller: Caller, agent_id: str, tier: str | None, flagged: bool | None) -> AgentRow:
        if not caller.is_admin:
            raise PermissionDenied("changing an agent's tier or flag needs the admin key")
        agent_id = validation.identifier("agent_id", agent_id)
        if tier is not None:
            validation.choice("tier", tier, TIERS)
        agent = await self.records.update_agent(agent_id, tier, flagged, ADMIN_FLAG_REASON)
        if flagged is not None:
            if not flagged:
                # Cleared: catch up on what its earning votes are worth now.
                changed = await self.projection.recompute_agents([agent_id], self.clock())
                agent = await self.records.get_agent(agent_id) if changed else agent
            # Weight first: the announcement makes other services read it.
            await self.weights.publish_weights({agent.id: trending_weight(agent.reputation_score, agent.flagged)})
        await self.announcer.announce_agent_changed(agent_id, flag_cleared=flagged is False)
        return agent

    async def rotate_key(self, caller: Caller, agent_id: str) -> tuple[str, bytes | None]:
        agent_id = validation.identifier("agent_id", agent_id)
        if not caller.is_admin and caller.agent_id != agent_id:
            raise PermissionDenied("an agent may rotate only its own key")
        api_key = new_api_key()
        old_hash = await self.records.replace_key(agent_id, hash_api_key(api_key))
        if old_hash is not None:
            await self.announcer.announce_key_revoked(old_hash)
        return api_key, old_hash

    async def flag(self, agent_id: str, reason: str) -> bool:
        agent_id = validation.identifier("agent_id", agent_id)
        reason = validation.text("reason", reason, min_len=1, max_len=500)
        newly = await self.records.flag(agent_id, reason)
        if newly:
            # Weight first: the announcement makes other services read it.
            await self.weights.publish_weights({agent_id: trending_weight(0, flagged=True)})
            await self.announcer.announce_agent_changed(agent_id)
        return newly

    async def apply_vote_events(self, events: list[VoteEvent]) -> None:
        changed = await self.projection.apply_events(events, self.clock())
        await self.weights.publish_weights(_weights(changed))

    async def recompute_all(self) -> int:
        """The periodic pass: corrects drift and republishes every weight."""
        changed = await self.projection.recompute_all(self.clock())
        await self.weights.publish_weights(_weights(await self.records.all_scores()))
        return len(changed)

    async def leaderboard(self, page_size: int, page_token: str) -> tuple[list[AgentRow], str]:
        return await pagination.paginate(
            page_size,
            page_token,
            self.records.leaderboard,
            lambda a: [a.reputation_score, a.id],
            _leaderboard_position,
            scope=pagination.list_scope("leaderboard"),
        )


def _leaderboard_position(position: list[Any]) -> tuple[int, str]:
    score, last_id = position
    if not isinstance(score, int) or not isinstance(last_id, str):
        raise TypeError("not a leaderboard position")
    if not 0 <= score <= MAX_REPUTATION:  # an INTEGER column: a forged 2**40 would overflow
        raise ValueError("not a reputation score")
    return score, last_id
