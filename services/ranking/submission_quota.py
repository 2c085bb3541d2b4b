"""The daily quota of song submissions per agent, by tier, as plain Python
with no I/O (docs/integrity.md, "Rate limits").

The catalog store counts each agent's accepted submissions per UTC day, in
the transaction that stores the song (store/catalog.py), and asks the
charge's `admit` before it commits; the decision is taken here and
unit-tested with fabricated counts (tests/unit/ranking/test_submission_quota.py).
The admin is never counted; enterprise agents are counted but unlimited.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta


@dataclass(frozen=True)
class SubmissionQuotas:
    """Songs per UTC day by tier; a tier not named here (enterprise) is unlimited."""

    free: int
    pro: int

    def limit(self, tier: str) -> int | None:
        return {"free": self.free, "pro": self.pro}.get(tier)


@dataclass(frozen=True)
class Charge:
    """One submission to count against an agent's day. `admit` is called,
    inside the transaction, with the agent's submissions that day this one
    included; it raises to refuse (nothing is stored or counted then)."""

    agent_id: str
    day: date
    admit: Callable[[int], None]


def utc_day(now: datetime) -> tuple[date, datetime]:
    """The UTC day of `now`, and when the next one starts (the quota's reset)."""
    day = now.astimezone(UTC).date()
    return day, datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)


@dataclass(frozen=True)
class Refusal:
    message: str
    retry_after_s: int  # until the quota resets


def refusal(tier: str, limit: int | None, used: int, now: datetime) -> Refusal | None:
    """Why the submission that brings the agent's day to `used` is refused,
    or None when it is within the quota."""
    if limit is None or used <= limit:
        return None
    resets_at = utc_day(now)[1]
    return Refusal(quota_message(tier, limit, resets_at, now), math.ceil((resets_at - now).total_seconds()))


def quota_message(tier: str, limit: int, resets_at: datetime, now: datetime) -> str:
    left = resets_at - now
    hours, rest = divmod(int(left.total_seconds()), 3600)
    return (
        f"daily song submission quota of {limit} for the {tier} tier is used up; "
        f"it resets at {resets_at.strftime('%Y-%m-%dT%H:%M:%SZ')} (in {hours}h {rest // 60}m)"
    )
