"""The outbox relay: moves committed vote events from the outbox table to
the Redis stream, in order, and forgets rows every consumer has applied."""

from __future__ import annotations

import logging

from prometheus_client import Counter
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import events

log = logging.getLogger("vote.outbox")

EVENTS_RELAYED_AGAIN = Counter(
    "vote_events_relayed_again_total", "Vote events published again because Redis lost them from the stream"
)

# The relay's take: the oldest events not yet relayed, as the stream's JSON
# text (the payload plus its event_id), for the one relay holding the relay
# lock (none for the others). With several vote processes (a rolling update,
# or one per core), relays sharing rows would publish out of order: a re-vote
# ahead of the retraction before it, which the consumers' projections would
# then apply as "vote kept, then deleted".
RELAY_LOCK_KEY = 0x766F7465  # "vote"
_TAKE_OUTBOX_EVENTS = text(
    """
    WITH relay_lock AS (SELECT pg_try_advisory_xact_lock(:lock_key) AS held)
    SELECT o.id, (o.payload || jsonb_build_object('event_id', o.id))::text FROM vote.outbox o, relay_lock
    WHERE relay_lock.held AND o.relayed_at IS NULL ORDER BY o.id LIMIT :limit FOR UPDATE OF o
    """
)
_MARK_RELAYED = text(
    """
    UPDATE vote.outbox o SET relayed_at = now(), stream_ms = t.ms, stream_seq = t.seq
    FROM unnest(CAST(:ids AS bigint[]), CAST(:ms AS bigint[]), CAST(:seq AS bigint[])) AS t(id, ms, seq)
    WHERE o.id = t.id
    """
)
# Redis lost the stream's tail: every event relayed after the last entry it
# still has goes out again.
_RELAY_AGAIN_AFTER = text(
    """
    UPDATE vote.outbox SET relayed_at = NULL, stream_ms = NULL, stream_seq = NULL
    WHERE relayed_at IS NOT NULL AND (stream_ms, stream_seq) > (:ms, :seq)
    """
)
_LAST_RELAYED = text(
    """
    SELECT stream_ms, stream_seq FROM vote.outbox WHERE relayed_at IS NOT NULL
    ORDER BY stream_ms DESC, stream_seq DESC LIMIT 1
    """
)
# Entries up to a verified one are in Redis; after a minute they are on disk
# too (appendfsync everysec), so their rows can go.
# Events waiting for the relay: how many (counted up to a cap, so that a
# backlog of millions after a long Redis outage costs a bounded scan of the
# partial index) and how old the oldest is.
OUTBOX_COUNT_CAP = 100_000
_OUTBOX_BACKLOG = text(
    """
    SELECT (SELECT count(*) FROM (SELECT 1 FROM vote.outbox WHERE relayed_at IS NULL LIMIT :cap) AS waiting),
           (SELECT EXTRACT(EPOCH FROM now() - created_at) FROM vote.outbox
            WHERE relayed_at IS NULL ORDER BY id LIMIT 1)
    """
)
_FORGET_DURABLE = text(
    """
    DELETE FROM vote.outbox WHERE relayed_at < now() - make_interval(secs => :fsync_margin_s)
    AND (stream_ms, stream_seq) <= (:ms, :seq) AND (stream_ms, stream_seq) < (:needed_ms, :needed_seq)
    """
)
# Publishes a batch of events in one command, in order, after checking that
# the entry this relay published last is still there (Redis loses only the
# tail of a stream, so if it is, every earlier one is too). Missing, it may
# also have been trimmed after every consumer group applied it, when a later
# entry was added by someone else (a dead-letter replay, another vote
# process's relay): the stream's newest entry is then after it, and nothing
# was lost. Only a newest entry before it (or none) means a lost tail; taking
# the trimmed case for one made the relay wedge, re-reading the same
# "lost" entry forever.
# KEYS: the stream. ARGV: last published id ('' for none), field, then the
# events. No MAXLEN: the stream is trimmed by the consumers' progress
# (stream_progress.trim_consumed), never past an entry a group still needs.
# Returns {'lost', id of the stream's last entry or '0-0'} without adding
# anything, or {'ok', id of each added entry...}.
_CHECK_AND_XADD = """
local function before(a, b)
  local ams, aseq = string.match(a, '(%d+)-(%d+)')
  local bms, bseq = string.match(b, '(%d+)-(%d+)')
  ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
  return ams < bms or (ams == bms and aseq < bseq)
end
if ARGV[1] ~= '' and #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then
  local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if #top == 0 or before(top[1][1], ARGV[1]) then
    return {'lost', (#top > 0) and top[1][1] or '0-0'}
  end
end
local out = {'ok'}
for i = 3, #ARGV do
  out[#out + 1] = redis.call('XADD', KEYS[1], '*', ARGV[2], ARGV[i])
end
return out
"""


