"""The rows the reputation store hands out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple


@dataclass(frozen=True)
class AgentRow:
    id: str
    name: str
    tier: str
    reputation_score: int
    vote_count: int
    created_at: datetime
    last_vote_at: datetime | None
    flagged: bool
    flag_reason: str
    # Set while flagged (the moderation queue's order).
    flagged_at: datetime | None
    # Set once the agent met the graduation rule; a flag clears it.
    trusted_at: datetime | None
    # It was the n-th agent registered from its client address within the
    # window (1: the first, or its address was not counted): registrations.py.
    registration_crowd: int

    @property
    def trusted(self) -> bool:
        return self.trusted_at is not None


class AgentScore(NamedTuple):
    """An agent's reputation, flag and trust: what its weights derive from."""

    agent_id: str
    reputation_score: int
    flagged: bool
    trusted: bool
    registration_crowd: int
