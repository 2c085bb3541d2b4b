from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.reputation.formula import (
    MAX_REPUTATION,
    agrees,
    days_active,
    reputation,
    reputation_factor,
    sign_flipped,
    trending_weight,
    vote_earns,
)


def test_formula_matches_the_contract() -> None:
    assert reputation(0, 0, 0) == 0
    assert reputation(3, 2, 0) == 5
    assert reputation(3, 2, 9) == 5  # 0.9 days of bonus truncates away
    assert reputation(3, 2, 10) == 6
    assert reputation(0, 0, 5000) == 100  # time bonus capped at 100
    assert reputation(900, 900, 10) == 1000  # total capped at 1000


@pytest.mark.parametrize("days", range(0, 2100, 7))
def test_sql_time_bonus_equals_the_float_formula(days: int) -> None:
    # store/projection.py computes min(days // 10, 100) in SQL; it must equal the contract's float form.
    for votes in (0, 1, 57, 998):
        assert reputation(votes, 0, days) == min(1000, votes + min(days // 10, 100))


def test_days_active_counts_whole_days() -> None:
    first = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert days_active(None, first) == 0
    assert days_active(first, first + timedelta(hours=23, minutes=59)) == 0
    assert days_active(first, first + timedelta(days=1)) == 1
    assert days_active(first, first + timedelta(days=35, hours=5)) == 35


def test_the_reputation_factor_is_monotonic_and_bounded() -> None:
    factors = [reputation_factor(score) for score in range(0, 1001, 50)]
    assert factors == sorted(factors) and factors[0] == 1.0 and factors[-1] == 5.0
    assert reputation_factor(-5) == 1.0
    assert reputation_factor(MAX_REPUTATION * 2) == 5.0


def test_trending_weight_is_the_chart_weight_times_the_reputation_factor() -> None:
    assert trending_weight(1.0, 0) == 1.0
    assert trending_weight(1.0, 1000) == 5.0
    assert trending_weight(0.25, 500) == pytest.approx(0.25 * 3.0)
    assert trending_weight(0.0, 1000) == 0.0  # flagged: 0 whatever the reputation


def test_a_vote_agrees_with_the_sign_of_the_items_score() -> None:
    assert agrees(1, 3) and agrees(-1, -1)
    assert not agrees(1, -2) and not agrees(-1, 7)
    assert not agrees(1, 0) and not agrees(-1, 0)  # an item at 0 agrees with nobody


def test_only_votes_cast_while_unflagged_earn() -> None:
    assert vote_earns(agent_flagged=False) is True
    assert vote_earns(agent_flagged=True) is False


@pytest.mark.parametrize(
    ("before", "after", "flipped"),
    [(1, 2, False), (-3, -1, False), (0, 0, False), (1, 0, True), (0, -1, True), (-1, 1, True), (0, 5, True)],
)
def test_sign_flips(before: int, after: int, flipped: bool) -> None:
    assert sign_flipped(before, after) is flipped