def _stream_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class OutboxRelay:
    def __init__(self, engine: AsyncEngine, redis_at_most_once: Redis) -> None:
        self.engine = engine
        # Stream appends must not run twice: a client that never re-sends.
        self._check_and_publish = redis_at_most_once.register_script(_CHECK_AND_XADD)
        # The stream entry this process published last (None: read from the
        # outbox before the next publish), for the relay's loss check.
        self._last_published: tuple[int, int] | None = None
        self._last_published_known = False

    async def relay(self, batch_size: int = 500) -> int:
        """Publishes up to batch_size waiting outbox events to the Redis stream;
        returns how many.

        In one transaction: the rows are locked, published, and marked
        relayed with their stream entry ids. One relay at a time takes rows
        (a transaction-scoped advisory lock), so events go out in order. If
        Redis fails the transaction rolls back and the rows wait for the
        next try; if the commit fails after publishing,
        consumers drop the duplicates by event_id. PostgreSQL renders each
        payload as the stream's JSON text, so no event is parsed here.

        Each publish first checks that the entry published last is still in
        the stream. If Redis lost it (it crashed before writing its last
        second to disk), every event relayed after the newest entry Redis
        still has is marked waiting again and goes out once more.
        """
        async with self.engine.begin() as conn:
            if not self._last_published_known:
                row = (await conn.execute(_LAST_RELAYED)).first()
                self._last_published = (row[0], row[1]) if row is not None else None
                self._last_published_known = True
            rows = (await conn.execute(_TAKE_OUTBOX_EVENTS, {"limit": batch_size, "lock_key": RELAY_LOCK_KEY})).all()
            reply = await self._check_and_publish(
                keys=[events.VOTE_EVENTS_STREAM],
                args=[
                    "" if self._last_published is None else "{}-{}".format(*self._last_published),
                    events.EVENT_FIELD,
                    *[payload for _, payload in rows],
                ],
            )
            if reply[0] == "lost":
                ms, seq = _stream_id(reply[1])
                again = (await conn.execute(_RELAY_AGAIN_AFTER, {"ms": ms, "seq": seq})).rowcount
                log.warning(
                    "Redis lost the end of the vote event stream (newest entry left: %s); relaying %d events again",
                    reply[1],
                    again,
                )
                EVENTS_RELAYED_AGAIN.inc(again)
                self._last_published_known = False
                return 0
            if not rows:
                return 0
            ids = [_stream_id(entry_id) for entry_id in reply[1:]]
            await conn.execute(
                _MARK_RELAYED,
                {"ids": [r[0] for r in rows], "ms": [i[0] for i in ids], "seq": [i[1] for i in ids]},
            )
        self._last_published = ids[-1]
        return len(rows)

    async def outbox_backlog(self) -> tuple[int, float]:
        """Events waiting for the relay (up to OUTBOX_COUNT_CAP) and the oldest one's age in seconds."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(_OUTBOX_BACKLOG, {"cap": OUTBOX_COUNT_CAP})).one()
        return int(row[0]), max(0.0, float(row[1] or 0.0))

    async def forget_durable_events(self, needed_from: tuple[int, int] | None, fsync_margin_s: float = 60.0) -> int:
        """Deletes relayed outbox rows nobody needs any more: every consumer
        group has applied their stream entries (they are before `needed_from`,
        the first entry a group still needs; None: no group known, keep all),
        they are at or before the last entry the relay verified, and they were
        relayed long enough ago for Redis to have written them to disk. Until
        then an event Redis loses is relayed again from its row."""
        verified = self._last_published
        if verified is None or needed_from is None:
            return 0
        async with self.engine.begin() as conn:
            result = await conn.execute(
                _FORGET_DURABLE,
                {
                    "fsync_margin_s": fsync_margin_s,
                    "ms": verified[0],
                    "seq": verified[1],
                    "needed_ms": needed_from[0],
                    "needed_seq": needed_from[1],
                },
            )
        return result.rowcount
