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

from prometheus_client import Gauge
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.common.events import VOTE_EVENTS_STREAM, entry_list

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


def lag_seconds(position: GroupPosition, now_ms: int) -> float:
    """The age of the oldest event not yet applied; 0 when there is none."""
    oldest = [entry_ms(i) for i in (position.oldest_undelivered, position.oldest_pending) if i]
    return max(0.0, (now_ms - min(oldest)) / 1000) if oldest else 0.0


def _field(info: dict[Any, Any], name: str) -> Any:
    return info.get(name, info.get(name.encode()))


async def read_position(redis: Redis, group: str) -> GroupPosition | None:
    groups = await redis.xinfo_groups(VOTE_EVENTS_STREAM)
    info = next((g for g in groups if str(_field(g, "name")) == group), None)
    if info is None:
        return None
    last_delivered = str(_field(info, "last-delivered-id"))
    # The first entry after the last delivered one ("(" = exclusive).
    undelivered = entry_list(await redis.xrange(VOTE_EVENTS_STREAM, f"({last_delivered}", "+", count=1))
    summary = await redis.xpending(VOTE_EVENTS_STREAM, group)
    pending = int(summary.get("pending", 0) or 0)
    return GroupPosition(
        oldest_undelivered=undelivered[0][0] if undelivered else "",
        oldest_pending=str(summary.get("min") or "") if pending else "",
        pending=pending,
    )


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
            log.debug("could not read consumer progress (%s)", type(exc).__name__)
        await asyncio.sleep(interval_s)
