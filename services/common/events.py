"""The vote event stream: its name and its wire format, shared by producer and consumers,
and the consumer-group loop the consumers share (consume).

The message itself is the VoteEvent proto (protos/aimusicstore/vote/v1/vote_event.proto).
The consumer's decisions are in services.common.consumer_rules; the record of
events already applied is services.common.processed_events.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, cast

from google.protobuf import json_format
from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.common import consumer_rules as rules
from services.common import jobs, tracing

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


def encode_event(event: VoteEvent) -> str:
    return str(json_format.MessageToJson(event, preserving_proto_field_name=True, indent=None))


def dead_letter_stream(group: str) -> str:
    """Where a consumer group parks the events it cannot apply."""
    return f"{VOTE_EVENTS_STREAM}:dead:{group}"


# Entries a dead-letter stream keeps (approximately): parked events are for
# an operator to inspect and replay, and must not grow without bound.
DEAD_LETTER_MAX_LEN = 10_000
DEAD_LETTERED = Counter(
    "vote_events_dead_lettered_total", "Vote events parked in a dead-letter stream", ["group", "reason"]
)

Handler = Callable[[list[VoteEvent]], Awaitable[object]]


async def consume(
    redis: Redis,
    group: str,
    consumer: str,
    handle: Handler,
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

    The decisions it follows (what is transient, when an event is parked,
    delays, claims, lingering) are in services.common.consumer_rules.
    """
    await StreamConsumer(
        redis, group, consumer, handle, batch_size=batch_size, block_ms=block_ms, linger_s=linger_s
    ).run()


class StreamConsumer:
    """One consumer of a group on the vote event stream (see consume)."""

    def __init__(
        self,
        redis: Redis,
        group: str,
        consumer: str,
        handle: Handler,
        *,
        batch_size: int = 500,
        block_ms: int = 100,
        linger_s: float = 0.0,
    ) -> None:
        self.redis = redis
        self.group = group
        self.consumer = consumer
        self.handle = handle
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.linger_s = linger_s
        self.backoff_s = rules.FIRST_BACKOFF_S

    async def run(self) -> None:
        """Consumes forever; any failure starts over (own pending entries first) after a backoff."""
        while True:
            try:
                await self._join_group()
                await self._process_own_pending()
                await self._follow_stream()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep consuming through outages
                if jobs.stopping():
                    raise asyncio.CancelledError from exc
                log.warning(
                    "vote event consumer %s/%s: %s; retrying in %.1fs",
                    self.group,
                    self.consumer,
                    type(exc).__name__,
                    self.backoff_s,
                )
                await asyncio.sleep(self.backoff_s)
                self.backoff_s = rules.next_backoff(self.backoff_s)

    async def _join_group(self) -> None:
        try:
            await self.redis.xgroup_create(VOTE_EVENTS_STREAM, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _process_own_pending(self) -> None:
        # Our own pending entries first (we crashed between handle and ack).
        while pending := stream_entries(
            await self.redis.xreadgroup(self.group, self.consumer, {VOTE_EVENTS_STREAM: "0"}, count=self.batch_size)
        ):
            await self._process(pending)

    async def _follow_stream(self) -> None:
        """New entries, batch after batch, and now and then those other consumers abandoned."""
        claims = rules.ClaimSchedule()
        while True:
            if claims.due(asyncio.get_running_loop().time()):
                claimed = await self.redis.xautoclaim(
                    VOTE_EVENTS_STREAM,
                    self.group,
                    self.consumer,
                    min_idle_time=rules.CLAIM_IDLE_MS,
                    count=self.batch_size,
                )
                await self._process(entry_list(claimed[1]))
            await self._process(await self._read_batch())
            self.backoff_s = rules.FIRST_BACKOFF_S

    async def _read_batch(self) -> list[Entry]:
        """New entries, blocking up to block_ms; once some arrive, more for up to linger_s."""
        entries = await self._read_new(self.batch_size, self.block_ms)
        if entries and self.linger_s:
            loop = asyncio.get_running_loop()
            until = loop.time() + self.linger_s
            while (read := rules.linger_read(len(entries), self.batch_size, until - loop.time())) is not None:
                entries += await self._read_new(*read)
        return entries

    async def _read_new(self, count: int, block_ms: int) -> list[Entry]:
        return stream_entries(
            await self.redis.xreadgroup(
                self.group, self.consumer, {VOTE_EVENTS_STREAM: ">"}, count=count, block=block_ms
            )
        )

    async def _process(self, entries: list[Entry]) -> None:
        """Applies the entries' events, parks those that cannot be, then acknowledges them all."""
        if not entries:
            return
        decoded = await self._decode_or_park(entries)
        if decoded:
            try:
                with tracing.applying_events(f"apply vote event ({self.group})", (e.traceparent for _, e in decoded)):
                    await self.handle([event for _, event in decoded])
            except rules.TRANSIENT_ERRORS:
                raise  # the database or Redis is away: the whole batch is retried
            except Exception:
                log.exception("a batch of %d events failed; applying them one by one", len(decoded))
                for entry_id, event in decoded:
                    await self._apply_alone(entry_id, event)
        await self.redis.xack(VOTE_EVENTS_STREAM, self.group, *[entry_id for entry_id, _ in entries])

    async def _decode_or_park(self, entries: list[Entry]) -> list[tuple[str, VoteEvent]]:
        """The entries' events; an entry that is not a VoteEvent is parked (one without the field is skipped)."""
        decoded: list[tuple[str, VoteEvent]] = []
        for entry_id, fields in entries:
            try:
                if fields and EVENT_FIELD in fields:
                    decoded.append((entry_id, decode(fields[EVENT_FIELD])))
            except MalformedEvent:
                await self._dead_letter(entry_id, fields, rules.UNDECODABLE)
        return decoded

    async def _apply_alone(self, entry_id: str, event: VoteEvent) -> None:
        """Applies one event, a few times if it fails for itself, then parks it."""
        for attempt in itertools.count(1):
            try:
                await self.handle([event])
                return
            except rules.TRANSIENT_ERRORS:
                raise
            except Exception as exc:  # noqa: BLE001
                delay_s = rules.retry_alone_after_s(attempt)
                if delay_s is None:
                    await self._dead_letter(entry_id, {EVENT_FIELD: encode_event(event)}, rules.failure_reason(exc))
                    return
                await asyncio.sleep(delay_s)

    async def _dead_letter(self, entry_id: str, fields: dict[str, str] | None, reason: str) -> None:
        """Parks an entry that can never be applied, so it does not block the stream."""
        group = self.group
        log.error(
            "vote event %s cannot be applied by %s (%s); moved to the dead-letter stream",
            entry_id,
            group,
            reason,
            extra={"group": group, "entry_id": entry_id, "reason": reason},
        )
        parked: dict[Any, Any] = rules.dead_letter_fields(entry_id, fields, reason)
        await self.redis.xadd(
            dead_letter_stream(group),
            parked,
            # Exact trimming: parked events are rare, and "~" would keep up
            # to a whole stream node (100 entries) past the bound.
            maxlen=DEAD_LETTER_MAX_LEN,
            approximate=False,
        )
        DEAD_LETTERED.labels(group, reason).inc()
