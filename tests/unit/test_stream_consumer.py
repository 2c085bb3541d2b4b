"""The consumer loop (services.common.events.consume) against a scripted
fake of Redis: the commands it sends, in order, with their arguments. The
consumers read through a client that never re-sends a command, so a failed
read must surface and the loop start over, never read again by itself."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import OperationalError

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.common import events

STREAM = events.VOTE_EVENTS_STREAM
GROUP = "unit"
DEAD = f"{STREAM}:dead:{GROUP}"
BUSYGROUP = ResponseError("BUSYGROUP Consumer Group name already exists")


class ScriptedRedis:
    """Answers each command with the next scripted reply (an exception is
    raised) and records what was sent; past the script, it cancels the loop."""

    def __init__(self, *replies: Any) -> None:
        self.replies = list(replies)
        self.sent: list[tuple[Any, ...]] = []

    def _answer(self, *command: Any) -> Any:
        self.sent.append(command)
        if not self.replies:
            raise asyncio.CancelledError
        reply = self.replies.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        return reply

    async def xgroup_create(self, name: str, groupname: str, id: str, mkstream: bool) -> Any:
        return self._answer("XGROUP CREATE", name, groupname, id, mkstream)

    async def xreadgroup(self, groupname: str, consumername: str, streams: dict[str, str], **kwargs: Any) -> Any:
        return self._answer("XREADGROUP", groupname, consumername, streams, kwargs)

    async def xautoclaim(self, name: str, groupname: str, consumername: str, **kwargs: Any) -> Any:
        return self._answer("XAUTOCLAIM", name, groupname, consumername, kwargs)

    async def xack(self, name: str, groupname: str, *ids: str) -> Any:
        return self._answer("XACK", name, groupname, *ids)

    async def xadd(self, name: str, fields: dict[str, str], **kwargs: Any) -> Any:
        return self._answer("XADD", name, dict(fields), kwargs)


def _event(event_id: int) -> str:
    return json.dumps({"event_id": str(event_id), "type": "vote", "agent_id": "a", "item_type": "song",
                       "item_id": f"s-{event_id}", "direction": 1})  # fmt: skip


def _read(*entries: tuple[str, dict[str, str]]) -> list[Any]:
    return [[STREAM, list(entries)]] if entries else []


def _claimed(*entries: tuple[str, dict[str, str]]) -> list[Any]:
    return ["0-0", list(entries), []]


OWN_PENDING = ("XREADGROUP", GROUP, "c1", {STREAM: "0"}, {"count": 500})
NEW = ("XREADGROUP", GROUP, "c1", {STREAM: ">"}, {"count": 500, "block": 100})
CLAIM = ("XAUTOCLAIM", STREAM, GROUP, "c1", {"min_idle_time": 30_000, "count": 500})
JOIN = ("XGROUP CREATE", STREAM, GROUP, "0", True)


# The task running the consumer under test (set by _run).
_consumer_task: list[asyncio.Task[Any] | None] = [None]


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    pauses: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float, *args: Any, **kwargs: Any) -> Any:
        # Another task's sleep (a background job an earlier test left on the
        # loop; seen in a full run as a stray 0.05) is waited as usual.
        if asyncio.current_task() is not _consumer_task[0]:
            return await real_sleep(delay, *args, **kwargs)
        pauses.append(delay)
        return None

    # The consumer's pauses (backoff, retries alone) are recorded, not waited.
    monkeypatch.setattr(asyncio, "sleep", sleep)
    return pauses


async def _run(redis: ScriptedRedis, handle: Any, **options: Any) -> None:
    _consumer_task[0] = asyncio.current_task()
    try:
        with pytest.raises(asyncio.CancelledError):
            await events.consume(cast(Redis, redis), GROUP, "c1", handle, **options)
    finally:
        _consumer_task[0] = None


async def test_one_iteration_sends_join_own_pending_claim_read_then_ack(slept: list[float]) -> None:
    applied: list[list[int]] = []

    async def handle(batch: list[VoteEvent]) -> None:
        applied.append([e.event_id for e in batch])

    redis = ScriptedRedis(
        True,  # group created
        _read(("1-0", {"event": _event(1)})),  # left pending by a crash
        1,  # ack
        _read(),  # no more pending
        _claimed(),  # nothing abandoned
        _read(("2-0", {"event": _event(2)}), ("3-0", {"event": "{not json"}), ("4-0", {})),
        "9-0",  # dead letter added
        3,  # ack
        _read(),  # an empty read
    )
    await _run(redis, handle)
    assert redis.sent == [
        JOIN,
        OWN_PENDING,
        ("XACK", STREAM, GROUP, "1-0"),
        OWN_PENDING,
        CLAIM,
        NEW,
        (
            "XADD",
            DEAD,
            {"entry_id": "3-0", "reason": "undecodable", "event": "{not json"},
            {"maxlen": 10_000, "approximate": False},
        ),  # fmt: skip
        ("XACK", STREAM, GROUP, "2-0", "3-0", "4-0"),
        NEW,
        NEW,  # the one the fake cancels
    ]
    assert applied == [[1], [2]]
    assert slept == []


async def test_a_failed_read_is_not_sent_again_the_loop_starts_over_with_backoff(slept: list[float]) -> None:
    async def handle(batch: list[VoteEvent]) -> None:
        pass

    redis = ScriptedRedis(
        BUSYGROUP, _read(), _claimed(), RedisTimeoutError("read timed out"),
        BUSYGROUP, _read(), _claimed(), RedisTimeoutError("read timed out"),
        BUSYGROUP, _read(), _claimed(), _read(("5-0", {"event": _event(5)})), 1, RedisTimeoutError("again"),
        BUSYGROUP,
    )  # fmt: skip
    await _run(redis, handle)
    assert redis.sent == [
        JOIN, OWN_PENDING, CLAIM, NEW,
        JOIN, OWN_PENDING, CLAIM, NEW,
        JOIN, OWN_PENDING, CLAIM, NEW, ("XACK", STREAM, GROUP, "5-0"), NEW,
        JOIN, OWN_PENDING,
    ]  # fmt: skip
    # Doubling while it fails, back to the first delay after a batch.
    assert slept == [0.1, 0.2, 0.1]


async def test_a_rejected_batch_is_applied_one_by_one_and_the_bad_event_parked(slept: list[float]) -> None:
    applied: list[int] = []

    async def handle(batch: list[VoteEvent]) -> None:
        if any(e.event_id == 7 for e in batch):
            raise ValueError("cannot apply 7")
        applied.extend(e.event_id for e in batch)

    redis = ScriptedRedis(
        BUSYGROUP, _read(), _claimed(), _read(("6-0", {"event": _event(6)}), ("7-0", {"event": _event(7)})), "9-0", 2
    )
    await _run(redis, handle)
    assert applied == [6]
    parked = redis.sent[4]
    assert parked[:2] == ("XADD", DEAD) and parked[3] == {"maxlen": 10_000, "approximate": False}
    assert parked[2]["entry_id"] == "7-0" and parked[2]["reason"] == "ValueError"
    assert json.loads(parked[2]["event"])["event_id"] == "7"
    assert redis.sent[5] == ("XACK", STREAM, GROUP, "6-0", "7-0")
    assert slept == pytest.approx([0.05, 0.1])  # between the three attempts alone


async def test_a_database_outage_leaves_the_batch_unacknowledged(slept: list[float]) -> None:
    async def handle(batch: list[VoteEvent]) -> None:
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))

    redis = ScriptedRedis(BUSYGROUP, _read(), _claimed(), _read(("8-0", {"event": _event(8)})), BUSYGROUP)
    await _run(redis, handle)
    assert redis.sent == [JOIN, OWN_PENDING, CLAIM, NEW, JOIN, OWN_PENDING]
    assert slept == [0.1]


async def test_claimed_entries_are_applied_and_claims_wait_ten_seconds(slept: list[float]) -> None:
    applied: list[int] = []

    async def handle(batch: list[VoteEvent]) -> None:
        applied.extend(e.event_id for e in batch)

    redis = ScriptedRedis(BUSYGROUP, _read(), _claimed(("1-5", {"event": _event(15)})), 1, _read(), _read())
    await _run(redis, handle)
    assert redis.sent == [JOIN, OWN_PENDING, CLAIM, ("XACK", STREAM, GROUP, "1-5"), NEW, NEW, NEW]
    assert applied == [15]


async def test_lingering_tops_up_the_batch_until_it_is_full(slept: list[float]) -> None:
    batches: list[list[int]] = []

    async def handle(batch: list[VoteEvent]) -> None:
        batches.append([e.event_id for e in batch])

    redis = ScriptedRedis(
        BUSYGROUP, _read(), _claimed(),
        _read(("1-0", {"event": _event(1)})),
        _read(("2-0", {"event": _event(2)})),
        _read(("3-0", {"event": _event(3)})),
        1,
    )  # fmt: skip
    await _run(redis, handle, batch_size=3, linger_s=60.0)
    reads = [command for command in redis.sent if command[0] == "XREADGROUP" and command[3] == {STREAM: ">"}]
    assert [read[4]["count"] for read in reads] == [3, 2, 1, 3]
    assert reads[0][4]["block"] == 100
    assert all(50_000 < read[4]["block"] <= 60_000 for read in reads[1:3])
    assert batches == [[1, 2, 3]]
