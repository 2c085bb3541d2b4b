"""Trending: a time-decayed, reputation-weighted sum of votes (pure functions).

    trending(item, now) = sum over the item's live votes of
        weight(voter) * direction * 2 ** (-(now - voted_at) / half_life)

- direction is +1 or -1; weight is the trending weight the reputation
  service publishes (services/common/weights.py: the standing weight times
  the reputation factor, 0 while flagged; `probation_weight` for an agent
  it has not published), taken when the vote is applied and re-applied
  when the agent's weights change;
- a vote's influence halves every half_life (AIMUSICSTORE_TRENDING_HALF_LIFE_H,
  default 24 h), so among items with equal votes the more recent rank higher.

Stored form: Redis sorted sets hold sum(weight * direction * 2 ** ((voted_at -
epoch) / half_life)), i.e. every value scaled by the same 2 ** ((now - epoch) /
half_life). Ranking by the stored score is ranking by trending, each vote is
one ZINCRBY (O(log n)), and the reported trending_score divides the scale out.
The epoch is moved forward (all sets rebuilt) before the exponent grows large.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

MAX_EXPONENT = 200.0  # rebuild with a new epoch beyond this (2**200 is far from overflow)


def scaled_contribution(
    weight: float, direction: int, voted_at: datetime, epoch: datetime, half_life_s: float
) -> float:
    return weight * direction * math.pow(2.0, (voted_at - epoch).total_seconds() / half_life_s)


def unscale(stored: float, now: datetime, epoch: datetime, half_life_s: float) -> float:
    return stored * math.pow(2.0, -(now - epoch).total_seconds() / half_life_s)


def needs_new_epoch(now: datetime, epoch: datetime, half_life_s: float) -> bool:
    return (now - epoch).total_seconds() / half_life_s > MAX_EXPONENT


def keys_for(item_type: str, attributes: dict[str, str]) -> list[str]:
    """Every sorted set a vote on this item moves: the whole list and one per filter value."""
    keys = [f"trending:{item_type}"]
    for name in ("genre", "platform", "category"):
        value = attributes.get(name)
        if value:
            keys.append(f"trending:{item_type}:{name}:{value}")
    return keys


def key_for_filter(item_type: str, name: str, value: str) -> str:
    return f"trending:{item_type}:{name}:{value}"


@dataclass(frozen=True)
class TrendClock:
    """The trending scale: half-life, epoch and the clock (injectable in tests)."""

    half_life_s: float
    epoch: datetime
    now: Callable[[], datetime]

    def scaled(self, weight: float, direction: int, voted_at: datetime) -> float:
        return scaled_contribution(weight, direction, voted_at, self.epoch, self.half_life_s)
