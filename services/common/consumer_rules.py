"""The vote event consumer's decisions, apart from Redis: no I/O here.

What counts as "try again later", when an event is given up on and parked,
how the retry and backoff delays grow, when to claim entries other consumers
abandoned, and how long a batch lingers. services.common.events.consume
does the reading, applying and acknowledging.
"""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import InterfaceError, OperationalError

# Failures that mean "try the same batch again later", not "this event is
# bad": the connection to Redis or PostgreSQL, or PostgreSQL refusing for the
# moment (OperationalError covers deadlocks, serialization failures and
# cancelled statements as well as a lost connection). Anything else, an
# integrity or data error above all, would fail the same way every time:
# retried forever it would wedge the group, so the event is dead-lettered.
TRANSIENT_ERRORS = (RedisConnectionError, RedisTimeoutError, OperationalError, InterfaceError, OSError, TimeoutError)


def is_transient(exc: BaseException) -> bool:
    """Whether the whole batch is retried later rather than its events tried one by one."""
    return isinstance(exc, TRANSIENT_ERRORS)


# Times one event is applied alone before it is parked as a dead letter.
DEAD_LETTER_AFTER_ATTEMPTS = 3
# The reason recorded for an entry that is not a VoteEvent.
UNDECODABLE = "undecodable"


def retry_alone_after_s(attempt: int) -> float | None:
    """After applying one event alone failed for the attempt-th time (from 1):
    the seconds to wait before the next attempt, or None to park it."""
    if attempt >= DEAD_LETTER_AFTER_ATTEMPTS:
        return None
    return 0.05 * attempt


def failure_reason(exc: BaseException) -> str:
    """The reason a dead letter records for an event its handler rejects."""
    return type(exc).__name__


def dead_letter_fields(entry_id: str, fields: dict[str, str] | None, reason: str) -> dict[str, str]:
    """A parked entry: the id it had in the vote event stream, why it was
    parked, and its fields as they were (or re-encoded)."""
    return {"entry_id": entry_id, "reason": reason, **(fields or {})}


# Entries another consumer took but did not acknowledge for this long (it
# crashed, or was replaced under a new name) are claimed by a live one.
CLAIM_IDLE_MS = 30_000
CLAIM_EVERY_S = 10.0


class ClaimSchedule:
    """When to claim abandoned entries: at once when the consumer (re)starts, then every CLAIM_EVERY_S."""

    def __init__(self, every_s: float = CLAIM_EVERY_S) -> None:
        self.every_s = every_s
        self.next_at = 0.0

    def due(self, now: float) -> bool:
        """Whether to claim now (loop time in seconds); if so the next claim is every_s from now."""
        if now < self.next_at:
            return False
        self.next_at = now + self.every_s
        return True


# Outages of Redis (or anything else that stops the loop) are waited out
# with a delay that doubles up to a bound, back to the first after a batch.
FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 5.0


def next_backoff(backoff_s: float) -> float:
    return min(backoff_s * 2, MAX_BACKOFF_S)


def linger_read(collected: int, batch_size: int, left_s: float) -> tuple[int, int] | None:
    """The next read that tops up a lingering batch, as (count, block ms), or
    None once the batch is full or the linger time is over."""
    if collected >= batch_size or left_s <= 0:
        return None
    return batch_size - collected, max(1, int(left_s * 1000))
