"""The Redis client every service uses."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.common.breaker import CircuitBreaker
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


class GuardedRedis(Redis):
    """An at-most-once client behind a circuit breaker (services/common/breaker.py).

    While the breaker is open, commands fail at once with a ConnectionError,
    the error the callers already fall back on; a timeout or a lost
    connection opens it. So a hung Redis costs the vote path one short
    timeout, then nothing, until the health watcher sees Redis answer."""

    breaker: CircuitBreaker

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self._check()
        try:
            result = await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]  # unannotated in redis-py
        except (RedisConnectionError, RedisTimeoutError):
            await self._failed()
            raise
        self.breaker.recovered()
        return result

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        return _GuardedPipeline(self, transaction, shard_hint)

    def _check(self) -> None:
        if not self.breaker.allow():
            raise RedisConnectionError("Redis is skipped while its circuit breaker is open")

    async def _failed(self) -> None:
        """Opens the breaker, and drops the pool's idle connections: after a
        Redis restart they are all dead, and this client never re-sends, so
        each would fail one more command before the health watcher noticed."""
        self.breaker.failed()
        await self.connection_pool.disconnect(inuse_connections=False)


class _GuardedPipeline(Pipeline):
    def __init__(self, client: GuardedRedis, transaction: bool, shard_hint: str | None) -> None:
        super().__init__(client.connection_pool, client.response_callbacks, transaction, shard_hint)
        self._client = client

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        self._client._check()
        try:
            result = await super().execute(raise_on_error)
        except (RedisConnectionError, RedisTimeoutError):
            await self._client._failed()
            raise
        self._client.breaker.recovered()
        return result


def create_hot_path_redis(settings: Settings, breaker: CircuitBreaker) -> GuardedRedis:
    """The client for the vote path's Redis commands: never re-sent (as
    create_at_most_once_redis), a short timeout, and the breaker."""
    client = GuardedRedis.from_url(
        settings.redis_url,
        decode_responses=True,
        # Redis answers a vote-path command in well under a millisecond (a
        # whole micro-batch's script in a few): one that has not answered in
        # this long (0.25 s by default) means Redis is hung or unreachable.
        socket_connect_timeout=settings.redis_hot_path_timeout_s,
        socket_timeout=settings.redis_hot_path_timeout_s,
        retry=Retry(NoBackoff(), retries=0),
        retry_on_error=[],
        health_check_interval=5,
    )
    assert isinstance(client, GuardedRedis)  # from_url builds cls; its annotation says Redis
    client.breaker = breaker
    return client
