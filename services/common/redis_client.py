"""The Redis client every service uses."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.common.config import Settings


def create_redis(settings: Settings) -> Redis:
    """The client for commands that may safely run twice (reads, SET, HSET,
    DEL, absolute writes): a failed one is sent again on a fresh connection."""
    return Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_connect_timeout=1.0,
        socket_timeout=2.0,
        # After a Redis restart every pooled connection is dead: retry a
        # command on a fresh one instead of failing the first use of each.
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.01), retries=3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=5,
    )


def create_at_most_once_redis(settings: Settings) -> Redis:
    """The client for commands that must not run twice (INCR, HINCRBY,
    ZINCRBY, XADD, and the scripts made of them): never re-sent.

    A command that timed out may still have run (Redis stalled on a disk
    write, then executed it); re-sending it would charge a whole batch of
    votes' quota twice or count their votes twice. Its caller gets the error
    and falls back (docs/operations.md), and the next call uses a fresh
    connection.
    """
    return Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_connect_timeout=1.0,
        socket_timeout=2.0,
        retry=Retry(NoBackoff(), retries=0),
        retry_on_error=[],
        health_check_interval=5,
    )
