"""The vote event stream: its name and its wire format, shared by producer and consumers.

The message itself is the VoteEvent proto (protos/aimusicstore/vote/v1/vote_event.proto).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, cast

from google.protobuf import json_format
from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import BigInteger, Column, DateTime, MetaData, Table, func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.common import tracing

log = logging.getLogger("events")

VOTE_EVENTS_STREAM = "aimusicstore:vote-events"
EVENT_FIELD = "event"


# One stream entry as our clients return it (decode_responses=True): its id
# and its fields. redis-py's annotations cover every client configuration
# (bytes or str, RESP2 or RESP3); these helpers narrow them in one place.
Entry = tuple[str, dict[str, str]]


def stream_entries(reply: Any) -> list[Entry]:
    """The entries of a one-stream XREAD/XREADGROUP reply ([] when none)."""
    return list(reply[0][1]) if reply else []


def entry_list(reply: Any) -> list[Entry]:
    """An XRANGE/XAUTOCLAIM entry list as Entries."""
    return cast(list[Entry], list(reply or []))


class MalformedEvent(ValueError):
    """A stream entry that is not a VoteEvent; it goes to the dead-letter stream."""


_SCALAR_FIELDS = {
    "event_id": int,
    "type": str,
    "agent_id": str,
    "item_type": str,
    "item_id": str,
    "direction": int,
    "rating": int,
    "has_review": bool,
    "traceparent": str,
}
_TIME_FIELDS = ("voted_at", "occurred_at")


def decode(raw: str | bytes) -> VoteEvent:
    """The stream field -> a VoteEvent; unknown fields are ignored.

    Written by hand rather than with json_format.Parse: profiles showed the
    generic parser (and its strptime for timestamps) taking 15-20% of each
    consumer's CPU under load, more than applying the events."""
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise MalformedEvent("not a JSON object")
        event = VoteEvent()
        for name, kind in _SCALAR_FIELDS.items():
            value = data.get(name)
            if value is None:
                continue
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                if kind is int and isinstance(value, str) and value.lstrip("-").isdigit():
                    value = int(value)  # proto3 JSON writes int64 as a string
                else:
                    raise MalformedEvent(f"{name} must be {kind.__name__}")
            setattr(event, name, value)
        for name in _TIME_FIELDS:
            value = data.get(name)
            if value is not None:
                getattr(event, name).FromDatetime(datetime.fromisoformat(value))
    except (ValueError, TypeError, OverflowError) as exc:
        if isinstance(exc, MalformedEvent):
            raise
        raise MalformedEvent(str(exc)) from exc
    return event


# Failures that mean "try the same batch again later", not "this event is
# bad": the connection to Redis or PostgreSQL, or PostgreSQL refusing for the
# moment (OperationalError covers deadlocks, serialization failures and
# cancelled statements as well as a lost connection). Anything else, an
# integrity or data error above all, would fail the same way every time:
# retried forever it would wedge the group, so the event is dead-lettered.
_TRANSIENT = (RedisConnectionError, RedisTimeoutError, OperationalError, InterfaceError, OSError, TimeoutError)

# Times one event is applied alone before it is parked as a dead letter.
DEAD_LETTER_AFTER_ATTEMPTS = 3
# Entries a dead-letter stream keeps (approximately): parked events are for
# an operator to inspect and replay, and must not grow without bound.
DEAD_LETTER_MAX_LEN = 10_000
DEAD_LETTERED = Counter(
    "vote_events_dead_lettered_total", "Vote events parked in a dead-letter stream", ["group", "reason"]
)


def dead_letter_stream(group: str) -> str:
    """Where a consumer group parks the events it cannot apply."""
    return f"{VOTE_EVENTS_STREAM}:dead:{group}"


def encode_event(event: VoteEvent) -> str:
    return str(json_format.MessageToJson(event, preserving_proto_field_name=True, indent=None))


# Entries another consumer took but did not acknowledge for this long (it
# crashed, or was replaced under a new name) are claimed by a live one.
CLAIM_IDLE_MS = 30_000
CLAIM_EVERY_S = 10.0


