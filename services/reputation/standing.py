"""Standing and vote weights, as pure functions: when an agent leaves
probation, and what one of its votes counts (docs/integrity.md, "Standing and
weights").

- `probation`: every new agent, and one whose flag was cleared until it
  meets the graduation rule again;
- `trusted`: met the graduation rule once; stays trusted until flagged
  (trust is not lost by going quiet or by retracting votes);
- `flagged`: wins over everything; a flag also ends trust, so clearing it
  puts the agent back on probation until the rule says otherwise.

The graduation rule asks for what a for-loop cannot produce in minutes: an
account some days old, votes on many items, spread over several UTC days,
and a clean record. Every threshold is a ReputationSettings setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from services.common import vocabulary
from services.common.config import ReputationSettings
from services.reputation.formula import trending_weight
from services.reputation.registrations import crowd_share

PROBATION, TRUSTED, FLAGGED = vocabulary.STANDINGS
TRUSTED_WEIGHT: Final = 1.0
FLAGGED_WEIGHT: Final = 0.0


def standing_of(flagged: bool, trusted: bool) -> str:
    """A flag wins over trust; an agent neither flagged nor trusted is on probation."""
    if flagged:
        return FLAGGED
    return TRUSTED if trusted else PROBATION


@dataclass(frozen=True)
class Activity:
    """What the graduation rule reads of one agent (store.Standings counts it)."""

    agent_id: str
    created_at: datetime
    # Live votes cast while unflagged. An agent votes at most once per item,
    # so this is also the number of distinct items it voted on.
    votes: int
    # Distinct UTC days those votes were cast on.
    active_days: int
    flagged: bool
    # When an admin last cleared a flag of this agent (None: never).
    flag_cleared_at: datetime | None


@dataclass(frozen=True)
class CandidateFilter:
    """Necessary conditions of the rule, for the store to narrow the agents it
    counts activity for (the rule decides on what it returns)."""

    created_before: datetime
    min_votes: int
    cleared_before: datetime


@dataclass(frozen=True)
class GraduationRule:
    min_age_days: int
    min_votes: int
    min_active_days: int
    flag_cooldown_days: int

    @classmethod
    def from_settings(cls, settings: ReputationSettings) -> GraduationRule:
        return cls(
            min_age_days=settings.trust_min_age_days,
            min_votes=settings.trust_min_votes,
            min_active_days=settings.trust_min_active_days,
            flag_cooldown_days=settings.trust_flag_cooldown_days,
        )

    def unmet(self, agent: Activity, now: datetime) -> list[str]:
        """The conditions the agent does not meet yet (empty: it graduates)."""
        missing = []
        if agent.flagged:
            missing.append("flagged")
        if now - agent.created_at < timedelta(days=self.min_age_days):
            missing.append("age")
        if agent.votes < self.min_votes:
            missing.append("votes")
        if agent.active_days < self.min_active_days:
            missing.append("active days")
        if agent.flag_cleared_at is not None and now - agent.flag_cleared_at < timedelta(days=self.flag_cooldown_days):
            missing.append("flag cooldown")
        return missing

    def graduates(self, agent: Activity, now: datetime) -> bool:
        return not self.unmet(agent, now)

    def candidates(self, now: datetime) -> CandidateFilter:
        return CandidateFilter(
            created_before=now - timedelta(days=self.min_age_days),
            min_votes=self.min_votes,
            cleared_before=now - timedelta(days=self.flag_cooldown_days),
        )


@dataclass(frozen=True)
class Weights:
    """What one vote of an agent counts: `chart` in every chart and history
    rank (services/common/weights.py CHART_WEIGHTS_KEY), `trending` in
    trending (WEIGHTS_KEY)."""

    chart: float
    trending: float


@dataclass(frozen=True)
class StandingPolicy:
    probation_weight: float
    graduation: GraduationRule
    # Agents one address registers within the window at the full probation
    # weight (registrations.py): the rest share it.
    crowd_free: int = 3

    @classmethod
    def from_settings(cls, settings: ReputationSettings) -> StandingPolicy:
        return cls(settings.probation_weight, GraduationRule.from_settings(settings), settings.registration_crowd_free)

    def chart_weight(self, standing: str, registration_crowd: int = 1) -> float:
        """`registration_crowd`: the agent was the n-th registered from its
        address within the window (1 when its address was not counted)."""
        if standing == FLAGGED:
            return FLAGGED_WEIGHT
        if standing == TRUSTED:
            return TRUSTED_WEIGHT
        return self.probation_weight * crowd_share(registration_crowd, self.crowd_free)

    def weights(self, standing: str, reputation_score: int, registration_crowd: int = 1) -> Weights:
        chart = self.chart_weight(standing, registration_crowd)
        return Weights(chart, trending_weight(chart, reputation_score))
