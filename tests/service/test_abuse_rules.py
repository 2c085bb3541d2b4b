"""The suspicious-agent rules over windows counted by the real Lua script in
the real Redis, with vote times chosen by the test (an injected clock). The
rules alone are unit-tested in tests/unit/vote/test_rules.py."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from devstack.stack import Stack
from services.vote.model import VoteRow
from services.vote.rules import abuse_rules, broken_rule, windows_of
from services.vote.store.admission import RuleWindows
from tests.unit.vote.test_rules import limits

pytestmark = pytest.mark.service


RULES = abuse_rules(limits())
_ids = itertools.count(1)


def _reasons(stack: Stack, plan: list[tuple[float, int]]) -> list[str]:
    """Feeds votes at (seconds after start, direction) and returns each vote's verdict."""

    async def run() -> list[str]:
        redis = Redis.from_url(stack.redis_url or "", decode_responses=True)
        windows = RuleWindows(redis, redis, windows_of(RULES))
        agent = f"rules-{uuid.uuid4().hex[:8]}"
        start = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
        verdicts = []
        try:
            for offset, direction in plan:
                row = VoteRow(
                    agent, "song", f"s-{next(_ids)}", direction, "", None, start + timedelta(seconds=offset), next(_ids)
                )
                counted = await windows.record([row])
                verdicts.append(broken_rule(RULES, counted[row.key], "up" if direction > 0 else "down"))
        finally:
            await redis.aclose()
        return verdicts

    return asyncio.run(run())


def test_more_than_ten_votes_within_ten_seconds(backing: Stack) -> None:
    verdicts = _reasons(backing, [(i * 0.5, 1 if i % 2 else -1) for i in range(11)])
    assert verdicts[:10] == [""] * 10
    assert verdicts[10] == "more than 10 votes within 10 seconds"


def test_twenty_votes_all_one_way_within_five_minutes(backing: Stack) -> None:
    verdicts = _reasons(backing, [(i * 2.0, -1) for i in range(20)])
    assert verdicts[:19] == [""] * 19
    assert verdicts[19] == "20 votes in 300 seconds, all down"


def test_mixed_directions_do_not_trip_the_one_way_rule(backing: Stack) -> None:
    plan = [(i * 2.0, -1 if i % 4 else 1) for i in range(24)]  # 18 down, 6 up
    assert all(v == "" for v in _reasons(backing, plan))


def test_one_opposite_vote_first_does_not_evade_the_one_way_rule(backing: Stack) -> None:
    verdicts = _reasons(backing, [(0.0, 1)] + [(2.0 + i * 2.0, -1) for i in range(20)])
    assert verdicts[:20] == [""] * 20
    assert verdicts[20] == "20 votes in a row within 300 seconds, all down"


def test_an_opposite_vote_every_few_votes_keeps_the_run_short(backing: Stack) -> None:
    plan = [(i * 2.0, 1 if i % 10 == 0 else -1) for i in range(40)]  # 36 down, 4 up, runs of 9
    assert all(v == "" for v in _reasons(backing, plan))


def test_more_than_fifty_votes_within_five_minutes(backing: Stack) -> None:
    verdicts = _reasons(backing, [(i * 1.5, 1 if i % 2 else -1) for i in range(51)])
    assert verdicts[:50] == [""] * 50
    assert verdicts[50] == "more than 50 votes in 300 seconds"


def test_old_votes_leave_the_window(backing: Stack) -> None:
    # 19 down votes, then one more 301 s after the first: only 19 remain in the window... plus itself.
    plan = [(i * 2.0, -1) for i in range(19)] + [(301.0 + 36.0, -1)]
    verdicts = _reasons(backing, plan)
    assert verdicts[-1] == ""
