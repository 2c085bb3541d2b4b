"""The vote service's values: a vote as stored, and an item's counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class VoteRow:
    agent_id: str
    item_type: str
    item_id: str
    direction: int
    comment: str
    rating: int | None
    created_at: datetime
    id: int = 0

    @property
    def key(self) -> tuple[str, str, str]:
        """One vote per agent and item: what identifies it."""
        return (self.agent_id, self.item_type, self.item_id)

    @property
    def has_review(self) -> bool:
        return bool(self.comment) or self.rating is not None


@dataclass(frozen=True)
class Counts:
    up: int
    down: int

    @property
    def score(self) -> int:
        return self.up - self.down


def direction_field(direction: int) -> str:
    """+1/-1 as the name the API and the count hashes use."""
    return "up" if direction > 0 else "down"
