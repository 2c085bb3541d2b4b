"""Casting, retracting, counting and listing votes: the vote service's
domain, free of gRPC. The decisions are in rules.py; the stores it is given
(store/) count and persist, and are reached through the ports in ports.py,
so tests/unit/vote/ runs this class against in-memory fakes. A validated
vote goes through a micro-batch (casting.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from services.common import pagination, tracing, validation, vocabulary
from services.common.auth import Caller
from services.common.batching import MicroBatcher
from services.common.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from services.vote.casting import BatchCaster, CastOutcome, PendingVote
from services.vote.event import vote_event
from services.vote.model import Counts, VoteRow
from services.vote.ports import AgentsPort, CatalogPort, ModerationPort, VoteStores
from services.vote.rules import AbuseRule, Quotas, quota_message, utc_day
from services.vote.store.admission import QuotaRequest

log = logging.getLogger("voting")

DIRECTIONS = vocabulary.VOTE_SIGNS
MAX_COMMENT_CHARS = 2000


class Voting:
    def __init__(
        self,
        stores: VoteStores,
        catalog: CatalogPort,
        agents: AgentsPort,
        moderation: ModerationPort,
        quotas: Quotas,
        rules: Sequence[AbuseRule],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),  # injectable for tests
    ) -> None:
        self.stores = stores
        self.catalog = catalog
        self.agents = agents
        self.moderation = moderation
        self.quotas = quotas
        self.rules = tuple(rules)
        self.clock = clock
        # Concurrent votes share their Redis and PostgreSQL round trips.
        self.batcher: MicroBatcher[PendingVote, CastOutcome] = MicroBatcher(
            BatchCaster(stores, rules).cast, max_batch=256, max_wait_s=0.002
        )

    async def cast(
        self,
        caller: Caller,
        *,
        item_type: str,
        item_id: str,
        vote: str,
        comment: str,
        rating: int | None,
        agent_id: str,
    ) -> tuple[VoteRow, Counts]:
        if caller.is_admin:
            raise PermissionDenied("votes are cast by agents: use an agent's API key, not the admin key")
        if agent_id and agent_id != caller.agent_id:
            raise PermissionDenied("agent_id does not match the agent that owns this API key")
        item_type = validation.item_type(item_type)
        item_id = validation.identifier("item_id", item_id)
        direction = DIRECTIONS.get(vote)
        if direction is None:
            raise InvalidArgument("vote", f"must be 'up' or 'down' (got {vote[:40]!r})")
        comment = validation.text("comment", comment, max_len=MAX_COMMENT_CHARS)
        if rating is not None:
            if item_type != "tool":
                raise InvalidArgument("rating", "is allowed only on tools")
            validation.int_range("rating", rating, 1, 5)
        await self.catalog.require_item(item_type, item_id)

        now = self.clock()
        day, day_start, resets_at = utc_day(now)
        limit = self.quotas.limit(caller.tier)
        row = VoteRow(caller.agent_id, item_type, item_id, direction, comment, rating, now)
        event = vote_event("vote", row, now, tracing.current_traceparent())
        quota = QuotaRequest(caller.agent_id, caller.key_hash, day, day_start.date(), limit)
        outcome = await self.batcher.submit(PendingVote(row, event, quota))
        if outcome.status == "revoked":
            raise Unauthenticated("the API key is not valid (revoked, rotated or never issued)")
        if outcome.status == "over_quota":
            # Retry-After: when the quota resets (the next UTC day).
            retry_after_s = max(1, int((resets_at - now).total_seconds()) + 1)
            raise ResourceExhausted(quota_message(caller.tier, limit or 0, resets_at, now), retry_after_s)
        if outcome.status == "duplicate":
            raise AlreadyExists("Already voted")
        assert outcome.vote is not None and outcome.counts is not None
        if outcome.broken_rule and not caller.flagged:
            await self.moderation.flag(caller.agent_id, outcome.broken_rule)
        return outcome.vote, outcome.counts

    async def retract(self, caller: Caller, item_type: str, item_id: str) -> VoteRow:
        if caller.is_admin:
            raise PermissionDenied("votes are retracted by the agent that cast them, with its API key")
        item_type = validation.item_type(item_type)
        item_id = validation.identifier("item_id", item_id)
        now, traceparent = self.clock(), tracing.current_traceparent()
        removed = await self.stores.votes.delete_vote(
            caller.agent_id, item_type, item_id, lambda vote: vote_event("retract", vote, now, traceparent)
        )
        if removed is None:
            raise NotFound(f"you have no vote on {item_type} {item_id!r}")
        await self.stores.counts.after_retraction(removed)
        return removed

    async def counts(self, item_type: str, item_id: str) -> Counts:
        item_type = validation.item_type(item_type)
        item_id = validation.identifier("item_id", item_id)
        await self.catalog.require_item(item_type, item_id)
        return await self.stores.counts.counts(item_type, item_id)

    async def reviews(self, item_type: str, item_id: str, page_size: int, page_token: str) -> tuple[list[VoteRow], str]:
        item = (validation.item_type(item_type), validation.identifier("item_id", item_id))
        await self.catalog.require_item(*item)
        return await self._page(page_size, page_token, item=item, reviews_only=True)

    async def agent_votes(self, agent_id: str, page_size: int, page_token: str) -> tuple[list[VoteRow], str]:
        agent_id = validation.identifier("agent_id", agent_id)
        rows, token = await self._page(page_size, page_token, agent_id=agent_id)
        if not rows and not page_token:
            # No votes: an agent that never voted, or no such agent (404, as
            # for any missing resource). Only then is the reputation service
            # asked, so listing a voter's votes costs no internal call.
            await self.agents.require_agent(agent_id)
        return rows, token

    async def _page(self, page_size: int, page_token: str, **filters: object) -> tuple[list[VoteRow], str]:
        return await pagination.paginate(
            page_size,
            page_token,
            lambda limit, after: self.stores.votes.list_votes(limit=limit, after=after, **filters),  # type: ignore[arg-type]
            lambda vote: [vote.created_at.isoformat(), vote.id],
            lambda position: (pagination.position_time(position[0]), int(position[1])),
            scope=pagination.list_scope("votes", **filters),
        )
