"""What a batch of vote events changes: counts, daily tallies, live votes."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta, timezone

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.ranking.vote_batch import (
    AgentWeights,
    CountChange,
    ProjectedVote,
    agent_weights,
    count_changes,
    live_vote_changes,
    reweighed_days,
    stale_chart_weights,
)

_ids = itertools.count(1)


def event(
    kind: str, agent: str, item: str, direction: int = 1, day: int = 1, rating: int | None = None, review: bool = False
) -> VoteEvent:
    result = VoteEvent(
        event_id=next(_ids),
        type=kind,
        agent_id=agent,
        item_type="tool",
        item_id=item,
        direction=direction,
        has_review=review,
    )
    if rating is not None:
        result.rating = rating
    result.voted_at.FromDatetime(datetime(2026, 3, day, 23, 59, tzinfo=UTC))
    return result


def test_live_votes_keep_each_agents_newest_event() -> None:
    retracted, cast = live_vote_changes(
        [
            event("vote", "b", "t1"),
            event("retract", "a", "t1"),
            event("vote", "a", "t1", direction=-1),  # voted again after retracting
            event("vote", "c", "t2"),
            event("retract", "c", "t2"),
        ]
    )
    assert [key for key, _ in retracted] == [("c", "tool", "t2")]
    assert [(key, e.direction) for key, e in cast] == [(("a", "tool", "t1"), -1), (("b", "tool", "t1"), 1)]


def test_the_newest_event_stands_whatever_the_order_in_the_batch() -> None:
    vote, retraction = event("vote", "a", "t1"), event("retract", "a", "t1")
    retracted, cast = live_vote_changes([retraction, vote])  # read out of order
    assert ([key for key, _ in retracted], cast) == ([("a", "tool", "t1")], [])


def projected(
    item: str, direction: int, weight: float, day: int = 1, rating: int | None = None, review: bool = False
) -> ProjectedVote:
    # As PostgreSQL hands it back: in the session's time zone (here UTC+2,
    # so the vote cast at 23:59 UTC reads as the next day there).
    voted_at = datetime(2026, 3, day, 23, 59, tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    return ProjectedVote("tool", item, direction, voted_at, weight, rating, review)


def test_counts_follow_what_the_projection_took_in_and_gave_up() -> None:
    items, days = count_changes(
        removed=[projected("t1", 1, 0.25, rating=4, review=True)],  # held at 0.25 (on probation when cast)
        added=[
            projected("t1", 1, 1.0, rating=5, review=True),
            projected("t1", -1, 0.25, rating=2),
            projected("t0", -1, 1.0, day=2),
        ],
    )
    assert items == [
        (("tool", "t0"), CountChange(down=1)),
        (("tool", "t1"), CountChange(up=0, down=1, rating_sum=3, rating_count=1, reviews=0)),
    ]
    assert days == [
        (("tool", "t0", date(2026, 3, 2)), CountChange(down=1, weighted_down=1.0)),
        (("tool", "t1", date(2026, 3, 1)), CountChange(up=0, down=1, weighted_up=0.75, weighted_down=0.25)),
    ]


def test_an_event_that_changes_no_projected_vote_changes_no_count() -> None:
    assert count_changes() == ([], [])


def test_reweighing_moves_each_days_weighted_sums_by_the_difference() -> None:
    old = [
        projected("t1", 1, 1.0),
        projected("t1", 1, 0.25),
        projected("t1", -1, 0.25),
        projected("t2", 1, 0.25, day=2),
        projected("t3", 1, 0.0, day=3),  # already at the new weight: left out
    ]
    assert reweighed_days(old, 0.0) == [
        (("tool", "t1", date(2026, 3, 1)), CountChange(weighted_up=-1.25, weighted_down=-0.25)),
        (("tool", "t2", date(2026, 3, 2)), CountChange(weighted_up=-0.25)),
    ]
    assert reweighed_days([projected("t1", -1, 0.25)], 1.0) == [
        (("tool", "t1", date(2026, 3, 1)), CountChange(weighted_down=0.75))
    ]


def test_an_agent_with_no_published_weight_is_on_probation() -> None:
    assert agent_weights(None, None, 0.25) == AgentWeights(trending=0.25, chart=0.25)
    assert agent_weights("0", "0", 0.25) == AgentWeights(trending=0.0, chart=0.0)
    assert agent_weights("1.8", "1", 0.25) == AgentWeights(trending=1.8, chart=1.0)


def test_agents_whose_votes_hold_another_chart_weight_than_published_are_stale() -> None:
    held = [("flagged", 0.25), ("mixed", 1.0), ("mixed", 0.25), ("right", 1.0), ("unknown", 0.25)]
    published = {"flagged": 0.0, "mixed": 1.0, "right": 1.0}
    # A vote applied with a weight, another since with another (a batch that
    # raced the change): any vote off the published weight makes the agent stale.
    assert stale_chart_weights(held, published) == ["flagged", "mixed"]
    assert stale_chart_weights([], published) == []
