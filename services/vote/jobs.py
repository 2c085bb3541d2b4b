"""The vote service's background jobs: the outbox relay, retention, the
outbox gauges, count reconciliation, usage pruning and the coordinated-voting
detection."""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis

from services.common import stream_progress
from services.common.jobs import every, stopping
from services.vote import metrics
from services.vote.ring_watch import RingWatch
from services.vote.store.counts import CountsCache
from services.vote.store.outbox import OutboxRelay
from services.vote.store.votes import VotesTable

log = logging.getLogger("vote.jobs")

# Idle poll of the outbox; an event waits at most this long before relay.
IDLE_POLL_S = 0.05
MAX_BACKOFF_S = 2.0
OUTBOX_WATCH_INTERVAL_S = 5.0
RETENTION_INTERVAL_S = 10.0
PRUNE_USAGE_INTERVAL_S = 3600.0


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
        except Exception as exc:  # Redis or PostgreSQL down: events wait in the outbox
            if stopping():
                raise asyncio.CancelledError from exc
            log.warning("outbox relay failed (%s); events stay in the outbox, retrying", type(exc).__name__)
            backoff = min(max(backoff * 2, 0.1), MAX_BACKOFF_S)
        await asyncio.sleep(backoff)


async def retain_by_progress(redis: Redis, relay: OutboxRelay, stream_max_len: int, keep_s: float) -> None:
    """The stream is trimmed, and relayed outbox rows forgotten, only below
    what every consumer group has applied, and below the last `keep_s`
    seconds (live-feed watchers resume from there)."""

    async def one_pass() -> int:
        needed = await stream_progress.trim_consumed(redis, stream_max_len, keep_s=keep_s)
        return await relay.forget_durable_events(needed)

    await every(RETENTION_INTERVAL_S, "stream and outbox retention", one_pass, run_first=False)


async def watch_outbox(relay: OutboxRelay) -> None:
    """The outbox backlog is what an operator sees first when Redis is away:
    votes are durable, their events wait here."""

    async def measure() -> None:
        waiting, oldest_s = await relay.outbox_backlog()
        metrics.OUTBOX_UNRELAYED.set(waiting)
        metrics.OUTBOX_OLDEST_UNRELAYED_SECONDS.set(oldest_s)

    await every(OUTBOX_WATCH_INTERVAL_S, "outbox backlog", measure)


async def reconcile_counts(counts: CountsCache, interval_s: float, page_size: int) -> None:
    """Rewrites cached counts that drifted from the votes table (a vote
    acknowledged while Redis was away, a Redis restart...). Each pass costs
    about one page, whatever the number of cached items."""

    async def one_pass() -> int:
        return await counts.reconcile(page_size)

    await every(interval_s, "count reconciliation", one_pass, run_first=False)


async def prune_daily_usage(votes_table: VotesTable) -> None:
    await every(PRUNE_USAGE_INTERVAL_S, "prune daily usage", votes_table.prune_daily_usage)


async def watch_rings(watch: RingWatch, interval_s: float) -> None:
    """Finds groups of agents voting in lockstep and flags them (ring_watch.py)."""
    await every(interval_s, "coordinated-voting detection", watch.one_pass, run_first=False)
