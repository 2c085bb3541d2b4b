"""Agents and API keys: the reputation service's rules, free of gRPC.

`Agents` reaches storage only through its ports (services/reputation/ports.py,
narrow Protocols that services/reputation/store implements), so it is
unit-tested against in-memory fakes (tests/unit/reputation/fakes.py). Weights
are published and announced through weighing.Weighing; standing follows the
rule in standing.py.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.common import pagination, validation
from services.common.auth import RESERVED_AGENT_IDS, Caller, hash_api_key
from services.common.errors import InvalidArgument, PermissionDenied
from services.reputation.formula import MAX_REPUTATION
from services.reputation.ports import (
    AgentRecords,
    ChangeAnnouncer,
    ReputationProjection,
    StandingRecords,
    WeightPublisher,
)
from services.reputation.registrations import AddressCounting
from services.reputation.standing import StandingPolicy, standing_of
from services.reputation.store.rows import AgentRow, AgentScore
from services.reputation.tables import TIERS
from services.reputation.weighing import Weighing

log = logging.getLogger("reputation")

API_KEY_PREFIX = "ams_"
# Longer than any key this service issues: not worth a lookup.
MAX_API_KEY_LENGTH = 256
# The reason an agent flagged by an admin shows, unless a rule flagged it first.
ADMIN_FLAG_REASON = "flagged by an admin"
# An address's registration count at which a warning is logged.
_CROWD_WARNINGS = frozenset({100, 1_000, 10_000, 100_000})
CROWDED_REGISTRATIONS = Counter(
    "reputation_crowded_registrations_total",
    "Agents registered from a client address that had registered more than AIMUSICSTORE_REGISTRATION_CROWD_FREE "
    "within the window (they share the probation weight)",
)


def new_api_key() -> str:
    """256 bits from the OS CSPRNG; the prefix makes leaked keys greppable."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def _score(agent: AgentRow) -> AgentScore:
    return AgentScore(agent.id, agent.reputation_score, agent.flagged, agent.trusted, agent.registration_crowd)


