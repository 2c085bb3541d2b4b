"""What the vote domain (voting.py, casting.py) needs of its stores and of
the other services: narrow Protocols, so tests/unit/vote/ runs the domain
against in-memory fakes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from services.vote.model import Counts, VoteRow
from services.vote.rules import WindowCounts
from services.vote.store.admission import Admission, QuotaRequest

VoteKey = tuple[str, str, str]


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
    async def flag(self, agent_id: str, reason: str) -> bool:
        """True once the reputation service answered (flagged, or already was)."""
        ...


@dataclass(frozen=True)
class VoteStores:
    votes: VotesPort
    quotas: QuotaPort
    windows: WindowsPort
    counts: CountsPort
