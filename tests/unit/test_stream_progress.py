"""The consumer lag that the freshness promises are about: the oldest event not applied yet."""

from __future__ import annotations

from services.common.stream_progress import GroupPosition, lag_seconds


def test_caught_up_is_zero() -> None:
    assert lag_seconds(GroupPosition("", "", 0), now_ms=10_000) == 0.0


def test_an_undelivered_entry_counts_from_its_publish_time() -> None:
    assert lag_seconds(GroupPosition("7000-3", "", 0), now_ms=10_000) == 3.0


def test_a_batch_held_by_a_frozen_consumer_counts_though_everything_was_delivered() -> None:
    assert lag_seconds(GroupPosition("", "2000-0", 500), now_ms=10_000) == 8.0


def test_the_older_of_pending_and_undelivered_wins() -> None:
    assert lag_seconds(GroupPosition("9000-0", "4000-1", 10), now_ms=10_000) == 6.0


def test_clock_skew_never_gives_a_negative_lag() -> None:
    assert lag_seconds(GroupPosition("12000-0", "", 0), now_ms=10_000) == 0.0
