"""How far a consumer group is behind the vote event stream: metrics and a log line.

Each consumer service watches its own group. The lag that matters is the
freshness promise's: how old is the oldest event the group has not applied
yet, either not delivered to it, or delivered and not acknowledged (a
consumer that froze or crashed holding a batch). Computed from entry ids,
which are publish times in ms, so it works on Redis 6.2 (the embedded
server), whose XINFO GROUPS has no `lag` field.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from services.common.events import VOTE_EVENTS_STREAM, entry_list
from services.common.jobs import stopping

log = logging.getLogger("events.progress")

CONSUMER_LAG_SECONDS = Gauge(
    "vote_events_consumer_lag_seconds",
    "Age of the oldest vote event this consumer group has not applied yet (0 when caught up)",
    ["group"],
)
CONSUMER_PENDING = Gauge(
    "vote_events_consumer_pending", "Events delivered to the group and not yet acknowledged", ["group"]
)
DEAD_LETTERS = Gauge("vote_events_dead_letters", "Events parked in the group's dead-letter stream", ["group"])
STREAM_LENGTH = Gauge("vote_events_stream_length", "Entries in the vote event stream")

# Past this lag a warning is logged (once, until the group is back under it).
LAG_WARNING_S = 5.0


def entry_ms(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])


@dataclass(frozen=True)
class GroupPosition:
    """What Redis says of one group: ids as strings ('' when there is none)."""

    oldest_undelivered: str
    oldest_pending: str
    pending: int
    last_delivered: str = ""


StreamId = tuple[int, int]


def parse_id(entry_id: str) -> StreamId:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def format_id(stream_id: StreamId) -> str:
    return f"{stream_id[0]}-{stream_id[1]}"


def needed_from(positions: list[GroupPosition]) -> StreamId | None:
    """The first stream entry some group still needs: its oldest entry
    delivered and not acknowledged (it may be read again, or claimed), or
    else the one after the last it was given. Every entry before it has been
    applied by every group, so it may be trimmed, and its outbox row
    forgotten. None when there is no group: nothing is known consumed."""
    needs = []
    for position in positions:
        if position.pending and position.oldest_pending:
            needs.append(parse_id(position.oldest_pending))
        else:
            ms, seq = parse_id(position.last_delivered or "0-0")
            needs.append((ms, seq + 1))
    return min(needs) if needs else None


def lag_seconds(position: GroupPosition, now_ms: int) -> float:
    """The age of the oldest event not yet applied; 0 when there is none."""
    oldest = [entry_ms(i) for i in (position.oldest_undelivered, position.oldest_pending) if i]
    return max(0.0, (now_ms - min(oldest)) / 1000) if oldest else 0.0


def _field(info: dict[Any, Any], name: str) -> Any:
    return info.get(name, info.get(name.encode()))


async def read_position(redis: Redis, group: str) -> GroupPosition | None:
    return (await read_positions(redis, only=group)).get(group)


async def read_positions(redis: Redis, only: str = "", stream: str = VOTE_EVENTS_STREAM) -> dict[str, GroupPosition]:
    """Every consumer group's position (or only the named one's)."""
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:  # no stream yet
        return {}
    positions = {}
    for info in groups:
        name = str(_field(info, "name"))
        if only and name != only:
            continue
        last_delivered = str(_field(info, "last-delivered-id"))
        # The first entry after the last delivered one ("(" = exclusive).
        undelivered = entry_list(await redis.xrange(stream, f"({last_delivered}", "+", count=1))
        summary = await redis.xpending(stream, name)
        pending = int(summary.get("pending", 0) or 0)
        positions[name] = GroupPosition(
            oldest_undelivered=undelivered[0][0] if undelivered else "",
            oldest_pending=str(summary.get("min") or "") if pending else "",
            pending=pending,
            last_delivered=last_delivered,
        )
    return positions


# Entries trimmed past a group that had not applied them: only when the
# stream passed its hard cap (a group stopped for long, or abandoned).
FORCED_TRIMS = Counter(
    "vote_events_forced_trims_total", "Times the stream passed its cap and was trimmed past a consumer group"
)


async def trim_consumed(
    redis: Redis, hard_cap: int, stream: str = VOTE_EVENTS_STREAM, keep_s: float = 0.0
) -> StreamId | None:
    """Trims the vote event stream below the slowest group's position and
    below the last `keep_s` seconds of entries (what a live-feed watcher can
    resume from), never past an entry a group still needs, except when the stream has grown
    past `hard_cap` entries (a group stopped for long, or a group nobody
    reads any more): then down to the cap, with an error naming the groups
    behind. Returns the first entry some group still needs, or after a
    forced trim the first entry left (None: no group, nothing known done)."""
    positions = await read_positions(redis, stream=stream)
    needed = needed_from(list(positions.values()))
    newest = entry_list(await redis.xrevrange(stream, "+", "-", count=1))
    if needed is not None and newest:
        # The newest entry always stays: the relay checks, before each
        # publish, that the entry it published last is still there (else
        # Redis lost the stream's tail, and it publishes again).
        # Entry ids are milliseconds: the first id of `keep_s` seconds ago.
        recent = (int(time.time() * 1000 - keep_s * 1000), 0)
        await redis.xtrim(stream, minid=format_id(min(needed, recent, parse_id(newest[0][0]))), approximate=True)
    length = await redis.xlen(stream)
    if length > hard_cap:
        oldest_kept = entry_list(await redis.xrange(stream, "-", "+", count=1))
        log.error(
            "the vote event stream holds %d entries, past its cap of %d: trimming it past the slowest of the "
            "consumer groups %s; events a group had not read are gone from the stream and its projection "
            "misses them (docs/operations.md, 'Stream retention')",
            length,
            hard_cap,
            sorted(positions),
            extra={"length": length, "cap": hard_cap, "oldest": oldest_kept[0][0] if oldest_kept else ""},
        )
        await redis.xtrim(stream, maxlen=hard_cap, approximate=True)
        FORCED_TRIMS.inc()
        # What was trimmed can never be delivered from the stream again: its
        # outbox rows may go too, or an abandoned group would keep them forever.
        first = entry_list(await redis.xrange(stream, "-", "+", count=1))
        if first:
            needed = max(needed or (0, 0), parse_id(first[0][0]))
    return needed


async def watch_group(redis: Redis, group: str, dead_stream: str, interval_s: float = 5.0) -> None:
    """Updates the group's gauges every interval, forever; logs when its lag grows past LAG_WARNING_S."""
    warned = False
    while True:
        try:
            position = await read_position(redis, group)
            if position is not None:
                lag = lag_seconds(position, int(time.time() * 1000))
                CONSUMER_LAG_SECONDS.labels(group).set(lag)
                CONSUMER_PENDING.labels(group).set(position.pending)
                if lag > LAG_WARNING_S and not warned:
                    log.warning(
                        "consumer group %s is %.1fs behind the vote event stream",
                        group,
                        lag,
                        extra={"group": group, "lag_s": round(lag, 1), "pending": position.pending},
                    )
                elif lag <= LAG_WARNING_S and warned:
                    log.info("consumer group %s caught up", group, extra={"group": group})
                warned = lag > LAG_WARNING_S
            DEAD_LETTERS.labels(group).set(await redis.xlen(dead_stream))
            STREAM_LENGTH.set(await redis.xlen(VOTE_EVENTS_STREAM))
        except asyncio.CancelledError:
            raise
        except RedisError as exc:
            if stopping():
                raise asyncio.CancelledError from exc
            log.debug("could not read consumer progress (%s)", type(exc).__name__)
        await asyncio.sleep(interval_s)
