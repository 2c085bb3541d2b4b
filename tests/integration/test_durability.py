"""No acknowledged vote is lost when Redis or PostgreSQL goes away mid-run,
and every count converges back to what the votes table says."""

from __future__ import annotations

import itertools
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest
import redis

from devstack.stack import Stack
from services.common.auth import REVOKED_KEY, hash_api_key
from services.common.events import VOTE_EVENTS_STREAM
from tests.integration.conftest import (
    auth,
    eventually,
    eventually_equal,
    make_songs,
    vote,
    vote_service_metrics,
    votes_table_counts,
)

pytestmark = pytest.mark.integration


def test_redis_outage_loses_no_vote_and_counts_converge(api: httpx.Client, stack: Stack) -> None:
    if not stack.embedded_redis:
        pytest.skip("needs the embedded Redis to stop and restart it")
    keys = [api.post("/api/v1/agents", json={}).json()["api_key"] for _ in range(4)]
    songs = make_songs(api, keys[0], 12)
    ballots = itertools.product(range(len(keys)), range(len(songs)))  # 48 distinct (agent, song) votes
    acknowledged: list[tuple[int, str]] = []

    def cast(count: int) -> None:
        for agent_index, song_index in itertools.islice(ballots, count):
            direction = "up" if (agent_index + song_index) % 3 else "down"
            reply = vote(api, keys[agent_index], songs[song_index], direction)
            assert reply.status_code == 200, reply.text  # acknowledged: must be durable
            acknowledged.append((agent_index, songs[song_index]))

    cast(16)
    stack.stop_process("redis")
    try:
        cast(16)  # votes keep being accepted, durably, while Redis is down
    finally:
        stack.start_redis()
    cast(16)
    eventually(lambda: api.get("/health").status_code == 200, timeout_s=30)

    with psycopg.connect(stack.database_url or "") as conn:
        stored = conn.execute("SELECT count(*) FROM vote.votes WHERE item_id = ANY(%s)", (songs,)).fetchone()
    assert stored == (len(acknowledged),) == (48,)

    def converged() -> bool:
        for song_id in songs:
            up, down = votes_table_counts(stack, "song", song_id)
            catalog = api.get(f"/api/v1/songs/{song_id}").json()
            counts = api.get(f"/api/v1/votes/song/{song_id}").json()
            if (catalog["up_votes"], catalog["down_votes"]) != (up, down):
                return False
            if (counts["up_votes"], counts["down_votes"]) != (up, down):
                return False
        return True

    eventually(converged, timeout_s=20, interval_s=0.5)


def test_postgres_restart_loses_no_acknowledged_vote_and_counts_converge(api: httpx.Client, stack: Stack) -> None:
    if not stack.embedded_postgres:
        pytest.skip("needs the embedded PostgreSQL to stop and restart it")
    keys = [api.post("/api/v1/agents", json={}).json()["api_key"] for _ in range(4)]
    songs = make_songs(api, keys[0], 6)
    ballots = list(itertools.product(range(len(keys)), range(len(songs))))  # 24 distinct votes
    acknowledged: list[tuple[int, str]] = []

    def cast(agent_index: int, song_index: int) -> httpx.Response:
        direction = "up" if (agent_index + song_index) % 3 else "down"
        reply = vote(api, keys[agent_index], songs[song_index], direction)
        if reply.status_code == 200:
            acknowledged.append((agent_index, songs[song_index]))
        return reply

    for ballot in ballots[:8]:
        assert cast(*ballot).status_code == 200
    stack.stop_process("postgres")
    try:
        # Nothing can be made durable: each vote is refused as retryable, never acknowledged.
        for ballot in ballots[8:12]:
            reply = cast(*ballot)
            assert reply.status_code == 503, reply.text
            assert "retry" in reply.json()["message"]
    finally:
        stack.start_postgres()
    # The first votes after the restart may still meet a connection from
    # before it; the service recovers on its own within seconds.
    eventually(lambda: cast(*ballots[12]).status_code == 200, timeout_s=30, interval_s=0.5)
    for ballot in ballots[13:]:
        assert cast(*ballot).status_code == 200
    eventually(lambda: api.get("/health").status_code == 200, timeout_s=30)

    with psycopg.connect(stack.database_url or "") as conn:
        stored = conn.execute("SELECT count(*) FROM vote.votes WHERE item_id = ANY(%s)", (songs,)).fetchone()
    assert stored == (len(acknowledged),) == (8 + 12,)

    def converged() -> bool:
        for song_id in songs:
            up, down = votes_table_counts(stack, "song", song_id)
            catalog = api.get(f"/api/v1/songs/{song_id}").json()
            counts = api.get(f"/api/v1/votes/song/{song_id}").json()
            if (catalog["up_votes"], catalog["down_votes"]) != (up, down):
                return False
            if (counts["up_votes"], counts["down_votes"]) != (up, down):
                return False
        return True

    eventually(converged, timeout_s=20, interval_s=0.5)


