"""Agents and API keys: the reputation service's rules, free of gRPC."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from services.common import pagination, validation
from services.common.auth import RESERVED_AGENT_IDS, Caller, hash_api_key
from services.common.errors import InvalidArgument, PermissionDenied
from services.reputation.engine import MAX_REPUTATION, trending_weight
from services.reputation.store import AgentRow, ReputationStore
from services.reputation.tables import TIERS

API_KEY_PREFIX = "ams_"


def new_api_key() -> str:
    """256 bits from the OS CSPRNG; the prefix makes leaked keys greppable."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


class Agents:
    def __init__(self, store: ReputationStore, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.clock = clock  # injectable: tests build multi-day histories

    async def register(self, agent_id: str, name: str) -> tuple[AgentRow, str]:
        agent_id = validation.identifier("id", agent_id) if agent_id else f"agent-{uuid.uuid4().hex[:16]}"
        if agent_id.lower() in RESERVED_AGENT_IDS:
            raise InvalidArgument("id", f"{agent_id!r} is reserved for the service; choose another id")
        name = validation.text("name", name, max_len=200) or agent_id
        api_key = new_api_key()
        agent = await self.store.create_agent(agent_id, name, hash_api_key(api_key))
        return agent, api_key

    async def get(self, agent_id: str) -> AgentRow:
        return await self.store.get_agent(validation.identifier("agent_id", agent_id))

    async def verify_key(self, api_key: str) -> Caller | None:
        if not api_key.startswith(API_KEY_PREFIX) or len(api_key) > 256:
            return None
        agent = await self.store.agent_for_key(hash_api_key(api_key))
        if agent is None:
            return None
        return Caller(agent_id=agent.id, tier=agent.tier, flagged=agent.flagged)

    async def update(self, caller: Caller, agent_id: str, tier: str | None, flagged: bool | None) -> AgentRow:
        if not caller.is_admin:
            raise PermissionDenied("changing an agent's tier or flag needs the admin key")
        agent_id = validation.identifier("agent_id", agent_id)
        if tier is not None:
            validation.choice("tier", tier, TIERS)
        agent = await self.store.update_agent(agent_id, tier, flagged)
        if flagged is not None:
            if not flagged:
                # Cleared: catch up on what its earning votes are worth now.
                changed = await self.store.recompute_agents([agent_id], self.clock())
                agent = await self.store.get_agent(agent_id) if changed else agent
            # Weight first: the announcement makes other services read it.
            await self.store.publish_weights({agent.id: trending_weight(agent.reputation_score, agent.flagged)})
        await self.store.announce_agent_changed(agent_id, flag_cleared=flagged is False)
        return agent

    async def rotate_key(self, caller: Caller, agent_id: str) -> tuple[str, bytes | None]:
        agent_id = validation.identifier("agent_id", agent_id)
        if not caller.is_admin and caller.agent_id != agent_id:
            raise PermissionDenied("an agent may rotate only its own key")
        api_key = new_api_key()
        old_hash = await self.store.replace_key(agent_id, hash_api_key(api_key))
        if old_hash is not None:
            await self.store.announce_key_revoked(old_hash)
        return api_key, old_hash

    async def flag(self, agent_id: str, reason: str) -> bool:
        agent_id = validation.identifier("agent_id", agent_id)
        reason = validation.text("reason", reason, min_len=1, max_len=500)
        newly = await self.store.flag(agent_id, reason)
        if newly:
            # Weight first: the announcement makes other services read it.
            await self.store.publish_weights({agent_id: trending_weight(0, flagged=True)})
            await self.store.announce_agent_changed(agent_id)
        return newly

    async def apply_vote_events(self, events: list) -> None:
        changed = await self.store.apply_events(events, self.clock())
        await self.store.publish_weights({agent: trending_weight(score, flagged) for agent, score, flagged in changed})

    async def recompute_all(self) -> int:
        """The periodic pass: corrects drift and republishes every weight."""
        changed = await self.store.recompute_all(self.clock())
        weights = {
            agent: trending_weight(score, flagged) for agent, score, flagged in await self.store.all_weights_inputs()
        }
        await self.store.publish_weights(weights)
        return len(changed)

    async def leaderboard(self, page_size: int, page_token: str) -> tuple[list[AgentRow], str]:
        def parse(position: list) -> tuple[int, str]:
            score, last_id = position
            if not isinstance(score, int) or not isinstance(last_id, str):
                raise TypeError("not a leaderboard position")
            if not 0 <= score <= MAX_REPUTATION:  # an INTEGER column: a forged 2**40 would overflow
                raise ValueError("not a reputation score")
            return score, last_id

        return await pagination.paginate(
            page_size,
            page_token,
            self.store.leaderboard,
            lambda a: [a.reputation_score, a.id],
            parse,
            scope=pagination.list_scope("leaderboard"),
        )
