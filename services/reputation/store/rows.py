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


class AgentScore(NamedTuple):
    """An agent's reputation and flag: what its trending weight derives from."""

    agent_id: str
    reputation_score: int
    flagged: bool