def test_events_redis_lost_are_relayed_again(api: httpx.Client, stack: Stack) -> None:
    """Redis can lose the last second of the stream when it crashes between
    two appendfsync runs. The relay checks, before each publish, that the
    entry it published last is still there; if not, it publishes again every
    event relayed after the newest entry Redis still has."""
    key = api.post("/api/v1/agents", json={}).json()["api_key"]
    [song] = make_songs(api, key, 1)
    assert vote(api, key, song).status_code == 200
    relayed = (
        "SELECT id, stream_ms, stream_seq FROM vote.outbox WHERE payload->>'item_id' = %s AND relayed_at IS NOT NULL"
    )
    with psycopg.connect(stack.database_url or "", autocommit=True) as conn:
        event_id, ms, seq = eventually(lambda: conn.execute(relayed, (song,)).fetchone(), timeout_s=5)
        with redis.Redis.from_url(stack.redis_url or "", decode_responses=True) as client:
            [(entry_id, fields)] = client.xrange(VOTE_EVENTS_STREAM, f"{ms}-{seq}", f"{ms}-{seq}")
            assert f'"event_id": {event_id}' in fields["event"] or f'"event_id":{event_id}' in fields["event"]
            assert client.xdel(VOTE_EVENTS_STREAM, entry_id) == 1  # the stream's tail is gone

            def published_again() -> tuple[int, int] | None:
                row = conn.execute(relayed, (song,)).fetchone()
                return row[1:] if row is not None and tuple(row[1:]) != (ms, seq) else None

            new_ms, new_seq = eventually(published_again, timeout_s=5)
            [(_, again)] = client.xrange(VOTE_EVENTS_STREAM, f"{new_ms}-{new_seq}", f"{new_ms}-{new_seq}")
            assert again["event"] == fields["event"]  # the same event, same event_id: consumers drop a duplicate
    eventually(lambda: api.get(f"/api/v1/songs/{song}").json()["up_votes"] == 1, timeout_s=5)


def test_quota_still_holds_while_redis_is_down(api: httpx.Client, stack: Stack) -> None:
    if not stack.embedded_redis:
        pytest.skip("needs the embedded Redis to stop and restart it")
    key = api.post("/api/v1/agents", json={}).json()["api_key"]
    songs = make_songs(api, key, 101)
    for song_id in songs[:100]:
        assert vote(api, key, song_id).status_code == 200
    stack.stop_process("redis")
    try:
        refused = vote(api, key, songs[100])
    finally:
        stack.start_redis()
    eventually(lambda: api.get("/health").status_code == 200, timeout_s=30)
    assert refused.status_code == 429, refused.text
    assert "resets at" in refused.json()["message"]
    assert 0 < int(refused.headers["retry-after"]) <= 86_401  # until the quota's UTC day ends
    assert votes_table_counts(stack, "song", songs[100]) == (0, 0)


def test_retracting_and_voting_again_buys_no_votes_while_redis_is_down(api: httpx.Client, stack: Stack) -> None:
    # The fallback once counted the agent's live votes of the day: retract,
    # vote again, retract... and the quota never ran out. It counts the
    # append-only daily usage now, as Redis's counter does.
    if not stack.embedded_redis:
        pytest.skip("needs the embedded Redis to stop and restart it")
    key = api.post("/api/v1/agents", json={}).json()["api_key"]
    (song,) = make_songs(api, key, 1)
    assert vote(api, key, song).status_code == 200  # the key and the item are cached from here on
    stack.stop_process("redis")
    try:
        statuses: list[int] = []
        while len(statuses) < 120 and 429 not in statuses:
            assert api.delete(f"/api/v1/vote/song/{song}", headers=auth(key)).status_code == 200
            statuses.append(vote(api, key, song).status_code)
    finally:
        stack.start_redis()
    eventually(lambda: api.get("/health").status_code == 200, timeout_s=30)
    # The first vote (with Redis up) and 99 more: the 100th re-vote is refused.
    assert statuses == [200] * 99 + [429], statuses


