"""Stream retention by the consumers' progress, on the stack's real Redis
(a scratch stream of this test's own): never trimmed past an entry a group
still needs, unless the stream passes its hard cap."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
import redis
from redis.asyncio import Redis

from devstack.stack import Stack
from services.common import stream_progress
from services.common.events import VOTE_EVENTS_STREAM, entry_list, stream_entries
from services.common.stream_progress import format_id, parse_id, trim_consumed
from tests.integration.conftest import eventually, make_songs, vote

pytestmark = pytest.mark.integration


async def _stream_with_groups(redis: Redis, stream: str, entries: int) -> list[str]:
    ids = [str(await redis.xadd(stream, {"event": str(n)})) for n in range(entries)]
    # "caught-up" read and acknowledged everything; "slow" read 300 and
    # acknowledged 250 (a consumer holding 50, say frozen).
    await redis.xgroup_create(stream, "caught-up", id="0")
    delivered = stream_entries(await redis.xreadgroup("caught-up", "c1", {stream: ">"}, count=entries))
    await redis.xack(stream, "caught-up", *[entry_id for entry_id, _ in delivered])
    await redis.xgroup_create(stream, "slow", id="0")
    delivered = stream_entries(await redis.xreadgroup("slow", "s1", {stream: ">"}, count=300))
    await redis.xack(stream, "slow", *[entry_id for entry_id, _ in delivered[:250]])
    return ids


def test_the_stream_is_trimmed_below_the_slowest_group_only(stack: Stack) -> None:
    stream = f"test-retention-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        redis = Redis.from_url(stack.redis_url or "", decode_responses=True)
        try:
            ids = await _stream_with_groups(redis, stream, 1000)
            needed = await trim_consumed(redis, hard_cap=1_000_000, stream=stream)
            # The slow group's oldest pending entry is the 251st.
            assert needed == parse_id(ids[250])
            left = [entry_id for entry_id, _ in entry_list(await redis.xrange(stream))]
            # Every entry from the one still needed on is there...
            assert left[-750:] == ids[250:]
            # ...and whole stream nodes below it are gone (approximate trim).
            assert len(left) < 1000

            # The slow group catches up: the stream follows it, keeping the newest entry.
            delivered = stream_entries(await redis.xreadgroup("slow", "s1", {stream: ">"}, count=1000))
            pending = [entry_id for entry_id, _ in delivered] + ids[250:300]
            await redis.xack(stream, "slow", *pending)
            assert await trim_consumed(redis, hard_cap=1_000_000, stream=stream) == (
                parse_id(ids[-1])[0],
                parse_id(ids[-1])[1] + 1,
            )
            left = [entry_id for entry_id, _ in entry_list(await redis.xrange(stream))]
            assert left[-1] == ids[-1] and len(left) < 250
        finally:
            await redis.delete(stream)
            await redis.aclose()

    asyncio.run(scenario())


def test_the_stream_keeps_the_live_feeds_resume_window_although_consumed(stack: Stack) -> None:
    stream = f"test-retention-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        redis = Redis.from_url(stack.redis_url or "", decode_responses=True)
        try:
            ids = await _stream_with_groups(redis, stream, 1000)
            delivered = stream_entries(await redis.xreadgroup("slow", "s1", {stream: ">"}, count=1000))
            await redis.xack(stream, "slow", *ids[250:300], *[entry_id for entry_id, _ in delivered])
            # Every group applied everything, but it all happened within the hour kept.
            await trim_consumed(redis, hard_cap=1_000_000, stream=stream, keep_s=3600)
            assert [entry_id for entry_id, _ in entry_list(await redis.xrange(stream))] == ids
            await trim_consumed(redis, hard_cap=1_000_000, stream=stream, keep_s=0)
            assert len(entry_list(await redis.xrange(stream))) < 250
        finally:
            await redis.delete(stream)
            await redis.aclose()

    asyncio.run(scenario())


def test_past_its_cap_the_stream_is_trimmed_anyway_and_says_so(stack: Stack) -> None:
    stream = f"test-retention-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        redis = Redis.from_url(stack.redis_url or "", decode_responses=True)
        try:
            ids = await _stream_with_groups(redis, stream, 1000)
            forced = stream_progress.FORCED_TRIMS._value.get()
            needed = await trim_consumed(redis, hard_cap=300, stream=stream)
            left = [entry_id for entry_id, _ in entry_list(await redis.xrange(stream))]
            assert 300 <= len(left) < 750 and left[-1] == ids[-1]
            assert stream_progress.FORCED_TRIMS._value.get() == forced + 1
            # What was trimmed past the slow group is no longer needed from the outbox either.
            assert needed == parse_id(left[0]) and format_id(needed) == left[0]
        finally:
            await redis.delete(stream)
            await redis.aclose()

    asyncio.run(scenario())


def test_the_relay_goes_on_when_its_last_entry_was_trimmed_behind_a_newer_one(stack: Stack, api: httpx.Client) -> None:
    """The relay checks that the entry it published last is still in the
    stream before each publish. Trimmed by progress after someone else added
    a later entry (a dead-letter replay, another vote process), it is gone
    though Redis lost nothing: taken for a lost tail, the relay re-read the
    same entry as its last one forever and published nothing more."""
    agent = api.post("/api/v1/agents", json={}).json()
    key = agent["api_key"]
    songs = make_songs(api, key, 2)
    assert vote(api, key, songs[0]).status_code == 200
    eventually(lambda: api.get(f"/api/v1/songs/{songs[0]}").json()["up_votes"] == 1, 2.0)
    with redis.Redis.from_url(stack.redis_url or "", decode_responses=True) as client:

        def relayed() -> bool:
            newest = entry_list(client.xrevrange(VOTE_EVENTS_STREAM, "+", "-", count=1))
            return bool(newest) and songs[0] in newest[0][1].get("event", "")

        eventually(relayed, 5.0)
        # A later entry from elsewhere (consumers skip an entry without an
        # event field), then every entry before it trimmed, the relay's too.
        foreign = str(client.xadd(VOTE_EVENTS_STREAM, {"note": "not an event"}))
        client.xtrim(VOTE_EVENTS_STREAM, minid=foreign, approximate=False)
    assert vote(api, key, songs[1]).status_code == 200
    # Relayed and applied: the catalog's counts follow the event stream.
    eventually(lambda: api.get(f"/api/v1/songs/{songs[1]}").json()["up_votes"] == 1, 5.0)
