"""What a batch of vote events changes: counts, daily tallies, live votes."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.ranking.vote_batch import CountChange, count_changes, live_vote_changes

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


def test_votes_add_and_retractions_take_back_the_same_counts() -> None:
    items, days = count_changes(
        [
            event("vote", "a1", "t1", rating=5, review=True),
            event("vote", "a2", "t1", direction=-1, rating=2),
            event("retract", "a3", "t1", direction=1, rating=4, review=True),
            event("vote", "a1", "t0", direction=-1, day=2),
        ]
    )
    assert items == [
        (("tool", "t0"), CountChange(down=1)),
        (("tool", "t1"), CountChange(up=0, down=1, rating_sum=3, rating_count=1, reviews=0)),
    ]
    assert days == [
        (("tool", "t0", date(2026, 3, 2)), CountChange(down=1)),
        (("tool", "t1", date(2026, 3, 1)), CountChange(up=0, down=1)),
    ]


def test_live_votes_keep_each_agents_last_event() -> None:
    retracted, cast = live_vote_changes(
        [
            event("vote", "b", "t1"),
            event("retract", "a", "t1"),
            event("vote", "a", "t1", direction=-1),  # voted again after retracting
            event("vote", "c", "t2"),
            event("retract", "c", "t2"),
        ]
    )
    assert retracted == [("a", "tool", "t1"), ("c", "tool", "t2")]
    assert [(key, e.direction) for key, e in cast] == [(("a", "tool", "t1"), -1), (("b", "tool", "t1"), 1)]