def _agent_whose_key_is_cached_then_redis_stopped(
    api: httpx.Client, stack: Stack, songs: int
) -> tuple[str, str, list[str]]:
    """A new agent's key, its id and songs; it voted on the first song (so
    the vote service caches the key), then Redis is stopped: start it again."""
    if not stack.embedded_redis:
        pytest.skip("needs the embedded Redis to stop and restart it")
    registered = api.post("/api/v1/agents", json={}).json()
    key, agent_id = registered["api_key"], registered["agent"]["id"]
    song_ids = make_songs(api, key, songs)
    assert vote(api, key, song_ids[0]).status_code == 200
    stack.stop_process("redis")
    return key, agent_id, song_ids


def test_a_rotation_made_while_redis_was_down_reaches_redis_once_it_is_back(api: httpx.Client, stack: Stack) -> None:
    # The revocation marker (checked by every vote) and the announcement were
    # tried once and the failure swallowed: other services kept accepting the
    # old key until their caches expired. They are retried until Redis answers.
    old_key, agent_id, songs = _agent_whose_key_is_cached_then_redis_stopped(api, stack, 2)
    try:
        rotated = api.post(f"/api/v1/agents/{agent_id}/keys", headers=auth(old_key))
        assert rotated.status_code == 200, rotated.text
    finally:
        stack.start_redis()
    eventually(lambda: api.get("/health").status_code == 200, timeout_s=30)
    marker = REVOKED_KEY.format(key_hash=hash_api_key(old_key).hex())
    with redis.Redis.from_url(stack.redis_url or "") as client:
        eventually(lambda: client.exists(marker), timeout_s=5)
    # Once the vote service uses Redis again (until then its fallback cannot
    # see the marker: docs/operations.md, "API keys"), the old key is refused.
    # A probe vote of another agent first: the first command after a Redis
    # restart may meet a dead pooled connection, and that vote falls back.
    prober = api.post("/api/v1/agents", json={}).json()["api_key"]

    def back_on_redis() -> bool:
        assert vote(api, prober, make_songs(api, prober, 1)[0]).status_code == 200
        return vote_service_metrics(stack).get('dependency_breaker_open{dependency="redis"}') == 0.0

    eventually(back_on_redis, timeout_s=10, interval_s=0.5)
    assert vote(api, old_key, songs[1]).status_code == 401
    assert vote(api, rotated.json()["api_key"], songs[1]).status_code == 200


def test_a_key_rotated_while_redis_is_down_stops_voting_at_once(api: httpx.Client, stack: Stack) -> None:
    # No revocation marker can be read while Redis is away, and the vote
    # service had the old key cached: it accepted it until the cached answer
    # expired. With the Redis breaker open it asks the reputation service
    # (PostgreSQL) again, at most once a second per key.
    old_key, agent_id, songs = _agent_whose_key_is_cached_then_redis_stopped(api, stack, 3)
    try:
        eventually(
            lambda: vote_service_metrics(stack).get('dependency_breaker_open{dependency="redis"}') == 1.0,
            timeout_s=10,
        )
        rotated = api.post(f"/api/v1/agents/{agent_id}/keys", headers=auth(old_key))
        assert rotated.status_code == 200, rotated.text
        refused = vote(api, old_key, songs[1])
        accepted = vote(api, rotated.json()["api_key"], songs[2])
    finally:
        stack.start_redis()
    eventually(lambda: api.get("/health").status_code == 200, timeout_s=30)
    assert refused.status_code == 401, refused.text
    assert accepted.status_code == 200, accepted.text


