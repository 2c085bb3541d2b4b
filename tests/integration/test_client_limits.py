"""The client's QuotaExceeded and RateLimited against a stack of its own with
small limits, and watch_votes reporting a gap when the feed can no longer
replay what it missed (AIMUSICSTORE_WATCH_RESUME_MAX_EVENTS=1)."""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from aimusicstore_client import Client, FeedGap, QuotaExceeded, RateLimited, RetryPolicy
from aimusicstore_client.types import WatchVotesResponse
from devstack.stack import Stack
from tests.integration.conftest import eventually, running_stack, unique

pytestmark = pytest.mark.integration


def pump(watch: Iterator[WatchVotesResponse], into: queue.Queue[WatchVotesResponse]) -> None:
    for event in watch:
        into.put(event)


REGISTRATIONS_PER_MIN = 3


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("client-limits"),
        redis_db=7,
        AIMUSICSTORE_XFF_TRUSTED_HOPS="1",
        AIMUSICSTORE_RATE_LIMIT_REGISTRATIONS_PER_MIN=str(REGISTRATIONS_PER_MIN),
        AIMUSICSTORE_QUOTA_FREE="1",
        AIMUSICSTORE_WATCH_RESUME_MAX_EVENTS="1",
    ) as running:
        yield running


def client_of(stack: Stack, **kwargs: object) -> Client:
    """A client from an address of its own (TEST-NET-3, via the one trusted
    X-Forwarded-For hop): a fresh rate-limit bucket."""
    address = f"203.0.113.{uuid.uuid4().int % 254 + 1}"
    return Client(f"127.0.0.1:{stack.gateway_port}", metadata=[("x-forwarded-for", address)], **kwargs)  # type: ignore[arg-type]


def test_past_the_registration_limit_is_rate_limited_with_retry_after(limited: Stack) -> None:
    with client_of(limited, retry=RetryPolicy.never()) as client:
        for _ in range(REGISTRATIONS_PER_MIN):
            client.register(use_key=False)
        with pytest.raises(RateLimited) as refused:
            client.register(use_key=False)
    assert refused.value.retry_after == 20  # one registration every 60/3 s
    assert "3 registrations a minute" in refused.value.message


def test_past_the_daily_vote_quota_is_quota_exceeded_with_the_reset_time(limited: Stack) -> None:
    with client_of(limited) as client:
        client.register()
        songs = [client.create_song("Song", "Artist", "udio").id for _ in range(2)]
        client.vote("song", songs[0], "up")
        with pytest.raises(QuotaExceeded) as refused:
            client.vote("song", songs[1], "up")  # not retried: the wait is hours
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert refused.value.resets_at in (tomorrow, tomorrow + timedelta(days=1))  # a test run across midnight
    assert refused.value.retry_after is not None and 0 < refused.value.retry_after <= 86401
    assert "quota of 1 for the free tier" in refused.value.message


def test_watch_reports_a_gap_when_the_feed_cannot_replay_and_goes_on_from_now(limited: Stack) -> None:
    voters = [client_of(limited) for _ in range(4)]
    for voter in voters:
        voter.register(unique("agent"))
    song_id = voters[0].create_song("Gap", "Artist", "udio").id
    watcher = client_of(limited)
    try:
        with watcher.watch_votes("song", song_id) as first_watch:
            events: queue.Queue[WatchVotesResponse] = queue.Queue()
            threading.Thread(target=pump, args=(first_watch, events), daemon=True).start()
            assert first_watch.connected.wait(10)
            voters[0].vote("song", song_id, "up")
            marker = events.get(timeout=10).event_id
            # Two events a watch resumed after the marker will not be able to
            # replay (it replays at most 1), seen here once they are in the feed.
            voters[1].vote("song", song_id, "up")
            voters[2].vote("song", song_id, "down")
            assert [events.get(timeout=10).agent_id for _ in range(2)] == [voters[1].agent_id, voters[2].agent_id]

        gaps: list[FeedGap] = []
        with watcher.watch_votes("song", song_id, after_event_id=marker, on_gap=gaps.append) as watch:
            later: queue.Queue[WatchVotesResponse] = queue.Queue()
            threading.Thread(target=pump, args=(watch, later), daemon=True).start()
            # The service refuses the replay (OUT_OF_RANGE) and the watch
            # reconnects from now on, reporting the gap once it is subscribed.
            eventually(lambda: gaps and watch.connected.is_set(), timeout_s=10)
            voters[3].vote("song", song_id, "up")
            event = later.get(timeout=10)
            assert event.agent_id == voters[3].agent_id
            assert (event.up_votes, event.down_votes) == (3, 1)
            assert len(gaps) == 1 and watch.gaps == gaps
            assert gaps[0].after_event_id == marker and gaps[0].missed is None
            assert "cannot resume" in gaps[0].reason
            assert watch.missed is None
            assert later.empty()  # the events of the gap were not replayed
    finally:
        for c in [*voters, watcher]:
            c.close()
