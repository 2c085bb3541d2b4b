"""Casting, retracting, counting and listing votes: the vote service's
domain, free of gRPC. The decisions are in rules.py; the stores it is given
(store/) count and persist, and are reached through the ports below, so
tests/unit/vote/ runs this class against in-memory fakes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

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
from services.vote.event import vote_event
from services.vote.model import Counts, VoteRow, direction_field
from services.vote.rules import AbuseRule, Quotas, WindowCounts, broken_rule, quota_message, utc_day
from services.vote.store.admission import Admission, QuotaRequest

log = logging.getLogger("voting")

DIRECTIONS = vocabulary.VOTE_SIGNS
MAX_COMMENT_CHARS = 2000

VoteKey = tuple[str, str, str]


# -- ports: what the domain needs of its stores and of the other services ------


class VotesPort(Protocol):
    async def insert_batch(self, batch: Sequence[tuple[VoteRow, dict[str, Any]]]) -> dict[VoteKey, VoteRow]: ...
    async def delete_vote(
        self, agent_id: str, item_type: str, item_id: str, event_for: Callable[[VoteRow], dict[str, Any]]
    ) -> VoteRow | None: ...
    async def list_votes(
        self,
        *,
        agent_id: str | None = None,
        item: tuple[str, str] | None = None,
        reviews_only: bool = False,
        limit: int,
        after: tuple[datetime, int] | None,
    ) -> list[VoteRow]: ...


class QuotaPort(Protocol):
    async def admit(self, requests: Sequence[QuotaRequest]) -> list[Admission]: ...
    async def refund(self, requests: Sequence[QuotaRequest]) -> None: ...


class WindowsPort(Protocol):
    async def record(self, stored: Sequence[VoteRow]) -> dict[VoteKey, dict[int, WindowCounts]]: ...


class CountsPort(Protocol):
    async def after_votes(self, stored: Sequence[VoteRow]) -> dict[VoteKey, Counts]: ...
    async def from_table(self, stored: Sequence[VoteRow]) -> dict[VoteKey, Counts]: ...
    async def after_retraction(self, removed: VoteRow) -> None: ...
    async def counts(self, item_type: str, item_id: str) -> Counts: ...


class CatalogPort(Protocol):
    async def require_item(self, item_type: str, item_id: str) -> None: ...


class AgentsPort(Protocol):
    async def require_agent(self, agent_id: str) -> None: ...


class ModerationPort(Protocol):
    async def flag(self, agent_id: str, reason: str) -> None: ...


@dataclass(frozen=True)
class VoteStores:
    votes: VotesPort
    quotas: QuotaPort
    windows: WindowsPort
    counts: CountsPort


@dataclass(frozen=True)
class PendingVote:
    """A validated vote waiting for its micro-batch."""

    vote: VoteRow
    event: dict[str, Any]
    quota: QuotaRequest


@dataclass(frozen=True)
class CastOutcome:
    # "stored", "duplicate" (already voted), "over_quota" or "revoked".
    status: str
    vote: VoteRow | None = None
    counts: Counts | None = None
    broken_rule: str = ""
    used: int = 0


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
            self._cast_batch, max_batch=256, max_wait_s=0.002
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
            raise ResourceExhausted(quota_message(caller.tier, limit or 0, resets_at, now))
        if outcome.status == "duplicate":
            raise AlreadyExists("Already voted")
        assert outcome.vote is not None and outcome.counts is not None
        if outcome.broken_rule and not caller.flagged:
            await self.moderation.flag(caller.agent_id, outcome.broken_rule)
        return outcome.vote, outcome.counts

    async def _cast_batch(self, pending: list[PendingVote]) -> list[CastOutcome]:
        """Casts a micro-batch of validated votes with three round trips in all:

        1. Redis: each vote's admission (revoked key? quota left?), one script;
        2. PostgreSQL: one transaction inserting every admitted vote and its
           outbox event (a vote is acknowledged only after this commit);
        3. Redis: counts and rule windows of every stored vote, concurrently.

        While Redis is unreachable, quotas are checked against today's votes
        in the table and counts are read from the table (docs/operations.md).
        """
        admissions = await self.stores.quotas.admit([p.quota for p in pending])
        admitted = [p for p, a in zip(pending, admissions, strict=True) if a.admitted]
        charged = [p for p, a in zip(pending, admissions, strict=True) if a.charged]
        try:
            stored = await self.stores.votes.insert_batch([(p.vote, p.event) for p in admitted]) if admitted else {}
        except BaseException:
            await self.stores.quotas.refund([p.quota for p in charged])
            raise
        # The first of the same agent and item in the batch is the one stored.
        winners = {p.vote.key: p for p in reversed(admitted)}

        def stored_row(p: PendingVote) -> VoteRow | None:
            return stored.get(p.vote.key) if winners.get(p.vote.key) is p else None

        # Refused after being charged (already voted, or the same vote twice in this batch).
        await self.stores.quotas.refund([p.quota for p in charged if stored_row(p) is None])
        # The votes are committed from here on: nothing below may fail them.
        counts, reasons = await self._after_commit(list(stored.values()))
        outcomes = []
        for p, admission in zip(pending, admissions, strict=True):
            if admission.key_revoked:
                outcomes.append(CastOutcome("revoked"))
            elif not admission.admitted:
                outcomes.append(CastOutcome("over_quota", used=admission.used))
            elif (row := stored_row(p)) is None:
                outcomes.append(CastOutcome("duplicate"))
            else:
                outcomes.append(CastOutcome("stored", row, counts[row.key], reasons.get(row.key, "")))
        return outcomes

    async def _after_commit(self, stored: list[VoteRow]) -> tuple[dict[VoteKey, Counts], dict[VoteKey, str]]:
        """The stored votes' item counts and the rule each vote's agent now
        breaks. Never fails: the votes are committed and must be answered."""
        if not stored:
            return {}, {}
        # Two independent Redis scripts, overlapped: one round trip of latency.
        counted, recorded = await asyncio.gather(
            self.stores.counts.after_votes(stored), self.stores.windows.record(stored), return_exceptions=True
        )
        if isinstance(counted, BaseException):
            log.error("counting %d stored votes failed; answering with table counts", len(stored), exc_info=counted)
            try:
                counted = await self.stores.counts.from_table(stored)
            except Exception:  # noqa: BLE001 - committed votes must still be answered 200
                counted = {v.key: Counts(0, 0) for v in stored}
        reasons: dict[VoteKey, str] = {}
        if isinstance(recorded, BaseException):
            log.error("the abuse windows of %d stored votes were not recorded", len(stored), exc_info=recorded)
        else:
            for vote in stored:
                if (windows := recorded.get(vote.key)) is not None:
                    reasons[vote.key] = broken_rule(self.rules, windows, direction_field(vote.direction))
        return counted, reasons

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
