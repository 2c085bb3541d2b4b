"""The vote service's outbox relay: moves committed vote events to the Redis stream."""

from __future__ import annotations

import asyncio
import logging

from services.vote.store.outbox import OutboxRelay

log = logging.getLogger("vote.jobs")

# Idle poll of the outbox; an event waits at most this long before relay.
IDLE_POLL_S = 0.05
MAX_BACKOFF_S = 2.0


async def relay_forever(relay: OutboxRelay) -> None:
    backoff = IDLE_POLL_S
    while True:
        try:
            moved = await relay.relay()
            backoff = IDLE_POLL_S
            if moved:
                continue  # more may be waiting: drain before sleeping
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - Redis or PostgreSQL down: events wait in the outbox
            log.warning("outbox relay failed (%s); events stay in the outbox, retrying", type(exc).__name__)
            backoff = min(max(backoff * 2, 0.1), MAX_BACKOFF_S)
        await asyncio.sleep(backoff)
