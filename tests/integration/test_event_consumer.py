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
from typing import Any

import pytest
import redis
from redis.asyncio import Redis
from sqlalchemy.exc import IntegrityError, OperationalError

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


def _entry_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _run_consumer(stack: Stack, handle_for: Any, events_count: int, *, dead_max: int | None = None) -> dict[str, Any]:
    """Publishes events_count events for a fresh group, consumes them with the
    handler handle_for(base) builds, and returns what was applied and parked."""
    group = f"test-{uuid.uuid4().hex[:8]}"
    base = 10**15 + uuid.uuid4().int % 10**9
    dead_stream = f"{events.VOTE_EVENTS_STREAM}:dead:{group}"

    async def scenario() -> dict[str, Any]:
        redis = Redis.from_url(stack.redis_url or "", decode_responses=True)
        applied: list[int] = []
        handle = handle_for(base, applied)
        try:
            await redis.xgroup_create(events.VOTE_EVENTS_STREAM, group, id="$", mkstream=True)
            for n in range(events_count):
                payload = {"event_id": base + n, "type": "vote", "agent_id": "nobody", "item_type": "song",
                           "item_id": f"ghost-{n}", "direction": 1}  # fmt: skip
                await redis.xadd(events.VOTE_EVENTS_STREAM, {events.EVENT_FIELD: json.dumps(payload)})
            consumer = asyncio.create_task(events.consume(redis, group, "tester", handle, block_ms=50))
            for _ in range(300):
                pending = await redis.xpending(events.VOTE_EVENTS_STREAM, group)
                info = await redis.xinfo_groups(events.VOTE_EVENTS_STREAM)
                delivered = next(g for g in info if g["name"] == group)["last-delivered-id"]
                last = events.entry_list(await redis.xrevrange(events.VOTE_EVENTS_STREAM, count=1))[0][0]
                if pending["pending"] == 0 and _entry_id(delivered) >= _entry_id(last):
                    break
                await asyncio.sleep(0.05)
            consumer.cancel()
            dead = events.entry_list(await redis.xrange(dead_stream))
            return {"applied": sorted(applied), "dead": [f for _, f in dead], "pending": pending["pending"]}
        finally:
            await redis.xgroup_destroy(events.VOTE_EVENTS_STREAM, group)
            await redis.delete(dead_stream)
            await redis.aclose()

    return {**asyncio.run(scenario()), "base": base}


def test_an_integrity_error_is_dead_lettered_not_retried_forever(stack: Stack) -> None:
    """A database error that would fail the same way every time (a constraint,
    bad data) parks the event: retried as "transient" it wedged the group."""

    def handle_for(base: int, applied: list[int]) -> Any:
        async def handle(batch: list[VoteEvent]) -> None:
            if any(e.event_id == base for e in batch):
                raise IntegrityError("INSERT ...", {}, Exception("duplicate key value violates unique constraint"))
            applied.extend(e.event_id for e in batch if e.event_id >= base)

        return handle

    result = _run_consumer(stack, handle_for, 3)
    assert result["pending"] == 0
    assert result["applied"] == [result["base"] + 1, result["base"] + 2]
    assert [d["reason"] for d in result["dead"]] == ["IntegrityError"]


def test_an_event_that_fails_once_is_retried_alone_and_applied(stack: Stack) -> None:
    failures: dict[int, int] = {}

    def handle_for(base: int, applied: list[int]) -> Any:
        async def handle(batch: list[VoteEvent]) -> None:
            if any(e.event_id == base for e in batch) and failures.get(base, 0) < 2:
                failures[base] = failures.get(base, 0) + 1
                raise ValueError("not yet")
            applied.extend(e.event_id for e in batch if e.event_id >= base)

        return handle

    result = _run_consumer(stack, handle_for, 2)
    assert result["dead"] == []
    assert result["applied"] == [result["base"], result["base"] + 1]


def test_a_lost_database_connection_retries_the_whole_batch(stack: Stack) -> None:
    calls: list[int] = []

    def handle_for(base: int, applied: list[int]) -> Any:
        async def handle(batch: list[VoteEvent]) -> None:
            calls.append(len(batch))
            if len(calls) <= 2:
                raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
            applied.extend(e.event_id for e in batch if e.event_id >= base)

        return handle

    result = _run_consumer(stack, handle_for, 3)
    assert result["dead"] == []
    assert result["applied"] == [result["base"] + n for n in range(3)]


def test_dead_letter_streams_are_bounded(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "DEAD_LETTER_MAX_LEN", 3)

    def handle_for(base: int, applied: list[int]) -> Any:
        async def handle(batch: list[VoteEvent]) -> None:
            raise IntegrityError("INSERT ...", {}, Exception("every one is bad"))

        return handle

    result = _run_consumer(stack, handle_for, 6)
    assert len(result["dead"]) == 3
    # The newest are kept.
    kept = [json.loads(d[events.EVENT_FIELD])["event_id"] for d in result["dead"]]
    assert kept == [str(result["base"] + n) for n in (3, 4, 5)]
