"""The consumer lag that the freshness promises are about: the oldest event not applied yet."""

from __future__ import annotations

from services.common.stream_progress import GroupPosition, lag_seconds, needed_from


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


# -- retention: what every group is done with --------------------------------


def test_with_no_group_nothing_is_known_consumed() -> None:
    assert needed_from([]) is None


def test_a_caught_up_group_needs_the_entry_after_its_last_delivered() -> None:
    assert needed_from([GroupPosition("", "", 0, last_delivered="5000-7")]) == (5000, 8)


def test_a_pending_entry_is_still_needed_though_later_ones_were_delivered() -> None:
    # It may be read again by its consumer or claimed by another.
    assert needed_from([GroupPosition("", "3000-2", 40, last_delivered="9000-0")]) == (3000, 2)


def test_the_slowest_group_decides() -> None:
    fast = GroupPosition("", "", 0, last_delivered="9000-0")
    slow = GroupPosition("4000-0", "", 0, last_delivered="3999-5")
    frozen = GroupPosition("", "6000-1", 12, last_delivered="8000-0")
    assert needed_from([fast, slow, frozen]) == (3999, 6)


def test_a_group_that_never_read_needs_everything() -> None:
    assert needed_from([GroupPosition("1-0", "", 0, last_delivered="0-0")]) == (0, 1)
