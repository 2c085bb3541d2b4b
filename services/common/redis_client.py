"""The Redis client every service uses."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.common.config import Settings


def create_redis(settings: Settings) -> Redis:
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
