"""The vote service's rules with fabricated counts: no Redis, no clock."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

import pytest

from services.common.config import VoteSettings
from services.vote.rules import (
    ABUSE_RULES,
    AbuseRule,
    Quotas,
    WindowCounts,
    abuse_rules,
    admit_in_order,
    broken_rule,
    quota_message,
    utc_day,
    windows_of,
)


def limits(**overrides: Any) -> VoteSettings:
    """The vote service's settings at their defaults, but for `overrides`."""
    base = VoteSettings.from_env({"DATABASE_URL": "-", "REDIS_URL": "-", "AIMUSICSTORE_ADMIN_KEY": "k" * 16})
    return dataclasses.replace(base, **overrides)


RULES = abuse_rules(limits())


def verdict(
    long: tuple[int, ...], short: tuple[int, ...], direction: str = "up", rules: Sequence[AbuseRule] = RULES
) -> str:
    """The rules' verdict with `short` counted in the burst window (10 s)
    and `long` in every other window: (up, down) or (up, down, run)."""
    windows = {w: WindowCounts(*(short if w == 10 else long)) for w in windows_of(rules)}
    return broken_rule(rules, windows, direction)


def test_every_declared_rule_reads_settings_that_exist() -> None:
    names = {f.name for f in fields(VoteSettings)}
    for spec in ABUSE_RULES:
        assert {spec.window_setting, spec.limit_setting} <= names, spec.name
    assert windows_of(RULES)[-1] == 10 and 300 in windows_of(RULES)


def test_more_than_the_limit_in_the_window_breaks_the_volume_rule() -> None:
    assert verdict((25, 25), (1, 1)) == ""
    assert verdict((26, 25), (1, 1)) == "more than 50 votes in 300 seconds"


def test_twenty_votes_all_one_way_break_the_one_way_rule() -> None:
    assert verdict((0, 19, 19), (0, 1), "down") == ""
    assert verdict((0, 20, 20), (0, 1), "down") == "20 votes in 300 seconds, all down"
    assert verdict((20, 0, 20), (1, 0), "up") == "20 votes in 300 seconds, all up"


def test_one_opposite_vote_first_does_not_reset_the_one_way_rule() -> None:
    # The run since the last opposite vote counts, not "the whole window".
    assert verdict((1, 20, 20), (0, 1), "down") == "20 votes in a row within 300 seconds, all down"
    assert verdict((1, 19, 19), (0, 1), "down") == ""
    # An opposite vote every so often keeps the run short: the cost of
    # evading it is votes the other way, and the ring detector's lookout.
    assert verdict((5, 40, 9), (0, 1), "down") == ""
    # The vote just cast the other way ends the run.
    assert verdict((1, 25, 1), (1, 0), "up") == ""


def test_a_burst_breaks_the_burst_rule() -> None:
    assert verdict((6, 4), (6, 4)) == ""
    assert verdict((6, 5), (6, 5)) == "more than 10 votes within 10 seconds"


def test_the_first_rule_broken_is_reported() -> None:
    assert verdict((51, 0), (11, 0)) == "more than 50 votes in 300 seconds"


def test_limits_come_from_the_settings() -> None:
    strict = abuse_rules(limits(abuse_burst_max=2, abuse_burst_window_s=5))
    assert broken_rule(strict, {w: WindowCounts(2, 1) for w in windows_of(strict)}, "up") == (
        "more than 2 votes within 5 seconds"
    )


def test_quotas_by_tier() -> None:
    quotas = Quotas(free=100, pro=1000)
    assert (quotas.limit("free"), quotas.limit("pro"), quotas.limit("enterprise")) == (100, 1000, None)


def test_admission_from_table_counts_charges_the_same_agent_in_order() -> None:
    verdicts = admit_in_order([("a", 2), ("a", 2), ("b", None), ("a", 2)], {"a": 1, "b": 10**6})
    assert verdicts == [(True, 1), (False, 2), (True, 10**6), (False, 2)]


@pytest.mark.parametrize(
    ("now", "day"),
    [
        (datetime(2026, 12, 6, 23, 59, 59, tzinfo=UTC), "20261206"),
        (datetime.fromisoformat("2026-12-07T00:30:00+02:00"), "20261206"),
    ],
)
def test_quota_days_are_utc(now: datetime, day: str) -> None:
    assert utc_day(now)[0] == day
    assert utc_day(now)[2] == datetime(2026, 12, 7, tzinfo=UTC)


def test_the_quota_message_says_when_it_resets() -> None:
    now = datetime(2026, 12, 6, 21, 15, tzinfo=UTC)
    message = quota_message("free", 100, utc_day(now)[2], now)
    assert message == (
        "daily vote quota of 100 for the free tier is used up; it resets at 2026-12-07T00:00:00Z (in 2h 45m)"
    )