def test_votes_cast_while_redis_was_down_still_count_against_the_quota_after(api: httpx.Client, stack: Stack) -> None:
    # During the outage quotas are counted from the votes table, and Redis's
    # counter misses those votes: once Redis is back, a free agent that used
    # its 100 votes meanwhile must not get 100 more.
    if not stack.embedded_redis:
        pytest.skip("needs the embedded Redis to stop and restart it")
    key = api.post("/api/v1/agents", json={}).json()["api_key"]
    songs = make_songs(api, key, 101)
    assert vote(api, key, songs[0]).status_code == 200  # the key and the items are cached from here on
    stack.stop_process("redis")
    try:
        with ThreadPoolExecutor(8) as pool:  # a vote takes ~0.3 s while Redis is down
            replies = list(pool.map(lambda song_id: vote(api, key, song_id), songs[1:100]))
        assert [r.status_code for r in replies] == [200] * 99, [r.text for r in replies if r.status_code != 200]
    finally:
        stack.start_redis()
    eventually(lambda: api.get("/health").status_code == 200, timeout_s=30)
    refused = vote(api, key, songs[100])
    assert refused.status_code == 429, refused.text
    assert votes_table_counts(stack, "song", songs[100]) == (0, 0)


def test_cached_counts_that_drift_from_the_votes_table_are_repaired(api: httpx.Client, stack: Stack) -> None:
    keys = [api.post("/api/v1/agents", json={}).json()["api_key"] for _ in range(3)]
    songs = make_songs(api, keys[0], 6)
    for key, song_id in itertools.product(keys, songs):
        assert vote(api, key, song_id, "up").status_code == 200
    repaired_before = vote_service_metrics(stack).get("vote_counts_repaired_total", 0.0)

    # Drift, as a Redis restored from an old snapshot would leave it: the
    # cached counts of every song are wrong, and reads serve them. (Each is
    # read first: a vote whose count update timed out on a loaded box leaves
    # its key to be dropped and seeded again by the next read, as in a CI run.)
    for song_id in songs:
        assert api.get(f"/api/v1/votes/song/{song_id}").json()["up_votes"] == 3
    with redis.Redis.from_url(stack.redis_url or "") as cache:
        for song_id in songs:
            assert cache.hset(f"vote:counts:song:{song_id}", mapping={"up": 40, "down": 7}) == 0  # was cached
    assert api.get(f"/api/v1/votes/song/{songs[0]}").json()["up_votes"] == 40

    # The reconciliation sweep (a page per pass, one pass a second here) finds
    # and rewrites each of them.
    eventually_equal(
        lambda: [api.get(f"/api/v1/votes/song/{song_id}").json()["up_votes"] for song_id in songs],
        [3] * len(songs),
        timeout_s=60,
        interval_s=0.5,
    )
    for song_id in songs:
        assert votes_table_counts(stack, "song", song_id) == (3, 0)
        assert api.get(f"/api/v1/votes/song/{song_id}").json()["down_votes"] == 0
    assert vote_service_metrics(stack)["vote_counts_repaired_total"] >= repaired_before + len(songs)


def test_only_the_relay_holding_the_relay_lock_publishes(api: httpx.Client, agent: dict, stack: Stack) -> None:
    # Several vote processes (a rolling update) each run a relay; if they
    # shared rows, a re-vote could be published ahead of the retraction
    # before it. While another holder has the lock, this stack's relay must
    # publish nothing; once it is released, the event goes out.
    from services.vote.store.outbox import RELAY_LOCK_KEY

    song = make_songs(api, agent["key"], 1)[0]

    def relayed() -> bool | None:
        with psycopg.connect(stack.database_url or "", autocommit=True) as conn:
            row = conn.execute(
                "SELECT relayed_at IS NOT NULL FROM vote.outbox WHERE payload->>'agent_id' = %s"
                " AND payload->>'item_id' = %s",
                (agent["id"], song),
            ).fetchone()
        return None if row is None else row[0]

    with psycopg.connect(stack.database_url or "") as other_relay:
        other_relay.execute("SELECT pg_advisory_xact_lock(%s)", (RELAY_LOCK_KEY,))
        assert vote(api, agent["key"], song).status_code == 200
        for _ in range(10):  # a second: the relay polls every 50 ms
            assert relayed() is False
            time.sleep(0.1)
        other_relay.rollback()  # releases the lock
    eventually(lambda: relayed() is not False, timeout_s=10)
