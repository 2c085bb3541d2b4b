"""The counting step of VoteProjection.apply_events (pure Python, no database):
per-agent vote counts and times, per-item score changes, the last event per
(agent, item)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.reputation.store.projection import tally

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def event(event_id: int, kind: str, agent: str, item: str, direction: int, minutes: int = 0) -> VoteEvent:
    e = VoteEvent(event_id=event_id, type=kind, agent_id=agent, item_type="song", item_id=item, direction=direction)
    e.voted_at.FromDatetime(T0 + timedelta(minutes=minutes))
    return e


def test_counts_and_scores_follow_the_projections_change() -> None:
    batch = tally(
        [
            event(1, "vote", "a", "x", 1, minutes=5),
            event(2, "vote", "a", "y", -1, minutes=1),
            event(3, "vote", "b", "x", 1, minutes=3),
            event(4, "retract", "b", "z", -1),
        ]
    )
    # What the projection did: took in all three votes, gave up b's vote on z.
    batch.count_change(
        removed=[("b", "song", "z", -1)], added=[("a", "song", "x", 1), ("a", "song", "y", -1), ("b", "song", "x", 1)]
    )
    a, b = batch.per_agent["a"], batch.per_agent["b"]
    assert (a.added, a.first_at, a.last_at) == (2, T0 + timedelta(minutes=1), T0 + timedelta(minutes=5))
    # A retraction's time is not a vote time.
    assert (b.added, b.first_at, b.last_at) == (0, T0 + timedelta(minutes=3), T0 + timedelta(minutes=3))
    assert batch.score_delta == {("song", "x"): 2, ("song", "y"): -1, ("song", "z"): 1}


def test_only_retractions_leave_no_vote_times() -> None:
    batch = tally([event(1, "retract", "a", "x", 1)])
    batch.count_change(removed=[("a", "song", "x", 1)], added=[])
    entry = batch.per_agent["a"]
    assert (entry.added, entry.first_at, entry.last_at) == (-1, None, None)


def test_a_stale_event_counts_nothing_but_its_vote_time() -> None:
    # The projection held a newer event for (a, x): it changed nothing.
    batch = tally([event(1, "vote", "a", "x", 1, minutes=2)])
    batch.count_change(removed=[], added=[])
    entry = batch.per_agent["a"]
    assert (entry.added, entry.first_at, batch.score_delta) == (0, T0 + timedelta(minutes=2), {})


def test_the_newest_event_per_agent_and_item_is_the_one_projected() -> None:
    batch = tally(
        [
            event(3, "vote", "a", "x", -1),
            event(1, "vote", "a", "x", 1),  # older, read later
            event(2, "retract", "a", "x", 1),
            event(4, "vote", "b", "x", 1),
        ]
    )
    assert {key: e.event_id for key, e in batch.final.items()} == {("a", "song", "x"): 3, ("b", "song", "x"): 4}
