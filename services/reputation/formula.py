"""The reputation service's rules, as pure functions: the reputation formula,
which votes earn, when an item's sign flips, and the trending weight (the
standing weight, services/reputation/standing.py, times the reputation factor).

API.md: reputation = min(1000, int(votes_cast + agreements + min(0.1 * days_active, 100)))
where agreements counts the agent's votes whose direction matches the sign of
the item's current score, and days_active is whole days since its first vote.
The SQL in store/projection.py computes the same value for many agents at
once, with `min(days_active // 10, 100)` for the time bonus (equal for whole
days, and free of float rounding); tests check the two agree.
"""

from __future__ import annotations

from datetime import datetime

MAX_REPUTATION = 1000
MAX_TIME_BONUS = 100
# Whole days active per point of time bonus (the contract's 0.1 per day).
DAYS_PER_BONUS_POINT = 10


def days_active(first_vote_at: datetime | None, now: datetime) -> int:
    if first_vote_at is None:
        return 0
    return max(0, (now - first_vote_at).days)


def reputation(votes_cast: int, agreements: int, days: int) -> int:
    return min(MAX_REPUTATION, int(votes_cast + agreements + min(0.1 * days, MAX_TIME_BONUS)))


def agrees(direction: int, item_score: int) -> bool:
    """A vote agrees when its direction is the sign of the item's current score
    (a vote on an item at 0 agrees with nobody)."""
    return sign(item_score) == direction


def vote_earns(agent_flagged: bool) -> bool:
    """A vote cast while its agent is flagged never earns reputation, not even
    after the flag is cleared: the vote stays in the projection with
    earns = false. (A flagged agent's score is also frozen while the flag
    lasts: the recompute skips flagged agents.)"""
    return not agent_flagged


def sign(value: int) -> int:
    return (value > 0) - (value < 0)


def sign_flipped(score_before: int, score_after: int) -> bool:
    """Whether an item's score changed sign, which changes the agreements (and
    so the reputation) of every agent who voted on it, not only the voters in
    the batch."""
    return sign(score_before) != sign(score_after)


def reputation_factor(reputation_score: int) -> float:
    """How much reputation multiplies a vote in trending: 1 for a new agent,
    rising linearly to 5 at the maximum reputation. Monotonic in reputation;
    bounded so no single agent dominates."""
    return 1.0 + 4.0 * min(max(reputation_score, 0), MAX_REPUTATION) / MAX_REPUTATION


def trending_weight(chart_weight: float, reputation_score: int) -> float:
    """How much one vote of this agent moves trending: its standing weight
    (services/reputation/standing.py: 0 while flagged) times the reputation
    factor."""
    return chart_weight * reputation_factor(reputation_score)
