"""Casting a micro-batch of validated votes: admission, one transaction,
then counts and the abuse rules, with the fewest round trips (the vote
path's cost is per batch, not per vote)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.vote.model import Counts, VoteRow, direction_field
from services.vote.ports import VoteKey, VoteStores
from services.vote.rules import AbuseRule, broken_rule
from services.vote.store.admission import QuotaRequest

log = logging.getLogger("voting")


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


class BatchCaster:
    def __init__(self, stores: VoteStores, rules: Sequence[AbuseRule]) -> None:
        self.stores = stores
        self.rules = tuple(rules)

    async def cast(self, pending: list[PendingVote]) -> list[CastOutcome]:
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