async def consume(
    redis: Redis,
    group: str,
    consumer: str,
    handle: Callable[[list[VoteEvent]], Awaitable[object]],
    *,
    batch_size: int = 500,
    block_ms: int = 100,
    linger_s: float = 0.0,
) -> None:
    """Feeds vote events to `handle` in batches, forever, at least once.

    Pass a client that never re-sends a command (create_at_most_once_redis):
    an XREADGROUP re-sent after a timeout delivers a second batch while the
    first, delivered but never seen, waits for the idle claim. A failed read
    instead surfaces here, and the loop starts over from our own pending
    entries at once.

    A batch is acknowledged only after `handle` returns, so a crash or a
    database error redelivers it (handlers must be idempotent: they skip
    event ids already applied). Our own unacknowledged entries are read
    first after a restart, and entries abandoned by a consumer that went
    away are claimed. Redis outages are waited out with backoff.

    `linger_s` trades latency for batch size: after the first entries arrive,
    keep collecting for up to that long (or until batch_size), so a busy
    stream costs one transaction per linger period instead of one per read.
    """

    async def process(entries: list[Entry]) -> None:
        if not entries:
            return
        decoded: list[tuple[str, VoteEvent]] = []
        for entry_id, fields in entries:
            try:
                if fields and EVENT_FIELD in fields:
                    decoded.append((entry_id, decode(fields[EVENT_FIELD])))
            except MalformedEvent:
                await dead_letter(entry_id, fields, "undecodable")
        if decoded:
            try:
                with tracing.applying_events(f"apply vote event ({group})", (e.traceparent for _, e in decoded)):
                    await handle([event for _, event in decoded])
            except _TRANSIENT:
                raise  # the database or Redis is away: the whole batch is retried
            except Exception:
                log.exception("a batch of %d events failed; applying them one by one", len(decoded))
                for entry_id, event in decoded:
                    await apply_alone(entry_id, event)
        await redis.xack(VOTE_EVENTS_STREAM, group, *[entry_id for entry_id, _ in entries])

    async def apply_alone(entry_id: str, event: VoteEvent) -> None:
        """Applies one event, a few times if it fails for itself, then parks it."""
        for attempt in range(1, DEAD_LETTER_AFTER_ATTEMPTS + 1):
            try:
                await handle([event])
                return
            except _TRANSIENT:
                raise
            except Exception as exc:  # noqa: BLE001
                if attempt == DEAD_LETTER_AFTER_ATTEMPTS:
                    await dead_letter(entry_id, {EVENT_FIELD: encode_event(event)}, type(exc).__name__)
                    return
                await asyncio.sleep(0.05 * attempt)

    async def dead_letter(entry_id: str, fields: dict[str, str] | None, reason: str) -> None:
        """Parks an entry that can never be applied, so it does not block the stream."""
        log.error(
            "vote event %s cannot be applied by %s (%s); moved to the dead-letter stream",
            entry_id,
            group,
            reason,
            extra={"group": group, "entry_id": entry_id, "reason": reason},
        )
        parked: dict[Any, Any] = {"entry_id": entry_id, "reason": reason, **(fields or {})}
        await redis.xadd(
            dead_letter_stream(group),
            parked,
            # Exact trimming: parked events are rare, and "~" would keep up
            # to a whole stream node (100 entries) past the bound.
            maxlen=DEAD_LETTER_MAX_LEN,
            approximate=False,
        )
        DEAD_LETTERED.labels(group, reason).inc()

    backoff = 0.1
    while True:
        try:
            try:
                await redis.xgroup_create(VOTE_EVENTS_STREAM, group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            # Our own pending entries first (we crashed between handle and ack).
            while pending := stream_entries(
                await redis.xreadgroup(group, consumer, {VOTE_EVENTS_STREAM: "0"}, count=batch_size)
            ):
                await process(pending)
            next_claim = 0.0
            while True:
                now = asyncio.get_running_loop().time()
                if now >= next_claim:
                    claimed = await redis.xautoclaim(
                        VOTE_EVENTS_STREAM, group, consumer, min_idle_time=CLAIM_IDLE_MS, count=batch_size
                    )
                    await process(entry_list(claimed[1]))
                    next_claim = now + CLAIM_EVERY_S
                entries = stream_entries(
                    await redis.xreadgroup(group, consumer, {VOTE_EVENTS_STREAM: ">"}, count=batch_size, block=block_ms)
                )
                if entries and linger_s:
                    until = asyncio.get_running_loop().time() + linger_s
                    while len(entries) < batch_size and (left := until - asyncio.get_running_loop().time()) > 0:
                        entries += stream_entries(
                            await redis.xreadgroup(
                                group,
                                consumer,
                                {VOTE_EVENTS_STREAM: ">"},
                                count=batch_size - len(entries),
                                block=max(1, int(left * 1000)),
                            )
                        )
                await process(entries)
                backoff = 0.1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - keep consuming through outages
            log.warning(
                "vote event consumer %s/%s: %s; retrying in %.1fs", group, consumer, type(exc).__name__, backoff
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


def processed_events_table(metadata: MetaData) -> Table:
    """A consumer's record of the event ids it applied (in its own schema)."""
    return Table(
        "processed_events",
        metadata,
        Column("event_id", BigInteger, primary_key=True),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


async def only_new(conn: AsyncConnection, processed: Table, events: list[VoteEvent]) -> list[VoteEvent]:
    """Records the batch's event ids and returns the events not applied before.

    Call it inside the transaction that applies them: a rollback forgets the
    ids too, so a redelivered batch is applied then. Duplicates inside the
    batch (a relay retry) are applied once.
    """
    unique = list({event.event_id: event for event in events}.values())
    if not unique:
        return []
    # executemany form (a list of parameter sets): the statement compiles
    # once and is cached; `.values([...])` would recompile for every batch.
    inserted = await conn.execute(
        pg_insert(processed).on_conflict_do_nothing().returning(processed.c.event_id),
        [{"event_id": event.event_id} for event in unique],
    )
    fresh = set(inserted.scalars())
    return [event for event in unique if event.event_id in fresh]


# Redelivery happens within minutes (claims after 30 s); a week is ample.
PROCESSED_EVENTS_KEEP_DAYS = 7


async def prune_processed(engine: AsyncEngine, processed: Table, keep_days: int = PROCESSED_EVENTS_KEEP_DAYS) -> int:
    """Forgets applied event ids older than keep_days (the table would grow forever)."""
    async with engine.begin() as conn:
        result = await conn.execute(
            processed.delete().where(processed.c.processed_at < func.now() - timedelta(days=keep_days))
        )
    return result.rowcount
