"""Casting, retracting, counting and listing votes: the vote service's
domain, free of gRPC. The decisions are in rules.py; the stores it is given
(store/) count and persist, and are reached through the ports in ports.py,
so tests/unit/vote/ runs this class against in-memory fakes. A validated
vote goes through a micro-batch (casting.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from services.common import pagination, tracing, validation, vocabulary
from services.common.auth import Caller
from services.common.batching import MicroBatcher, Overloaded
from services.common.errors import (
    AlreadyExists,
    DomainError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from services.vote.casting import BatchCaster, CastOutcome, PendingVote
from services.vote.event import vote_event
from services.vote.model import Counts, VoteRow
from services.vote.ports import AgentsPort, CatalogPort, ModerationPort, VoteStores
from services.vote.rules import AbuseRule, Quotas, VotePace, quota_message, utc_day
from services.vote.store.admission import QuotaRequest

log = logging.getLogger("voting")

DIRECTIONS = vocabulary.VOTE_SIGNS
MAX_COMMENT_CHARS = 2000
REVOKED_KEY = "the API key is not valid (revoked, rotated or never issued)"


class OverQuota(ResourceExhausted):
    """The agent's daily vote quota is used up."""


class TooFast(ResourceExhausted):
    """The agent votes faster than batches and streams allow (VotePace)."""


@dataclass(frozen=True)
class Ballot:
    """One vote as an agent sends it, not yet validated."""

    item_type: str
    item_id: str
    vote: str
    comment: str = ""
    rating: int | None = None
    agent_id: str = ""


@dataclass(frozen=True)
class BallotResult:
    """A ballot's outcome: the stored vote and its item's counts, or the
    error a single vote would have been refused with."""

    item_type: str
    item_id: str
    vote: VoteRow | None = None
    counts: Counts | None = None
    error: DomainError | None = None
    # The abuse rule this vote made the agent break ('' when none).
    broken_rule: str = ""

    @property
    def status(self) -> str:
        """ "recorded", or why not (vocabulary.VOTE_RESULT_STATUSES)."""
        return "recorded" if self.error is None else _refusal(self.error)[0]

    @property
    def http_status(self) -> int:
        """What CastVote would have answered for this vote alone."""
        return 200 if self.error is None else _refusal(self.error)[1]


# A refused ballot's status in a batch or stream result, and the HTTP status
# CastVote gives the same refusal (first match wins: TooFast before quotas).
_REFUSALS: tuple[tuple[type[DomainError], str, int], ...] = (
    (AlreadyExists, "already_voted", 409),
    (TooFast, "rate_limited", 429),
    (ResourceExhausted, "quota_exceeded", 429),
    (NotFound, "not_found", 404),
    (InvalidArgument, "invalid", 400),
    (PermissionDenied, "invalid", 403),
    (Unauthenticated, "invalid", 401),
)


def _at_capacity(overloaded: Overloaded) -> Unavailable:
    return Unavailable(f"the vote service is at capacity ({overloaded}); retry in a second", retry_after_s=1)


