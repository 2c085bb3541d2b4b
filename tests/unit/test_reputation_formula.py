from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.reputation.engine import days_active, reputation, trending_weight


def test_formula_matches_the_contract() -> None:
    assert reputation(0, 0, 0) == 0
    assert reputation(3, 2, 0) == 5
    assert reputation(3, 2, 9) == 5  # 0.9 days of bonus truncates away
    assert reputation(3, 2, 10) == 6
    assert reputation(0, 0, 5000) == 100  # time bonus capped at 100
    assert reputation(900, 900, 10) == 1000  # total capped at 1000


@pytest.mark.parametrize("days", range(0, 2100, 7))
def test_sql_time_bonus_equals_the_float_formula(days: int) -> None:
    # store.py computes min(days // 10, 100) in SQL; it must equal the contract's float form.
    for votes in (0, 1, 57, 998):
        assert reputation(votes, 0, days) == min(1000, votes + min(days // 10, 100))


def test_days_active_counts_whole_days() -> None:
    first = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert days_active(None, first) == 0
    assert days_active(first, first + timedelta(hours=23, minutes=59)) == 0
    assert days_active(first, first + timedelta(days=1)) == 1
    assert days_active(first, first + timedelta(days=35, hours=5)) == 35


def test_trending_weight_is_monotonic_and_zero_when_flagged() -> None:
    weights = [trending_weight(score, flagged=False) for score in range(0, 1001, 50)]
    assert weights == sorted(weights) and weights[0] == 1.0 and weights[-1] == 5.0
    assert trending_weight(1000, flagged=True) == 0.0