class Agents:
    def __init__(
        self,
        records: AgentRecords,
        projection: ReputationProjection,
        standings: StandingRecords,
        announcer: ChangeAnnouncer,
        weights: WeightPublisher,
        policy: StandingPolicy,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        addresses: AddressCounting | None = None,
    ) -> None:
        self.records = records
        self.projection = projection
        self.standings = standings
        self.announcer = announcer
        self.policy = policy
        self.weighing = Weighing(policy, weights, announcer)
        self.clock = clock  # injectable: tests build multi-day histories
        # None: registrations are not counted per address.
        self.addresses = addresses

    async def register(self, agent_id: str, name: str, client_address: str | None = None) -> tuple[AgentRow, str]:
        """`client_address`: where the gateway saw the registration come from
        (None: not through the gateway); registrations.py."""
        agent_id = validation.identifier("id", agent_id) if agent_id else f"agent-{uuid.uuid4().hex[:16]}"
        if agent_id.lower() in RESERVED_AGENT_IDS:
            raise InvalidArgument("id", f"{agent_id!r} is reserved for the service; choose another id")
        name = validation.text("name", name, max_len=200) or agent_id
        api_key = new_api_key()
        counted = None
        if self.addresses is not None:
            address_key = self.addresses.key(client_address)
            counted = None if address_key is None else (address_key, self.addresses.window)
        agent = await self.records.create_agent(agent_id, name, hash_api_key(api_key), counted)
        crowd = agent.registration_crowd
        if crowd > self.policy.crowd_free:
            CROWDED_REGISTRATIONS.inc()
        if counted is not None and crowd in _CROWD_WARNINGS:
            # A crowd of this size is a swarm, or every client has one
            # address: a proxy in front of the gateway that was not declared.
            log.warning(
                "client address %s registered %d agents within %s: a swarm, or a proxy the gateway does not know "
                "of (declare it with AIMUSICSTORE_XFF_TRUSTED_HOPS or exempt its network with "
                "AIMUSICSTORE_REGISTRATION_CROWD_EXEMPT; docs/integrity.md)",
                counted[0].hex()[:12],
                crowd,
                counted[1],
            )
        if crowd > self.policy.crowd_free:
            try:
                await self.weighing.registered(_score(agent))
            except Exception:
                # The agent exists and its key is about to be handed out: a
                # failed registration now would lose the key. Until the
                # periodic pass publishes it (it republishes every agent and
                # announces those published wrong), its votes count the full
                # probation weight.
                log.warning("the weights of crowded registration %s were not published", agent_id, exc_info=True)
        return agent, api_key

    async def get(self, agent_id: str) -> AgentRow:
        return await self.records.get_agent(validation.identifier("agent_id", agent_id))

    def standing(self, agent: AgentRow) -> tuple[str, float]:
        """The agent's standing and chart weight (what one of its votes counts)."""
        standing = standing_of(agent.flagged, agent.trusted)
        return standing, self.policy.chart_weight(standing, agent.registration_crowd)

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
        if flagged is None:
            await self.announcer.announce_agent_changed(agent_id)
            return agent
        if not flagged:
            # Cleared: catch up on what its earning votes are worth now, and
            # let the rule say whether it is trusted (a flag ended its trust).
            now = self.clock()
            changed = await self.projection.recompute_agents([agent_id], now)
            graduated = await self._graduate([agent_id], now)
            agent = await self.records.get_agent(agent_id) if changed or graduated else agent
        await self.weighing.standing_changed(_score(agent), flag_cleared=not flagged)
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
            # A flagged agent's weights are 0 whatever its reputation and trust.
            await self.weighing.standing_changed(
                AgentScore(agent_id, 0, flagged=True, trusted=False, registration_crowd=1)
            )
        return newly

    async def apply_vote_events(self, events: list[VoteEvent]) -> None:
        changed = await self.projection.apply_events(events, self.clock())
        await self.weighing.reputation_moved(changed)

    async def reputation_moved(self, changed: list[AgentScore]) -> None:
        """Publishes the weights of agents whose reputation moved outside a
        batch of events (the reconciliation's repairs)."""
        await self.weighing.reputation_moved(changed)

    async def recompute_all(self) -> int:
        """The periodic pass: corrects drift in reputation, grants trust to
        the agents on probation that now meet the rule, republishes every
        weight and announces the agents whose standing changed. Returns how
        many reputations moved."""
        now = self.clock()
        changed = await self.projection.recompute_all(now)
        graduated = await self._graduate(None, now)
        if graduated:
            log.info("%d agents left probation: trusted", len(graduated))
        await self.weighing.republish_all(self.records.all_scores, graduated)
        return len(changed)

    async def _graduate(self, only: list[str] | None, now: datetime) -> list[str]:
        """Trusts the agents on probation (all, or those in `only`) that meet
        the graduation rule; returns those that became trusted."""
        rule = self.policy.graduation
        activity = await self.standings.probation_activity(rule.candidates(now), only)
        return await self.standings.mark_trusted([a.agent_id for a in activity if rule.graduates(a, now)])

    async def list_agents(
        self, caller: Caller, flagged: bool | None, page_size: int, page_token: str
    ) -> tuple[list[AgentRow], str]:
        """Admin only. flagged=True: the moderation queue, newest flag first;
        otherwise agents newest first (unflagged only with False)."""
        if not caller.is_admin:
            raise PermissionDenied("listing agents needs the admin key")
        flag_queue = flagged is True

        def position(agent: AgentRow) -> list[Any]:
            at = agent.flagged_at if flag_queue and agent.flagged_at is not None else agent.created_at
            return [at.isoformat(), agent.id]

        return await pagination.paginate(
            page_size,
            page_token,
            lambda limit, after: self.records.list_agents(flagged, limit, after),
            position,
            _time_position,
            scope=pagination.list_scope("agents", flagged=flagged),
        )

    async def leaderboard(self, page_size: int, page_token: str) -> tuple[list[AgentRow], str]:
        return await pagination.paginate(
            page_size,
            page_token,
            self.records.leaderboard,
            lambda a: [a.reputation_score, a.id],
            _leaderboard_position,
            scope=pagination.list_scope("leaderboard"),
        )


def _time_position(position: list[Any]) -> tuple[datetime, str]:
    at, last_id = position
    if not isinstance(last_id, str):
        raise TypeError("not an agent id")
    return pagination.position_time(at), last_id


def _leaderboard_position(position: list[Any]) -> tuple[int, str]:
    score, last_id = position
    if not isinstance(score, int) or not isinstance(last_id, str):
        raise TypeError("not a leaderboard position")
    if not 0 <= score <= MAX_REPUTATION:  # an INTEGER column: a forged 2**40 would overflow
        raise ValueError("not a reputation score")
    return score, last_id
