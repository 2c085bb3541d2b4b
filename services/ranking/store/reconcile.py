"""Reconciliation of the ranking service's item counts with the votes table.

The counts follow the vote events, applied exactly once, in any order; they
drift only if events are lost for good (trimmed from the stream before the
group read them: docs/operations.md, "Stream retention") or a bug. A pass
reads the next page of items (songs then tools, in id order, resuming where
the last pass stopped), asks the vote service for their true counts
(VoteLedgerService.CountItemVotes: this service never reads vote.votes),
and rewrites the counts that differ, with the same Redis copy a consumer
batch makes.

Never a false repair: the truth is only used for items the vote service
reports settled (no event of the item left in the outbox, so every group
applied every event committed before the truth was read), our counts are
read before the truth is asked for, and a rewrite only happens if they are
still what was read (a consumer batch that changed them since wins; the
next sweep checks again). Events committed after the truth was read come
later as changes on top of the repaired counts, as they would have.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from aimusicstore.vote.v1 import vote_ledger_service_pb2, vote_ledger_service_pb2_grpc
from services.ranking.store.item_cache import COUNT_FIELDS, ItemCache, NewCounts

log = logging.getLogger("ranking.reconcile")

COUNTS_REPAIRED = Counter(
    "ranking_counts_repaired_total",
    "Item counts the ranking service rewrote because they differed from the votes table",
    ["item_type"],
)
ITEM_TYPES = ("song", "tool")
for _item_type in ITEM_TYPES:  # exported at 0 before the first repair (an alert rule reads it)
    COUNTS_REPAIRED.labels(_item_type)

_PAGE = {
    "song": text("SELECT id, up_votes, down_votes, 0, 0, 0 FROM ranking.songs WHERE id > :after ORDER BY id LIMIT :n"),
    "tool": text(
        "SELECT id, up_votes, down_votes, rating_sum, rating_count, review_count FROM ranking.tools"
        " WHERE id > :after ORDER BY id LIMIT :n"
    ),
}
# Compare-and-set: rewritten only if still what the pass read.
_REPAIR = {
    "song": text(
        """
        UPDATE ranking.songs AS t SET up_votes = b.up, down_votes = b.down
        FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS b(id text, up int, down int, was_up int, was_down int)
        WHERE t.id = b.id AND t.up_votes = b.was_up AND t.down_votes = b.was_down
        RETURNING t.id, t.up_votes, t.down_votes
        """
    ),
    "tool": text(
        """
        UPDATE ranking.tools AS t SET up_votes = b.up, down_votes = b.down,
            rating_sum = b.rsum, rating_count = b.rcount, review_count = b.reviews
        FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS b(
            id text, up int, down int, rsum bigint, rcount int, reviews int,
            was_up int, was_down int, was_rsum bigint, was_rcount int, was_reviews int)
        WHERE t.id = b.id AND (t.up_votes, t.down_votes, t.rating_sum, t.rating_count, t.review_count)
            = (b.was_up, b.was_down, b.was_rsum, b.was_rcount, b.was_reviews)
        RETURNING t.id, t.up_votes, t.down_votes, t.rating_sum, t.rating_count, t.review_count
        """
    ),
}

Counts = tuple[int, int, int, int, int]  # up, down, rating sum, rating count, reviews


@dataclass
class PassResult:
    item_type: str
    checked: int
    unsettled: int
    repaired: int


class CountReconciler:
    def __init__(
        self,
        engine: AsyncEngine,
        ledger: vote_ledger_service_pb2_grpc.VoteLedgerServiceStub,
        item_cache: ItemCache,
        page_size: int,
    ) -> None:
        self.engine = engine
        self.ledger = ledger
        self.item_cache = item_cache
        self.page_size = page_size
        # Where the sweep resumes: the item type and the last id checked.
        self.item_type = ITEM_TYPES[0]
        self.after = ""

    async def reconcile(self) -> PassResult:
        """One pass: the next page of items; returns what it did."""
        item_type = self.item_type
        n = min(self.page_size, 1000)  # VoteLedgerService's limit per call
        async with self.engine.connect() as conn:
            page = [
                (row[0], tuple(int(v) for v in row[1:]))
                for row in await conn.execute(_PAGE[item_type], {"after": self.after, "n": n})
            ]
        ours: dict[str, Counts] = {item_id: counts for item_id, counts in page}  # type: ignore[misc]
        if len(page) < n:  # the end of this table: the next pass starts the next one
            self.item_type = ITEM_TYPES[(ITEM_TYPES.index(item_type) + 1) % len(ITEM_TYPES)]
            self.after = ""
        else:
            self.after = page[-1][0]
        if not page:
            return PassResult(item_type, 0, 0, 0)
        reply = await self.ledger.CountItemVotes(
            vote_ledger_service_pb2.CountItemVotesRequest(
                items=[vote_ledger_service_pb2.ItemRef(item_type=item_type, item_id=item_id) for item_id, _ in page]
            )
        )
        drifted, unsettled = [], 0
        for truth in reply.counts:
            if truth.item_type != item_type or truth.item_id not in ours:
                continue
            if not truth.settled:
                unsettled += 1
                continue
            want: Counts = (truth.up_votes, truth.down_votes, truth.rating_sum, truth.rating_count, truth.review_count)
            if item_type == "song":
                want = (*want[:2], 0, 0, 0)
            if want != ours[truth.item_id]:
                drifted.append((truth.item_id, ours[truth.item_id], want))
        repaired = await self._repair(item_type, drifted) if drifted else 0
        return PassResult(item_type, len(page), unsettled, repaired)

    async def _repair(self, item_type: str, drifted: list[tuple[str, Counts, Counts]]) -> int:
        rows = [
            {
                "id": item_id,
                "up": want[0],
                "down": want[1],
                "rsum": want[2],
                "rcount": want[3],
                "reviews": want[4],
                "was_up": was[0],
                "was_down": was[1],
                "was_rsum": was[2],
                "was_rcount": was[3],
                "was_reviews": was[4],
            }
            for item_id, was, want in drifted
        ]
        fields = COUNT_FIELDS[item_type]
        new_counts: NewCounts = {}
        async with self.engine.begin() as conn:
            for row in await conn.execute(_REPAIR[item_type], {"rows": json.dumps(rows)}):
                new_counts[(item_type, row.id)] = {f: int(row._mapping[f]) for f in fields}
        await self.item_cache.copy_counts(new_counts)
        if new_counts:
            COUNTS_REPAIRED.labels(item_type).inc(len(new_counts))
            wanted = {item_id: (was, want) for item_id, was, want in drifted}
            log.warning(
                "item counts repaired from the votes table",
                extra={
                    "item_type": item_type,
                    "repaired": len(new_counts),
                    # A few examples: (id, what we had, what the table says).
                    "examples": [[i, *wanted[i]] for _, i in sorted(new_counts)[:5]],
                },
            )
        return len(new_counts)
