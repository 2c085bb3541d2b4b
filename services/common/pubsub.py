"""Redis pub/sub notices between services (cache invalidations): best effort,
backed by cache TTLs, so a missed message only delays an update."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from services.common import jobs

log = logging.getLogger("pubsub")

# The reputation service: "agent:<id>" (tier or flag changed), "key:<sha256 hex>" (revoked).
AUTH_CHANNEL = "aimusicstore:auth-invalidate"
# The ranking service: "<item_type>:<item_id>" deleted from the catalog.
CATALOG_CHANNEL = "aimusicstore:catalog-deleted"


async def subscribe_forever(
    redis: Redis,
    channel: str,
    handle: Callable[[str], Awaitable[None]],
    on_subscribed: Callable[[], None] | None = None,
) -> None:
    """Calls `handle` with each message's text, resubscribing after Redis outages.

    `on_subscribed` runs after every (re)subscription: anything cached before
    then may have missed a message.
    """
    while True:
        try:
            async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(channel)
                if on_subscribed is not None:
                    on_subscribed()
                async for message in pubsub.listen():
                    await handle(str(message.get("data", "")))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis away: caches fall back to their TTL
            if jobs.stopping():
                raise asyncio.CancelledError from exc
            log.warning("listener on %s: %s; resubscribing", channel, type(exc).__name__)
            await asyncio.sleep(1.0)
