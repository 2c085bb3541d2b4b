"""The daily song quota's decision, with fabricated counts (no store)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from services.ranking.submission_quota import SubmissionQuotas, quota_message, refusal, utc_day

NOW = datetime(2026, 12, 6, 18, 30, tzinfo=UTC)
QUOTAS = SubmissionQuotas(free=20, pro=200)


def test_each_tier_has_its_limit_and_enterprise_none() -> None:
    assert (QUOTAS.limit("free"), QUOTAS.limit("pro"), QUOTAS.limit("enterprise")) == (20, 200, None)


@pytest.mark.parametrize(("used", "refused"), [(1, False), (19, False), (20, False), (21, True), (500, True)])
def test_the_submission_past_the_limit_is_refused(used: int, refused: bool) -> None:
    assert (refusal("free", 20, used, NOW) is not None) == refused


def test_unlimited_is_never_refused() -> None:
    assert refusal("enterprise", None, 10**9, NOW) is None


def test_a_zero_quota_refuses_the_first() -> None:
    assert refusal("free", 0, 1, NOW) is not None


def test_the_refusal_names_the_tier_the_limit_and_the_reset() -> None:
    refused = refusal("pro", 200, 201, NOW)
    assert refused is not None
    assert refused.message == (
        "daily song submission quota of 200 for the pro tier is used up; it resets at 2026-12-07T00:00:00Z (in 5h 30m)"
    )
    assert refused.retry_after_s == 5 * 3600 + 30 * 60
    assert quota_message("free", 20, NOW + timedelta(minutes=1), NOW).endswith("(in 0h 1m)")


def test_the_day_is_the_utc_day() -> None:
    late_in_new_york = datetime(2026, 12, 6, 22, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert utc_day(late_in_new_york) == (date(2026, 12, 7), datetime(2026, 12, 8, tzinfo=UTC))
    assert utc_day(NOW) == (date(2026, 12, 6), datetime(2026, 12, 7, tzinfo=UTC))
