"""The shared event consumer against the real Redis stream: batches are
handled, and an event that can never be applied is parked in a dead-letter
stream instead of blocking everything behind it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid

import pytest
import redis
from redis.asyncio import Redis

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from devstack.stack import Stack
from services.common import events

pytestmark = pytest.mark.integration


def test_a_poison_event_is_dead_lettered_and_the_rest_applied(stack: Stack) -> None:
    group = f"test-{uuid.uuid4().hex[:8]}"
    base = 10**15 + uuid.uuid4().int % 10**9

    async def scenario() -> tuple[list[int], list[dict]]:
        redis = Redis.from_url(stack.redis_url or "", decode_responses=True)
        applied: list[int] = []

        async def handle(batch: list[VoteEvent]) -> None:
            if any(e.event_id == base + 1 for e in batch):
                raise ValueError("cannot apply this one")
            # The stream is the stack's real one: votes of other tests (say,
            # ones the relay publishes late after a Redis outage) pass by too.
            applied.extend(e.event_id for e in batch if base <= e.event_id < base + 3)

        try:
            await redis.xgroup_create(events.VOTE_EVENTS_STREAM, group, id="$", mkstream=True)
            for n in range(3):
                payload = {"event_id": base + n, "type": "vote", "agent_id": "nobody", "item_type": "song",
                           "item_id": f"ghost-{n}", "direction": 1}  # fmt: skip
                await redis.xadd(events.VOTE_EVENTS_STREAM, {events.EVENT_FIELD: json.dumps(payload)})
            await redis.xadd(events.VOTE_EVENTS_STREAM, {events.EVENT_FIELD: "{not json"})
            consumer = asyncio.create_task(events.consume(redis, group, "tester", handle, block_ms=50))
            # Done when both good events are applied, both bad ones parked and
            # nothing is left unacknowledged (polled: CI machines are slow).
            for _ in range(200):
                dead = events.entry_list(await redis.xrange(f"{events.VOTE_EVENTS_STREAM}:dead:{group}"))
                pending = await redis.xpending(events.VOTE_EVENTS_STREAM, group)
                if len(applied) >= 2 and len(dead) >= 2 and pending["pending"] == 0:
                    break
                await asyncio.sleep(0.05)
            consumer.cancel()
            assert pending["pending"] == 0
            return sorted(applied), [fields for _, fields in dead]
        finally:
            await redis.xgroup_destroy(events.VOTE_EVENTS_STREAM, group)
            await redis.delete(f"{events.VOTE_EVENTS_STREAM}:dead:{group}")
            await redis.aclose()

    applied, dead = asyncio.run(scenario())
    assert applied == [base, base + 2]
    assert sorted(d["reason"] for d in dead) == ["ValueError", "undecodable"]
    poisoned = next(d for d in dead if d["reason"] == "ValueError")
    assert json.loads(poisoned[events.EVENT_FIELD])["event_id"] == str(base + 1)


def test_parked_events_are_listed_replayed_and_dropped(stack: Stack) -> None:
    group = f"test-{uuid.uuid4().hex[:8]}"
    dead = f"{events.VOTE_EVENTS_STREAM}:dead:{group}"
    event = json.dumps({"event_id": 10**15 + uuid.uuid4().int % 10**9, "type": "vote", "agent_id": "nobody",
                        "item_type": "song", "item_id": "ghost", "direction": 1})  # fmt: skip

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "services.common.deadletters", *args],
            env=os.environ | {"REDIS_URL": stack.redis_url or ""},
            capture_output=True,
            text=True,
        )

    with redis.Redis.from_url(stack.redis_url or "", decode_responses=True) as client:
        try:
            fixable = client.xadd(dead, {"entry_id": "1-0", "reason": "ValueError", events.EVENT_FIELD: event})
            hopeless = client.xadd(dead, {"entry_id": "2-0", "reason": "undecodable", events.EVENT_FIELD: "{not json"})
            listed = cli("list", "--group", group)
            assert listed.returncode == 0, listed.stderr
            assert f"{group}: 2 parked" in listed.stdout
            assert fixable in listed.stdout and hopeless in listed.stdout

            before = client.xinfo_stream(events.VOTE_EVENTS_STREAM)["last-generated-id"]
            replayed = cli("replay", "--group", group)
            assert "replayed 1, skipped 1 undecodable" in replayed.stdout, replayed.stderr
            republished = client.xrange(events.VOTE_EVENTS_STREAM, f"({before}", "+")
            assert event in [fields[events.EVENT_FIELD] for _, fields in republished]
            assert [entry_id for entry_id, _ in client.xrange(dead)] == [hopeless]

            missing = cli("drop", "--group", group, "--entry", "9-9")
            assert missing.returncode != 0 and "no such entry" in missing.stderr
            assert "dropped 1" in cli("drop", "--group", group, "--entry", hopeless).stdout
            assert client.xlen(dead) == 0
        finally:
            client.delete(dead)
