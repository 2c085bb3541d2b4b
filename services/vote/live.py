"""Live vote events for WatchVotes: one Redis stream reader fanned out to many watchers.

Each watcher gets a bounded queue. A watcher that falls `MAX_BACKLOG` events
behind (a slow or vanished client) is dropped with RESOURCE_EXHAUSTED instead
of blocking the others or growing memory; a disconnect removes it at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from prometheus_client import Gauge
from redis.asyncio import Redis

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.common import events, validation
from services.common.errors import ResourceExhausted
from services.vote.model import Counts
from services.vote.store.votes import VotesTable

log = logging.getLogger("vote.live")

MAX_BACKLOG = 1000
WATCHERS = Gauge("vote_event_watchers", "Clients currently watching vote events")


@dataclass(frozen=True)
class LiveEvent:
    event: VoteEvent
    counts: Counts


@dataclass(eq=False)
class _Watcher:
    item_type: str
    item_id: str
    queue: asyncio.Queue[LiveEvent | None] = field(default_factory=lambda: asyncio.Queue(MAX_BACKLOG))
    overflowed: bool = False

    def wants(self, event: VoteEvent) -> bool:
        return (not self.item_type or event.item_type == self.item_type) and (
            not self.item_id or event.item_id == self.item_id
        )


class VoteFeed:
    def __init__(self, redis: Redis, store: VotesTable) -> None:
        self.redis = redis
        self.store = store
        self._watchers: set[_Watcher] = set()
        # The stream is read only while someone watches: under load, reading
        # and decoding every event for nobody cost ~3% of the vote service.
        self._watched = asyncio.Event()

    def subscribe(self, item_type: str, item_id: str) -> _Watcher:
        """Validates the filters and registers a watcher at once, so nothing
        published from now on is missed. Pair with unsubscribe()."""
        item_type = validation.item_type(item_type) if item_type else ""
        item_id = validation.identifier("item_id", item_id) if item_id else ""
        watcher = _Watcher(item_type, item_id)
        self._watchers.add(watcher)
        self._watched.set()
        WATCHERS.set(len(self._watchers))
        return watcher

    def unsubscribe(self, watcher: _Watcher) -> None:
        self._watchers.discard(watcher)
        if not self._watchers:
            self._watched.clear()
        WATCHERS.set(len(self._watchers))

    async def events(self, watcher: _Watcher) -> AsyncIterator[LiveEvent]:
        while True:
            item = await watcher.queue.get()
            if item is None:
                raise ResourceExhausted(
                    f"this stream fell more than {MAX_BACKLOG} events behind and was closed; reconnect"
                )
            yield item

    def _publish(self, live: LiveEvent) -> None:
        for watcher in list(self._watchers):
            if watcher.overflowed or not watcher.wants(live.event):
                continue
            try:
                watcher.queue.put_nowait(live)
            except asyncio.QueueFull:
                watcher.overflowed = True
                # Make room for the end-of-stream marker: the client is told why.
                watcher.queue.get_nowait()
                watcher.queue.put_nowait(None)

    async def run(self) -> None:
        """Reads new stream entries forever and hands them to the watchers.

        With no watcher, it sleeps; the first watcher restarts it at the
        stream's end, so a watcher sees the events relayed from the moment
        the reader resumes, an event-loop turn after it subscribed. The end
        is resolved to an entry id once: `$` on every read would skip the
        entries added between a read that timed out empty and the next."""
        last_id: str | None = None
        while True:
            try:
                if not self._watched.is_set():
                    await self._watched.wait()
                    last_id = None
                if last_id is None:
                    newest = events.entry_list(await self.redis.xrevrange(events.VOTE_EVENTS_STREAM, count=1))
                    last_id = newest[0][0] if newest else "0-0"
                entries = events.stream_entries(
                    await self.redis.xread({events.VOTE_EVENTS_STREAM: last_id}, count=500, block=1000)
                )
                if not entries:
                    continue
                last_id = entries[-1][0]
                if not self._watchers:
                    continue
                decoded = [events.decode(f[events.EVENT_FIELD]) for _, f in entries if f and events.EVENT_FIELD in f]
                counts = await self.store.counts_many([(e.item_type, e.item_id) for e in decoded])
                for event in decoded:
                    self._publish(LiveEvent(event, counts[(event.item_type, event.item_id)]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis, PostgreSQL or a bad entry: keep the feed alive
                log.warning("live feed: %s; retrying", type(exc).__name__)
                await asyncio.sleep(1.0)
