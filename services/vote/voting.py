"""Casting, retracting, counting and listing votes: the vote service's rules, free of gRPC."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

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
from services.vote.clients import AgentClient, CatalogClient, ModerationClient
from services.vote.store import AbuseRules, CastOutcome, Counts, PendingVote, VoteRow, VoteStore

log = logging.getLogger("voting")

DIRECTIONS = vocabulary.VOTE_SIGNS
MAX_COMMENT_CHARS = 2000


@dataclass(frozen=True)
class Quotas:
    """Votes per UTC day by tier; None is unlimited."""

    free: int
    pro: int

    def limit(self, tier: str) -> int | None:
        return {"free": self.free, "pro": self.pro}.get(tier)


def utc_day(now: datetime) -> tuple[str, datetime, datetime]:
    """The UTC day of `now` as YYYYMMDD, its start, and when the next one starts."""
    return _utc_day(now.astimezone(UTC).date())


@lru_cache(maxsize=8)  # computed once a day, not once a vote
def _utc_day(day: date) -> tuple[str, datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start.strftime("%Y%m%d"), start, start + timedelta(days=1)


def quota_message(tier: str, limit: int, resets_at: datetime, now: datetime) -> str:
    left = resets_at - now
    hours, rest = divmod(int(left.total_seconds()), 3600)
    return (
        f"daily vote quota of {limit} for the {tier} tier is used up; "
        f"it resets at {resets_at.strftime('%Y-%m-%dT%H:%M:%SZ')} (in {hours}h {rest // 60}m)"
    )


class Voting:
    def __init__(
        self,
        store: VoteStore,
        catalog: CatalogClient,
        agents: AgentClient,
        moderation: ModerationClient,
        quotas: Quotas,
        rules: AbuseRules,
        clock=lambda: datetime.now(UTC),  # type: ignore[no-untyped-def]  # injectable for tests
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.agents = agents
        self.moderation = moderation
        self.quotas = quotas
        self.rules = rules
        self.clock = clock
        # Concurrent votes share their Redis and PostgreSQL round trips.
        self.batcher: MicroBatcher[PendingVote, CastOutcome] = MicroBatcher(
            lambda batch: self.store.cast_batch(batch, self.rules), max_batch=256, max_wait_s=0.002
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
        event = {
            "type": "vote",
            "agent_id": caller.agent_id,
            "item_type": item_type,
            "item_id": item_id,
            "direction": direction,
            "has_review": bool(comment) or rating is not None,
            "occurred_at": now.isoformat(),
        }
        if rating is not None:
            event["rating"] = rating
        if traceparent := tracing.current_traceparent():
            event["traceparent"] = traceparent
        outcome = await self.batcher.submit(PendingVote(row, event, caller.key_hash, day, day_start, limit))
        if outcome.status == "revoked":
            raise Unauthenticated("the API key is not valid (revoked, rotated or never issued)")
        if outcome.status == "over_quota":
            raise ResourceExhausted(quota_message(caller.tier, limit or 0, resets_at, now))
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
        event = {
            "type": "retract",
            "agent_id": caller.agent_id,
            "item_type": item_type,
            "item_id": item_id,
            "occurred_at": self.clock().isoformat(),
        }
        if traceparent := tracing.current_traceparent():
            event["traceparent"] = traceparent
        removed = await self.store.delete_vote(caller.agent_id, item_type, item_id, event)
        if removed is None:
            raise NotFound(f"you have no vote on {item_type} {item_id!r}")
        await self.store.after_retraction(removed)
        return removed

    async def counts(self, item_type: str, item_id: str) -> Counts:
        item_type = validation.item_type(item_type)
        item_id = validation.identifier("item_id", item_id)
        await self.catalog.require_item(item_type, item_id)
        return await self.store.counts(item_type, item_id)

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
            lambda limit, after: self.store.list_votes(limit=limit, after=after, **filters),  # type: ignore[arg-type]
            lambda vote: [vote.created_at.isoformat(), vote.id],
            lambda position: (pagination.position_time(position[0]), int(position[1])),
            scope=pagination.list_scope("votes", **filters),
        )
