from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.common.errors import InvalidArgument, ResourceExhausted
from services.ranking import charts, trending
from services.ranking.charts import Tally
from services.vote.live import MAX_BACKLOG, WATCHERS, LiveEvent, VoteFeed, entry_order, still_held
from services.vote.model import Counts


def whole(item_id: str, up: int, down: int) -> Tally:
    """Votes of agents weighing 1 (trusted)."""
    return Tally(item_id, up, down, float(up), float(down))


def test_windows() -> None:
    day = date(2026, 11, 22)
    assert charts.window("daily", day) == (day, day)
    assert charts.window("weekly", day) == (date(2026, 11, 16), day)
    assert charts.window("monthly", day) == (date(2026, 10, 24), day)
    assert charts.window("all_time", day) == (None, day)
    assert charts.previous_date("weekly", day) == date(2026, 11, 15)
    assert charts.previous_date("all_time", day) == date(2026, 11, 21)


def test_score_ranking_breaks_ties_by_up_votes_then_id() -> None:
    tallies = [whole("b", 3, 1), whole("a", 3, 1), whole("c", 4, 2), whole("d", 1, 0)]
    assert [t.item_id for t in charts.rank(tallies, "score")] == ["c", "a", "b", "d"]


def test_wilson_lower_bound_known_values() -> None:
    assert charts.wilson_lower_bound(0, 0) == 0.0
    assert charts.wilson_lower_bound(1, 0) == pytest.approx(0.2065, abs=1e-4)
    assert charts.wilson_lower_bound(10, 0) == pytest.approx(0.7225, abs=1e-4)
    assert charts.wilson_lower_bound(60, 40) == pytest.approx(0.5020, abs=1e-4)
    # Few perfect votes rank below many mostly-positive ones.
    ranked = charts.rank([whole("few", 2, 0), whole("many", 90, 10)], "best")
    assert [t.item_id for t in ranked] == ["many", "few"]


def test_controversial_favours_many_votes_split_evenly() -> None:
    ranked = charts.rank([whole("one-sided", 100, 1), whole("split", 50, 50), whole("small", 2, 2)], "controversial")
    assert [t.item_id for t in ranked] == ["split", "small", "one-sided"]
    assert charts.controversy(5, 0) == 0.0


def test_movement() -> None:
    assert charts.movement(1, None) == "new"
    assert charts.movement(1, 3) == "up"
    assert charts.movement(4, 3) == "down"
    assert charts.movement(2, 2) == "same"


def test_trending_decay_halves_every_half_life() -> None:
    epoch = datetime(2026, 1, 1, tzinfo=UTC)
    now = epoch + timedelta(hours=100)
    half_life = 3600.0
    fresh = trending.scaled_contribution(1.0, 1, now, epoch, half_life)
    old = trending.scaled_contribution(1.0, 1, now - timedelta(hours=1), epoch, half_life)
    assert trending.unscale(fresh, now, epoch, half_life) == pytest.approx(1.0)
    assert trending.unscale(old, now, epoch, half_life) == pytest.approx(0.5)
    assert trending.scaled_contribution(0.0, 1, now, epoch, half_life) == 0.0
    assert trending.needs_new_epoch(epoch + timedelta(hours=201), epoch, half_life)
    assert trending.keys_for("song", {"genre": "rock", "platform": ""}) == ["trending:song", "trending:song:genre:rock"]


_entry_ids = itertools.count(1)


def _event(item_id: str) -> LiveEvent:
    event = VoteEvent(type="vote", item_type="song", item_id=item_id, direction=1)
    return LiveEvent(event, Counts(1, 0), f"{next(_entry_ids)}-0")


def test_a_slow_watcher_is_dropped_without_blocking_others() -> None:
    async def scenario() -> None:
        feed = VoteFeed(redis=None, store=None)  # type: ignore[arg-type]
        slow_watcher, fast_watcher = feed.subscribe("song", ""), feed.subscribe("song", "x")
        slow, fast = feed.events(slow_watcher), feed.events(fast_watcher)
        assert WATCHERS._value.get() == 2
        feed._publish(_event("x"))
        assert (await fast.__anext__()).event.item_id == "x"
        assert (await slow.__anext__()).event.item_id == "x"
        for n in range(MAX_BACKLOG + 5):  # the slow one never reads again
            feed._publish(_event(f"other-{n}"))
        with pytest.raises(ResourceExhausted):
            while True:
                await slow.__anext__()
        feed.unsubscribe(slow_watcher)
        feed._publish(_event("x"))  # the filtered one was never blocked
        assert (await fast.__anext__()).event.item_id == "x"
        feed.unsubscribe(fast_watcher)
        assert WATCHERS._value.get() == 0

    asyncio.run(scenario())


def test_event_ids_order_as_stream_entries_and_malformed_ones_name_the_field() -> None:
    assert entry_order("1733500000000-2") > entry_order("1733500000000-1") > entry_order("999-7")
    assert entry_order("5") == (5, 0)
    for malformed in ("", "x-1", "1-", "-1", "1-2-3", "1 -2", "9" * 45):
        with pytest.raises(InvalidArgument, match="after_event_id"):
            entry_order(malformed)


def test_a_resume_point_is_held_until_something_after_it_was_trimmed() -> None:
    assert still_held("100-0", "0-0", "5-0")
    assert still_held("100-0", "100-0", "200-0")  # the resume point itself went: nothing after it
    assert not still_held("100-0", "100-1", "200-0")
    # Redis 6 says nothing of deletions: only the oldest entry kept tells.
    assert still_held("100-0", None, "100-0") and still_held("100-0", None, None)
    assert not still_held("100-0", None, "100-1")


def test_a_resumed_watcher_is_sent_what_the_replay_and_the_live_queue_both_saw_once() -> None:
    async def scenario() -> None:
        feed = VoteFeed(redis=None, store=None)  # type: ignore[arg-type]
        watcher = feed.subscribe("song", "", after_event_id="1-0")
        replayed = [_event("a"), _event("b")]

        async def since(_: object) -> Any:
            for live in replayed:
                yield live

        feed._since = since  # type: ignore[method-assign,assignment]
        feed._publish(replayed[1])  # published live while the replay read the stream
        later = _event("c")
        feed._publish(later)
        stream = feed.events(watcher)
        assert [(await stream.__anext__()).event.item_id for _ in range(3)] == ["a", "b", "c"]
        feed.unsubscribe(watcher)

    asyncio.run(scenario())


def test_a_resume_point_the_stream_no_longer_holds_is_refused_before_anything_is_sent() -> None:
    from services.common.errors import OutOfRange

    class Stream:
        async def xinfo_stream(self, _name: str) -> dict[str, Any]:
            return {"first-entry": ("200-0", {}), "max-deleted-entry-id": "150-0"}

    async def scenario() -> None:
        feed = VoteFeed(redis=Stream(), store=None)  # type: ignore[arg-type]
        with pytest.raises(OutOfRange, match="no longer holds"):
            await feed.check_resumable(feed.subscribe("song", "", after_event_id="100-0"))
        assert await feed.check_resumable(feed.subscribe("song", "", after_event_id="150-0"))
        assert await feed.check_resumable(feed.subscribe("song", ""))  # no resume point: nothing to check

    asyncio.run(scenario())
