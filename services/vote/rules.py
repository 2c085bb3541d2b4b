"""The vote service's rules, as plain Python with no I/O: daily quotas and
the suspicious-agent (abuse) rules (API.md "Suspicious agents").

The stores only count: Redis keeps each agent's recent votes and answers,
per rule window, how many went up and how many down (store/admission.py);
the decisions are taken here, and unit-tested with fabricated counts
(tests/unit/vote/test_rules.py).

Adding an abuse rule: declare it in ABUSE_RULES, add its settings to
services/common/config.py (they document themselves in the README's table),
and test it. Nothing else changes: the windows the store counts follow from
the declarations.

The coordinated-voting rules (groups of agents, not one agent's window) are
in rings.py.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any


class Counted(enum.Enum):
    """What an abuse rule counts in its window."""

    # Every vote, either direction; broken past the limit.
    ALL_VOTES = "all votes"
    # The agent's latest votes in a row in one direction (since its last
    # opposite vote in the window); broken at the limit. One opposite vote
    # first must not reset the rule for the whole window, so the run is
    # counted, not "the window is all one way". A tolerance of a share of
    # opposite votes was tried first: with votes one in five down, it
    # flagged about one honest agent in ten casting 24 votes in 5 minutes
    # (a run of 20 flags about one in fifty, "all one way" one in ninety).
    ONE_WAY_VOTES = "one-way votes"


@dataclass(frozen=True)
class AbuseRuleSpec:
    """A rule as declared: what it counts, the settings holding its window
    (seconds) and limit, and the reason an agent is flagged with."""

    name: str
    counts: Counted
    window_setting: str
    limit_setting: str
    # str.format fields: limit, window_s, count, direction.
    reason: str
    # ONE_WAY_VOTES only: the reason when the window also holds opposite votes.
    mixed_reason: str = ""


ABUSE_RULES: tuple[AbuseRuleSpec, ...] = (
    AbuseRuleSpec(
        "too_many_votes",
        Counted.ALL_VOTES,
        "abuse_window_s",
        "abuse_max_votes",
        "more than {limit} votes in {window_s} seconds",
    ),
    AbuseRuleSpec(
        "all_one_way",
        Counted.ONE_WAY_VOTES,
        "abuse_window_s",
        "abuse_one_direction_min",
        "{count} votes in {window_s} seconds, all {direction}",
        mixed_reason="{count} votes in a row within {window_s} seconds, all {direction}",
    ),
    AbuseRuleSpec(
        "burst",
        Counted.ALL_VOTES,
        "abuse_burst_window_s",
        "abuse_burst_max",
        "more than {limit} votes within {window_s} seconds",
    ),
)


@dataclass(frozen=True)
class AbuseRule:
    spec: AbuseRuleSpec
    window_s: int
    limit: int

    def broken_by(self, window: WindowCounts, direction: str) -> str:
        """The reason this rule is broken by the agent's votes in its window
        (including the vote just cast, in `direction`), or ''."""
        if self.spec.counts is Counted.ALL_VOTES:
            count, broken, reason = window.total, window.total > self.limit, self.spec.reason
        else:
            count, broken = window.run, window.run >= self.limit
            # "all up" when the whole window went one way, else the run's length.
            reason = self.spec.reason if window.run == window.total else self.spec.mixed_reason
        if not broken:
            return ""
        return reason.format(limit=self.limit, window_s=self.window_s, count=count, direction=direction)


def abuse_rules(settings: Any, specs: Iterable[AbuseRuleSpec] = ABUSE_RULES) -> tuple[AbuseRule, ...]:
    """The declared rules with their windows and limits from the settings."""
    return tuple(
        AbuseRule(spec, int(getattr(settings, spec.window_setting)), int(getattr(settings, spec.limit_setting)))
        for spec in specs
    )


@dataclass(frozen=True)
class WindowCounts:
    """An agent's votes, by direction, in one window ending at its latest
    vote, and how many of them in a row went the latest vote's way (since
    the last opposite vote in the window; all of that direction if none)."""

    up: int
    down: int
    run: int = 0

    @property
    def total(self) -> int:
        return self.up + self.down


def windows_of(rules: Sequence[AbuseRule]) -> list[int]:
    """The distinct windows (seconds) the store must count, longest first."""
    return sorted({rule.window_s for rule in rules}, reverse=True)


def broken_rule(rules: Sequence[AbuseRule], windows: Mapping[int, WindowCounts], direction: str) -> str:
    """The first rule the agent's windows break ('' when none)."""
    for rule in rules:
        if reason := rule.broken_by(windows[rule.window_s], direction):
            return reason
    return ""


# -- daily quotas ---------------------------------------------------------------


@dataclass(frozen=True)
class Quotas:
    """Votes per UTC day by tier; None is unlimited."""

    free: int
    pro: int

    def limit(self, tier: str) -> int | None:
        return {"free": self.free, "pro": self.pro}.get(tier)


def admit_in_order(requests: Sequence[tuple[str, int | None]], used: Mapping[str, int]) -> list[tuple[bool, int]]:
    """Quota admission from counts read elsewhere (the votes table, while
    Redis is away): each (agent, limit) in order, the same agent twice
    charged twice. Returns per request (admitted, votes used before it)."""
    taken: dict[str, int] = {}
    verdicts = []
    for agent, limit in requests:
        so_far = used.get(agent, 0) + taken.get(agent, 0)
        admitted = limit is None or so_far < limit
        taken[agent] = taken.get(agent, 0) + (1 if admitted else 0)
        verdicts.append((admitted, so_far))
    return verdicts


def utc_day(now: datetime) -> tuple[str, datetime, datetime]:
    """The UTC day of `now` as YYYYMMDD, its start, and when the next one starts."""
    return _utc_day(now.astimezone(UTC).date())


@lru_cache(maxsize=8)  # computed once a day, not once a vote
def _utc_day(day: date) -> tuple[str, datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start.strftime("%Y%m%d"), start, start + timedelta(days=1)


def quota_message(tier: str, limit: int, resets_at: datetime, now: datetime) -> str:
    left = resets_at - now
    hours, rest = divmod(int(left.total_seconds()), 3600)
    return (
        f"daily vote quota of {limit} for the {tier} tier is used up; "
        f"it resets at {resets_at.strftime('%Y-%m-%dT%H:%M:%SZ')} (in {hours}h {rest // 60}m)"
    )


# -- bulk vote pace ---------------------------------------------------------------


class VotePace:
    """How fast one agent may vote through batches and streams: a token
    bucket per agent (`rate_per_s` votes a second, up to `burst` at once),
    for at most `max_agents` agents at a time (the least recently seen one
    is forgotten past it). Pure: the caller passes the time."""

    def __init__(self, rate_per_s: float, burst: int, max_agents: int = 100_000) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_agents = max_agents
        # agent -> (tokens, when they were counted); insertion order = recency.
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, agent_id: str, wanted: int, now: float) -> int:
        """How many of `wanted` votes the agent may cast now (taken at once)."""
        tokens, then = self._buckets.pop(agent_id, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + max(0.0, now - then) * self.rate_per_s)
        granted = min(wanted, int(tokens))
        self._buckets[agent_id] = (tokens - granted, now)
        if len(self._buckets) > self.max_agents:
            del self._buckets[next(iter(self._buckets))]
        return granted

    def retry_after_s(self, agent_id: str) -> int:
        """Seconds until the agent has one vote again (at least 1)."""
        tokens, _ = self._buckets.get(agent_id, (float(self.burst), 0.0))
        return max(1, int((1.0 - tokens) / self.rate_per_s + 0.999))
