"""In-memory stand-ins for the vote service's stores and peers (the ports in
services/vote/voting.py), for unit tests of the domain without servers."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from services.common.errors import NotFound
from services.vote.model import Counts, VoteRow
from services.vote.rules import WindowCounts
from services.vote.store.admission import Admission, QuotaRequest

VoteKey = tuple[str, str, str]


@dataclass
class FakeVotes:
    rows: dict[VoteKey, VoteRow] = field(default_factory=dict)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    fail_inserts: bool = False
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    async def insert_batch(self, batch: Sequence[tuple[VoteRow, dict[str, Any]]]) -> dict[VoteKey, VoteRow]:
        if self.fail_inserts:
            raise ConnectionError("PostgreSQL is down")
        stored = {}
        for vote, event in batch:
            if vote.key in self.rows:
                continue
            row = replace(vote, id=next(self._ids))
            self.rows[vote.key] = stored[vote.key] = row
            self.outbox.append(event)
        return stored

    async def delete_vote(
        self, agent_id: str, item_type: str, item_id: str, event_for: Callable[[VoteRow], dict[str, Any]]
    ) -> VoteRow | None:
        removed = self.rows.pop((agent_id, item_type, item_id), None)
        if removed is not None:
            self.outbox.append(event_for(removed))
        return removed

    async def list_votes(
        self,
        *,
        agent_id: str | None = None,
        item: tuple[str, str] | None = None,
        reviews_only: bool = False,
        limit: int,
        after: tuple[datetime, int] | None,
    ) -> list[VoteRow]:
        found = [
            v
            for v in self.rows.values()
            if (agent_id is None or v.agent_id == agent_id)
            and (item is None or (v.item_type, v.item_id) == item)
            and (not reviews_only or v.has_review)
            and (after is None or (v.created_at, v.id) < after)
        ]
        return sorted(found, key=lambda v: (v.created_at, v.id), reverse=True)[:limit]

    def counts(self, item_type: str, item_id: str) -> Counts:
        directions = [v.direction for v in self.rows.values() if (v.item_type, v.item_id) == (item_type, item_id)]
        return Counts(directions.count(1), directions.count(-1))


@dataclass
class FakeQuotas:
    revoked: set[bytes] = field(default_factory=set)
    used: dict[tuple[str, str], int] = field(default_factory=dict)

    async def admit(self, requests: Sequence[QuotaRequest]) -> list[Admission]:
        out = []
        for r in requests:
            if r.key_hash in self.revoked:
                out.append(Admission(admitted=False, used=0, key_revoked=True))
                continue
            used = self.used.get((r.agent_id, r.day), 0)
            if r.limit is not None and used >= r.limit:
                out.append(Admission(admitted=False, used=used))
                continue
            self.used[(r.agent_id, r.day)] = used + 1
            out.append(Admission(admitted=True, used=used + 1, charged=True))
        return out

    async def refund(self, requests: Sequence[QuotaRequest]) -> None:
        for r in requests:
            self.used[(r.agent_id, r.day)] -= 1


@dataclass
class FakeWindows:
    """Counts every vote an agent ever cast in every window (the tests cast
    their votes within the shortest window)."""

    windows_s: Sequence[int]
    history: dict[str, list[int]] = field(default_factory=dict)
    broken: bool = False

    async def record(self, stored: Sequence[VoteRow]) -> dict[VoteKey, dict[int, WindowCounts]]:
        if self.broken:
            raise ConnectionError("Redis is down")
        out = {}
        for vote in stored:
            directions = self.history.setdefault(vote.agent_id, [])
            directions.append(vote.direction)
            run = len(directions) - next(
                (i + 1 for i in range(len(directions) - 1, -1, -1) if directions[i] != vote.direction), 0
            )
            counts = WindowCounts(directions.count(1), directions.count(-1), run)
            out[vote.key] = {w: counts for w in self.windows_s}
        return out


@dataclass
class FakeCounts:
    votes: FakeVotes

    async def after_votes(self, stored: Sequence[VoteRow]) -> dict[VoteKey, Counts]:
        return await self.from_table(stored)

    async def from_table(self, stored: Sequence[VoteRow]) -> dict[VoteKey, Counts]:
        return {v.key: self.votes.counts(v.item_type, v.item_id) for v in stored}

    async def after_retraction(self, removed: VoteRow) -> None:
        pass

    async def counts(self, item_type: str, item_id: str) -> Counts:
        return self.votes.counts(item_type, item_id)


@dataclass
class FakeCatalog:
    items: set[tuple[str, str]] = field(default_factory=set)

    async def require_item(self, item_type: str, item_id: str) -> None:
        if (item_type, item_id) not in self.items:
            raise NotFound(f"{item_type} {item_id!r} does not exist")


@dataclass
class FakeAgents:
    known: set[str] = field(default_factory=set)

    async def require_agent(self, agent_id: str) -> None:
        if agent_id not in self.known:
            raise NotFound(f"agent {agent_id!r} does not exist")


@dataclass
class FakeModeration:
    flags: list[tuple[str, str]] = field(default_factory=list)

    async def flag(self, agent_id: str, reason: str) -> bool:
        self.flags.append((agent_id, reason))
        return True