def _refusal(error: DomainError) -> tuple[str, int]:
    for kind, status, http_status in _REFUSALS:
        if isinstance(error, kind):
            return status, http_status
    return "invalid", 400


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
        pace: VotePace | None = None,
        batches_in_flight: int = 1,
        max_queued_votes: int | None = None,
    ) -> None:
        self.stores = stores
        self.catalog = catalog
        self.agents = agents
        self.moderation = moderation
        self.quotas = quotas
        self.rules = tuple(rules)
        self.clock = clock
        self.pace = pace or VotePace(rate_per_s=2000.0, burst=2000)
        # Concurrent votes share their Redis and PostgreSQL round trips.
        self.batcher: MicroBatcher[PendingVote, CastOutcome] = MicroBatcher(
            BatchCaster(stores, rules).cast,
            max_batch=256,
            max_wait_s=0.002,
            in_flight=batches_in_flight,
            max_queued=max_queued_votes,
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
        """One vote (CastVote): its refusal raised as the domain error."""
        (result,) = await self.cast_many(caller, [Ballot(item_type, item_id, vote, comment, rating, agent_id)])
        if result.error is not None:
            raise result.error
        assert result.vote is not None and result.counts is not None
        return result.vote, result.counts

    async def cast_many(self, caller: Caller, ballots: Sequence[Ballot], *, bulk: bool = False) -> list[BallotResult]:
        """Each ballot cast under every rule of a single vote, with its own
        result in order; only a caller who cannot vote at all fails the
        whole call. `bulk` (batches and streams) also paces the agent
        (VotePace: `rate_limited` past it)."""
        if caller.is_admin:
            raise PermissionDenied("votes are cast by agents: use an agent's API key, not the admin key")
        try:
            # Before any work: under overload, refusing must cost next to nothing.
            self.batcher.check_room(len(ballots))
        except Overloaded as overloaded:
            raise _at_capacity(overloaded) from None
        results: list[BallotResult | None] = [None] * len(ballots)
        valid: dict[int, tuple[str, str, int, str, int | None]] = {}
        for n, ballot in enumerate(ballots):
            try:
                valid[n] = self._validated(caller, ballot)
            except DomainError as refused:
                results[n] = BallotResult(ballot.item_type[:64], ballot.item_id[:64], error=refused)
        # A second vote on an item in one call is already voted before it
        # is charged to the quota (a later vote of the call may need that).
        firsts: set[tuple[str, str]] = set()
        for n, (item_type, item_id, *_) in list(valid.items()):
            if (item_type, item_id) in firsts:
                results[n] = BallotResult(item_type, item_id, error=AlreadyExists("Already voted"))
                del valid[n]
            firsts.add((item_type, item_id))
        missing = await self._missing_items(firsts)
        for n, (item_type, item_id, *_) in list(valid.items()):
            if (error := missing.get((item_type, item_id))) is not None:
                results[n] = BallotResult(item_type, item_id, error=error)
                del valid[n]
        if bulk and valid:
            granted = self.pace.take(caller.agent_id, len(valid), time.monotonic())
            for n in list(valid)[granted:]:
                item_type, item_id, *_ = valid.pop(n)
                message = f"more than {self.pace.rate_per_s:g} votes a second through batches and streams"
                results[n] = BallotResult(
                    item_type, item_id, error=TooFast(message, self.pace.retry_after_s(caller.agent_id))
                )

        now = self.clock()
        day, day_start, resets_at = utc_day(now)
        limit = self.quotas.limit(caller.tier)
        quota = QuotaRequest(caller.agent_id, caller.key_hash, day, day_start.date(), limit)
        traceparent = tracing.current_traceparent()
        pending = []
        for item_type, item_id, direction, comment, rating in valid.values():
            row = VoteRow(caller.agent_id, item_type, item_id, direction, comment, rating, now)
            pending.append(PendingVote(row, vote_event("vote", row, now, traceparent), quota))
        try:
            outcomes = await self.batcher.submit_many(pending) if pending else []
        except Overloaded as overloaded:
            raise _at_capacity(overloaded) from None
        broken = ""
        for n, p, outcome in zip(valid, pending, outcomes, strict=True):
            results[n] = self._result(p.vote, outcome, caller, limit, resets_at, now)
            broken = broken or outcome.broken_rule
        if broken and not caller.flagged:
            await self.moderation.flag(caller.agent_id, broken)
        return [r for r in results if r is not None]

    def _validated(self, caller: Caller, ballot: Ballot) -> tuple[str, str, int, str, int | None]:
        if ballot.agent_id and ballot.agent_id != caller.agent_id:
            raise PermissionDenied("agent_id does not match the agent that owns this API key")
        item_type = validation.item_type(ballot.item_type)
        item_id = validation.identifier("item_id", ballot.item_id)
        direction = DIRECTIONS.get(ballot.vote)
        if direction is None:
            raise InvalidArgument("vote", f"must be 'up' or 'down' (got {ballot.vote[:40]!r})")
        comment = validation.text("comment", ballot.comment, max_len=MAX_COMMENT_CHARS)
        if ballot.rating is not None:
            if item_type != "tool":
                raise InvalidArgument("rating", "is allowed only on tools")
            validation.int_range("rating", ballot.rating, 1, 5)
        return item_type, item_id, direction, comment, ballot.rating

    async def _missing_items(self, items: set[tuple[str, str]]) -> dict[tuple[str, str], NotFound]:
        """The items that do not exist, each with its NotFound (other
        failures, such as the catalog being away, fail the call)."""
        if len(items) == 1:  # the single-vote path: no gather
            (item,) = items
            try:
                await self.catalog.require_item(*item)
            except NotFound as absent:
                return {item: absent}
            return {}
        ordered = sorted(items)
        found = await asyncio.gather(*(self.catalog.require_item(*i) for i in ordered), return_exceptions=True)
        missing = {}
        for item, outcome in zip(ordered, found, strict=True):
            if isinstance(outcome, NotFound):
                missing[item] = outcome
            elif isinstance(outcome, BaseException):
                raise outcome
        return missing

    @staticmethod
    def _result(
        row: VoteRow, outcome: CastOutcome, caller: Caller, limit: int | None, resets_at: datetime, now: datetime
    ) -> BallotResult:
        item_type, item_id = row.item_type, row.item_id
        if outcome.status == "revoked":
            return BallotResult(item_type, item_id, error=Unauthenticated(REVOKED_KEY))
        if outcome.status == "over_quota":
            # Retry-After: when the quota resets (the next UTC day).
            retry_after_s = max(1, int((resets_at - now).total_seconds()) + 1)
            message = quota_message(caller.tier, limit or 0, resets_at, now)
            return BallotResult(item_type, item_id, error=OverQuota(message, retry_after_s))
        if outcome.status == "duplicate":
            return BallotResult(item_type, item_id, error=AlreadyExists("Already voted"))
        return BallotResult(item_type, item_id, outcome.vote, outcome.counts, broken_rule=outcome.broken_rule)

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
