"""Live vote events for WatchVotes: one Redis stream reader fanned out to many watchers.

Each watcher gets a bounded queue. A watcher that falls `MAX_BACKLOG` events
behind (a slow or vanished client) is dropped with RESOURCE_EXHAUSTED instead
of blocking the others or growing memory; a disconnect removes it at once.

An event's id is its stream entry id. A watcher that names the last id it saw
(`after_event_id`, SSE's Last-Event-ID) is first sent the events since then,
read from the stream, and then the live ones: it misses nothing that the
stream still holds (it keeps the newest AIMUSICSTORE_STREAM_MAX_LEN entries).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from prometheus_client import Gauge
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.common import events, validation
from services.common.errors import InvalidArgument, OutOfRange, ResourceExhausted
from services.common.events import Entry
from services.common.jobs import stopping
from services.vote.model import Counts
from services.vote.store.votes import VotesTable

log = logging.getLogger("vote.live")

MAX_BACKLOG = 1000
# Stream entries read per XRANGE while a resumed watcher catches up.
_REPLAY_PAGE = 500
WATCHERS = Gauge("vote_event_watchers", "Clients currently watching vote events")


@dataclass(frozen=True)
class LiveEvent:
    event: VoteEvent
    counts: Counts
    # The stream entry id: "<ms>-<seq>".
    event_id: str


def entry_order(entry_id: str) -> tuple[int, int]:
    """A stream entry id as a comparable pair; InvalidArgument if it is not one."""
    ms, dash, seq = entry_id.partition("-")
    if not (ms.isdigit() and (not dash or seq.isdigit())) or len(entry_id) > 41:
        raise InvalidArgument(
            "after_event_id", f"{entry_id[:50]!r} is not an event id (an event's event_id, as 1733500000000-0)"
        )
    return int(ms), int(seq or 0)


def still_held(after: str, max_deleted: str | None, oldest: str | None) -> bool:
    """Whether the stream still holds every entry after `after`: nothing
    after it was trimmed or deleted (the stream's max-deleted-entry-id,
    Redis 7). Redis 6 does not say what it deleted: then only a point at or
    after the oldest entry kept is known to be held."""
    if max_deleted is not None:
        return entry_order(max_deleted) <= entry_order(after)
    return oldest is None or entry_order(oldest) <= entry_order(after)


@dataclass(eq=False)
class _Watcher:
    item_type: str
    item_id: str
    # Resume after this entry id ("" = from now on).
    after: str = ""
    queue: asyncio.Queue[LiveEvent | None] = field(default_factory=lambda: asyncio.Queue(MAX_BACKLOG))
    overflowed: bool = False

    def wants(self, event: VoteEvent) -> bool:
        return (not self.item_type or event.item_type == self.item_type) and (
            not self.item_id or event.item_id == self.item_id
        )


class VoteFeed:
    def __init__(self, redis: Redis, store: VotesTable, resume_max_events: int = 50_000) -> None:
        self.redis = redis
        self.store = store
        self.resume_max_events = resume_max_events
        self._watchers: set[_Watcher] = set()
        # The stream is read only while someone watches: under load, reading
        # and decoding every event for nobody cost ~3% of the vote service.
        self._watched = asyncio.Event()

    def subscribe(self, item_type: str, item_id: str, after_event_id: str = "") -> _Watcher:
        """Validates the filters and registers a watcher at once, so nothing
        published from now on is missed. Pair with unsubscribe()."""
        item_type = validation.item_type(item_type) if item_type else ""
        item_id = validation.identifier("item_id", item_id) if item_id else ""
        if after_event_id:
            entry_order(after_event_id)
        watcher = _Watcher(item_type, item_id, after_event_id)
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
        replayed_up_to = (0, 0)
        if watcher.after:
            async for live in self._since(watcher):
                replayed_up_to = entry_order(live.event_id)
                yield live
        while True:
            item = await watcher.queue.get()
            if item is None:
                raise ResourceExhausted(
                    f"this stream fell more than {MAX_BACKLOG} events behind and was closed; "
                    "reconnect with after_event_id (Last-Event-ID) set to the last event_id you saw"
                )
            # The watcher was registered before the replay read the stream:
            # what both saw is sent once.
            if entry_order(item.event_id) > replayed_up_to:
                yield item

    async def check_resumable(self, watcher: _Watcher) -> bool:
        """OutOfRange if the stream no longer holds every event after the
        watcher's `after` id; False when there is no stream yet (nothing to
        replay). Checked before a watch answers, so that a client is refused
        with a status (HTTP 400) rather than a stream that ends at once."""
        if not watcher.after:
            return True
        try:
            info = await self.redis.xinfo_stream(events.VOTE_EVENTS_STREAM)
        except ResponseError:  # no stream yet: nothing happened after anything
            return False
        first = info.get("first-entry")
        if not still_held(watcher.after, info.get("max-deleted-entry-id"), first[0] if first else None):
            raise OutOfRange(
                f"cannot resume after event {watcher.after}: the feed no longer holds the events after it; "
                "reconnect without after_event_id (events since then may be missed)"
            )
        return True

    async def _since(self, watcher: _Watcher) -> AsyncIterator[LiveEvent]:
        """The stream's entries after the watcher's `after` id that it wants,
        oldest first, up to the newest entry there is now."""
        after = watcher.after
        # Again: the stream may have been trimmed since the watch began.
        if not await self.check_resumable(watcher):
            return
        scanned = 0
        while True:
            entries = events.entry_list(
                await self.redis.xrange(events.VOTE_EVENTS_STREAM, min=f"({after}", count=_REPLAY_PAGE)
            )
            if not entries:
                return
            scanned += len(entries)
            if scanned > self.resume_max_events:
                raise OutOfRange(
                    f"cannot resume after event {watcher.after}: more than {self.resume_max_events} events "
                    "have happened since; reconnect without after_event_id (events since then may be missed)"
                )
            after = entries[-1][0]
            for live in await self._live_events(entries):
                if watcher.wants(live.event):
                    yield live

    async def _live_events(self, entries: list[Entry]) -> list[LiveEvent]:
        """Decoded events of stream entries, with their items' current counts."""
        decoded = [
            (entry_id, events.decode(f[events.EVENT_FIELD])) for entry_id, f in entries if f and events.EVENT_FIELD in f
        ]
        counts = await self.store.counts_many([(e.item_type, e.item_id) for _, e in decoded])
        return [LiveEvent(event, counts[(event.item_type, event.item_id)], entry_id) for entry_id, event in decoded]

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
                for live in await self._live_events(entries):
                    self._publish(live)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis, PostgreSQL or a bad entry: keep the feed alive
                if stopping():
                    raise asyncio.CancelledError from exc
                log.warning("live feed: %s; retrying", type(exc).__name__)
                await asyncio.sleep(1.0)
