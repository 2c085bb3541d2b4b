"""All SQL and Redis access of the vote service."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.typing import EncodableT
from sqlalchemy import and_, delete, func, insert, or_, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import events
from services.common.auth import REVOKED_KEY
from services.vote.tables import daily_usage, outbox, votes

log = logging.getLogger("vote.store")

COUNTS_REPAIRED = Counter(
    "vote_counts_repaired_total", "Cached item counts rewritten because they differed from the votes table"
)
EVENTS_RELAYED_AGAIN = Counter(
    "vote_events_relayed_again_total", "Vote events published again because Redis lost them from the stream"
)

# Per-item counts in Redis: a hash with fields up and down. Seeded from the
# votes table when missing and expired after a day idle; the reconciliation
# job rewrites any that drifted from the table.
COUNTS_KEY = "vote:counts:{item_type}:{item_id}"
COUNTS_TTL_S = 86_400
# Reconciliation checks again, on its next pass, the counts seeded or
# rewritten since its last one (a vote committed while they were being
# written may be missing). Bounded: past it, the sweep finds them.
RECHECK_MAX = 10_000
# SCAN calls per reconciliation pass: bounds a pass's cost when count keys
# are rare among Redis's keys (quota and recent-vote keys outnumber them).
SWEEP_SCANS_MAX = 20
# Votes an agent cast on a UTC day (quota), and its recent votes by direction
# (sorted sets scored by time in ms) for the suspicious-agent rules.
QUOTA_KEY = "vote:quota:{agent_id}:{day}"
QUOTA_TTL_S = 2 * 86_400
RECENT_KEY = "vote:recent:{agent_id}:{direction}"
# Agents whose quota counters wait to be raised after an outage (past it, the
# others are still counted from the table while Redis is down, but their
# counters are not raised afterwards: a bound on memory during a long outage).
QUOTA_RESYNC_MAX = 100_000

# Both scripts below take a whole micro-batch in one call: one command to
# pack and one reply to parse per batch instead of per vote (per-command
# client overhead was ~10% of the vote service's CPU under load). A batch
# runs atomically; the keys are not hash-tagged, so this assumes a
# standalone Redis (or a cluster proxy), not Redis Cluster.

# Admission: refuses a revoked key, then takes one vote of the agent's daily
# quota atomically (so concurrent requests cannot pass it). The same agent
# twice in a batch is charged twice, in order.
# KEYS: per vote, quota and revoked marker. ARGV: quota TTL, then per vote
# its limit (-1 = unlimited).
# Returns per vote {status, used}: status 1 admitted, -1 over quota, -2 revoked.
_ADMIT_BATCH = """
local out = {}
for i = 1, #KEYS / 2 do
  local quota, revoked, limit = KEYS[2 * i - 1], KEYS[2 * i], tonumber(ARGV[i + 1])
  if redis.call('EXISTS', revoked) == 1 then
    out[#out + 1] = -2; out[#out + 1] = 0
  else
    local used = tonumber(redis.call('GET', quota) or '0')
    if limit >= 0 and used >= limit then
      out[#out + 1] = -1; out[#out + 1] = used
    else
      used = redis.call('INCR', quota)
      if used == 1 then redis.call('EXPIRE', quota, ARGV[1]) end
      out[#out + 1] = 1; out[#out + 1] = used
    end
  end
end
return out
"""
# After an outage: raises each agent's quota counter to the votes the table
# holds for its day (votes admitted meanwhile were counted from the table,
# and never charged in Redis). Idempotent: a counter is never lowered.
# KEYS: quota keys. ARGV: quota TTL, then per key the table's count.
_RAISE_QUOTAS = """
for i = 1, #KEYS do
  local want = tonumber(ARGV[i + 1])
  if want > tonumber(redis.call('GET', KEYS[i]) or '0') then
    redis.call('SET', KEYS[i], want, 'EX', ARGV[1])
  end
end
return #KEYS
"""
# After committed votes: bump each item's counts if cached, record each vote
# in its agent's recent windows and evaluate the rules.
# KEYS: per vote, counts, recent up, recent down.
# ARGV: counts TTL, window ms, burst window ms, max votes, one-direction min,
#       burst max; then per vote: direction (up|down), now ms, member.
# Returns per vote {up or false, down or false, reason or ''}.
_AFTER_VOTES = """
local ttl, window, burst = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local max_votes, one_direction_min, burst_max = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local out = {}
for i = 1, #KEYS / 3 do
  local counts, recent_up, recent_down = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local direction, now, member = ARGV[3 * i + 4], tonumber(ARGV[3 * i + 5]), ARGV[3 * i + 6]
  local up, down = false, false
  if redis.call('EXISTS', counts) == 1 then
    redis.call('HINCRBY', counts, direction, 1)
    redis.call('EXPIRE', counts, ttl)
    local c = redis.call('HMGET', counts, 'up', 'down')
    up, down = c[1], c[2]
  end
  redis.call('ZADD', (direction == 'up') and recent_up or recent_down, now, member)
  for _, key in ipairs({recent_up, recent_down}) do
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    redis.call('PEXPIRE', key, window)
  end
  local ups, downs = redis.call('ZCARD', recent_up), redis.call('ZCARD', recent_down)
  local total = ups + downs
  local recent = redis.call('ZCOUNT', recent_up, now - burst, '+inf')
    + redis.call('ZCOUNT', recent_down, now - burst, '+inf')
  local reason = ''
  if total > max_votes then
    reason = 'more than ' .. max_votes .. ' votes in ' .. (window / 1000) .. ' seconds'
  elseif total >= one_direction_min and (ups == 0 or downs == 0) then
    reason = total .. ' votes in ' .. (window / 1000) .. ' seconds, all ' .. direction
  elseif recent > burst_max then
    reason = 'more than ' .. burst_max .. ' votes within ' .. (burst / 1000) .. ' seconds'
  end
  out[#out + 1] = up; out[#out + 1] = down; out[#out + 1] = reason
end
return out
"""

# Retractions: decrement the counts only if cached (else seeded from the table).
_INCREMENT_IF_CACHED = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return redis.call('HMGET', KEYS[1], 'up', 'down')
"""
_SEED_IF_ABSENT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'up', ARGV[1], 'down', ARGV[2])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return redis.call('HMGET', KEYS[1], 'up', 'down')
"""
# Reconciliation: overwrite only if nobody changed the counts since we read
# them (a concurrent vote wins; the next pass checks again).
_REPLACE_IF_UNCHANGED = """
local c = redis.call('HMGET', KEYS[1], 'up', 'down')
if c[1] ~= ARGV[1] or c[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'up', ARGV[3], 'down', ARGV[4])
return 1
"""


@dataclass(frozen=True)
class VoteRow:
    agent_id: str
    item_type: str
    item_id: str
    direction: int
    comment: str
    rating: int | None
    created_at: datetime
    id: int = 0


@dataclass(frozen=True)
class Counts:
    up: int
    down: int

    @property
    def score(self) -> int:
        return self.up - self.down


@dataclass(frozen=True)
class AbuseRules:
    window_s: int
    max_votes: int
    one_direction_min: int
    burst_window_s: int
    burst_max: int


@dataclass(frozen=True)
class Admission:
    admitted: bool
    used: int
    key_revoked: bool = False
    # True when Redis holds a quota unit for this vote (refunded if not stored).
    charged: bool = False


@dataclass(frozen=True)
class PendingVote:
    """A validated vote waiting for its batch."""

    vote: VoteRow
    event: dict
    key_hash: bytes
    day: str
    day_start: datetime
    limit: int | None


@dataclass(frozen=True)
class CastOutcome:
    # "stored", "duplicate" (already voted), "over_quota" or "revoked".
    status: str
    vote: VoteRow | None = None
    counts: Counts | None = None
    broken_rule: str = ""
    used: int = 0


# The up and down votes of several items: one index-only count of each
# item's range (LATERAL makes it a nested loop whatever the planner
# estimates), so the cost follows those items' votes, not the table. The
# row-value IN list this replaced, `(item_type, item_id) IN ((...), ...)`, was
# planned as a scan of the whole index testing N ORs per entry: 188 ms
# against 4-5 ms for 158 items at 93,000 votes (a join on the arrays still
# chose a merge join over the whole index: 25 ms).
_COUNTS_FOR = text(
    """
    SELECT wanted.item_type, wanted.item_id, counted.up, counted.down
    FROM unnest(CAST(:item_types AS text[]), CAST(:item_ids AS text[])) AS wanted(item_type, item_id)
    CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE v.direction = 1) AS up, count(*) FILTER (WHERE v.direction = -1) AS down
        FROM vote.votes AS v
        WHERE v.item_type = wanted.item_type AND v.item_id = wanted.item_id
    ) AS counted
    """
)

_INSERT_VOTES_WITH_EVENTS = text(
    """
    WITH input AS (
        SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS t(
            agent_id text, item_type text, item_id text, direction smallint, comment text, rating smallint,
            created_at timestamptz, event jsonb
        )
    ), inserted AS (
        INSERT INTO vote.votes (agent_id, item_type, item_id, direction, comment, rating, created_at)
        SELECT agent_id, item_type, item_id, direction, comment, rating, created_at FROM input
        ON CONFLICT ON CONSTRAINT votes_one_per_agent_item DO NOTHING
        RETURNING agent_id, item_type, item_id, id, created_at
    ), counted AS (
        INSERT INTO vote.daily_usage AS u (agent_id, day, used)
        SELECT agent_id, (created_at AT TIME ZONE 'UTC')::date, count(*) FROM inserted GROUP BY 1, 2
        ON CONFLICT (agent_id, day) DO UPDATE SET used = u.used + EXCLUDED.used
    ), queued AS (
        INSERT INTO vote.outbox (payload)
        SELECT i.event || jsonb_build_object(
                   'voted_at', to_char(v.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
        FROM inserted v JOIN input i USING (agent_id, item_type, item_id)
        ORDER BY v.id
    )
    SELECT agent_id, item_type, item_id, id, created_at FROM inserted
    """
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


def direction_field(direction: int) -> str:
    """+1/-1 as the name the API and the count hashes use."""
    return "up" if direction > 0 else "down"


def _vote_key(vote: VoteRow) -> tuple[str, str, str]:
    return (vote.agent_id, vote.item_type, vote.item_id)


_VOTE_COLUMNS = [
    votes.c.agent_id,
    votes.c.item_type,
    votes.c.item_id,
    votes.c.direction,
    votes.c.comment,
    votes.c.rating,
    votes.c.created_at,
    votes.c.id,
]


class VoteStore:
    def __init__(
        self,
        engine: AsyncEngine,
        redis: Redis,
        redis_at_most_once: Redis | None = None,
        redis_hot_path: Redis | None = None,
    ) -> None:
        self.engine = engine
        # Reads run in autocommit: no BEGIN/ROLLBACK round trips around a
        # single SELECT (writes use engine.begin() and real transactions).
        self.reads = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.redis = redis
        # Quota charges and refunds, count bumps and stream appends must not
        # run twice: their scripts go through a client that never re-sends.
        once = redis_at_most_once or redis
        self._once = once
        # What a vote or a count read waits on goes through the hot-path
        # client (redis_client.create_hot_path_redis): never re-sent either,
        # with a short timeout and a circuit breaker, so a hung or
        # blackholed Redis costs one short timeout and then nothing: the
        # PostgreSQL fallbacks below answer at once until Redis is back.
        hot = redis_hot_path or once
        self._hot = hot
        self._admit_batch_script = hot.register_script(_ADMIT_BATCH)
        self._after_votes_script = hot.register_script(_AFTER_VOTES)
        self._increment = hot.register_script(_INCREMENT_IF_CACHED)
        self._check_and_publish = once.register_script(_CHECK_AND_XADD)
        self._seed = hot.register_script(_SEED_IF_ABSENT)
        # Idempotent, but tried before each admission while Redis is away:
        # fail fast, without the retries' back-off, and fall back.
        self._raise_quotas = hot.register_script(_RAISE_QUOTAS)
        # Agents (and their UTC day) admitted by counting the votes table
        # while Redis was unreachable: their Redis counters missed those
        # votes, and are raised to the table's count before the next
        # admission Redis answers (or an agent would get its quota again).
        self._quotas_to_resync: dict[tuple[str, str], datetime] = {}
        self._replace = redis.register_script(_REPLACE_IF_UNCHANGED)
        # The stream entry this process published last (None: read from the
        # outbox before the next publish), for the relay's loss check.
        self._last_published: tuple[int, int] | None = None
        self._last_published_known = False
        # Count keys that missed an update while Redis was unreachable.
        self._stale_keys: set[str] = set()
        # Reconciliation: where its sweep of the cached counts resumes (a SCAN
        # cursor), and the keys its next pass checks first.
        self._sweep_cursor = 0
        self._recheck: set[str] = set()

    async def delete_vote(self, agent_id: str, item_type: str, item_id: str, event: dict) -> VoteRow | None:
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    delete(votes)
                    .where(votes.c.agent_id == agent_id, votes.c.item_type == item_type, votes.c.item_id == item_id)
                    .returning(votes.c.direction, votes.c.comment, votes.c.rating, votes.c.created_at, votes.c.id)
                )
            ).one_or_none()
            if row is None:
                return None
            removed = VoteRow(
                agent_id, item_type, item_id, row.direction, row.comment, row.rating, row.created_at, row.id
            )
            payload = event | {
                "direction": row.direction,
                "has_review": bool(row.comment) or row.rating is not None,
                "voted_at": row.created_at.isoformat(),
            }
            if row.rating is not None:
                payload["rating"] = row.rating
            await conn.execute(insert(outbox).values(payload=payload))
        return removed

    async def count_from_table(self, item_type: str, item_id: str) -> Counts:
        return (await self._counts_for([(item_type, item_id)])).get((item_type, item_id), Counts(0, 0))

    # -- casting votes in batches ----------------------------------------------

    async def cast_batch(self, pending: list[PendingVote], rules: AbuseRules) -> list[CastOutcome]:
        """Casts a batch of validated votes with three round trips in all:

        1. Redis: each vote's admission (revoked key? quota left?), pipelined;
        2. PostgreSQL: one transaction inserting every admitted vote and its
           outbox event (a vote is acknowledged only after this commit);
        3. Redis: counts and abuse windows of every stored vote, pipelined.

        While Redis is unreachable, quotas are checked against today's votes
        in the table and counts are read from the table (docs/operations.md).
        """
        admissions = await self._admit_batch(pending)
        admitted = [(p, a) for p, a in zip(pending, admissions, strict=True) if a.admitted]
        try:
            stored = await self._insert_batch([p for p, _ in admitted]) if admitted else {}
        except BaseException:
            await self._refund_batch([p for p, a in admitted if a.charged])
            raise

        def winner(p: PendingVote) -> VoteRow | None:
            entry = stored.get(_vote_key(p.vote))
            return entry[1] if entry is not None and entry[0] is p else None

        # Refused after being charged (already voted, or the same vote twice in this batch).
        await self._refund_batch([p for p, a in admitted if a.charged and winner(p) is None])
        # The votes are committed from here on: nothing below may fail them.
        after = await self._after_batch_safely([row for _, row in stored.values()], rules)
        outcomes = []
        for p, admission in zip(pending, admissions, strict=True):
            if admission.key_revoked:
                outcomes.append(CastOutcome("revoked"))
            elif not admission.admitted:
                outcomes.append(CastOutcome("over_quota", used=admission.used))
            elif (row := winner(p)) is None:
                outcomes.append(CastOutcome("duplicate"))
            else:
                counts, reason = after[_vote_key(row)]
                outcomes.append(CastOutcome("stored", vote=row, counts=counts, broken_rule=reason))
        return outcomes

    async def _after_batch_safely(
        self, stored: list[VoteRow], rules: AbuseRules
    ) -> dict[tuple[str, str, str], tuple[Counts, str]]:
        try:
            return await self._after_batch(stored, rules)
        except Exception:  # noqa: BLE001 - committed votes must still be answered 200
            log.exception("post-commit work failed for %d stored votes; answering with table counts", len(stored))
            try:
                truth = await self._counts_for(list({(v.item_type, v.item_id) for v in stored}))
            except Exception:  # noqa: BLE001
                truth = {}
            return {_vote_key(v): (truth.get((v.item_type, v.item_id), Counts(0, 0)), "") for v in stored}

    async def _admit_batch(self, pending: list[PendingVote]) -> list[Admission]:
        try:
            if self._quotas_to_resync:
                await self._resync_quotas()
            keys: list[str] = []
            args: list[EncodableT] = [QUOTA_TTL_S]
            for p in pending:
                keys += [
                    QUOTA_KEY.format(agent_id=p.vote.agent_id, day=p.day),
                    REVOKED_KEY.format(key_hash=p.key_hash.hex()),
                ]
                args.append(-1 if p.limit is None else p.limit)
            flat = await self._admit_batch_script(keys=keys, args=args)
            return [
                Admission(admitted=s == 1, used=int(u), key_revoked=s == -2, charged=s == 1)
                for s, u in zip(flat[0::2], flat[1::2], strict=True)
            ]
        except RedisError:
            # Fallback: today's votes in the table (the same agent twice in
            # this batch counts both).
            for p in pending:
                if len(self._quotas_to_resync) < QUOTA_RESYNC_MAX:
                    self._quotas_to_resync[(p.vote.agent_id, p.day)] = p.day_start
            used = await self._votes_today([(p.vote.agent_id, p.day_start) for p in pending])
            taken: dict[str, int] = {}
            admissions = []
            for p in pending:
                so_far = used.get(p.vote.agent_id, 0) + taken.get(p.vote.agent_id, 0)
                ok = p.limit is None or so_far < p.limit
                taken[p.vote.agent_id] = taken.get(p.vote.agent_id, 0) + (1 if ok else 0)
                admissions.append(Admission(admitted=ok, used=so_far, charged=False))
            return admissions

    async def _resync_quotas(self) -> None:
        waiting, self._quotas_to_resync = self._quotas_to_resync, {}
        try:
            for day in sorted({day for _, day in waiting}):
                agents = [(agent, since) for (agent, d), since in waiting.items() if d == day]
                used = await self._votes_today(agents)
                keys = [QUOTA_KEY.format(agent_id=agent, day=day) for agent, _ in agents]
                await self._raise_quotas(keys=keys, args=[QUOTA_TTL_S, *[used.get(agent, 0) for agent, _ in agents]])
        except BaseException:
            for key, since in waiting.items():  # not done: the next admission tries again
                self._quotas_to_resync.setdefault(key, since)
            raise
        log.info("quota counters raised to the votes table after an outage", extra={"agents": len(waiting)})

    async def _votes_today(self, agents_since: list[tuple[str, datetime]]) -> dict[str, int]:
        """Votes each agent cast on the UTC day starting at the given time (the
        append-only usage: retracted votes still count)."""
        wanted = {(agent, since.date()) for agent, since in agents_since}
        query = select(daily_usage.c.agent_id, daily_usage.c.day, daily_usage.c.used).where(
            daily_usage.c.agent_id.in_(sorted({a for a, _ in wanted})),
            daily_usage.c.day.in_(sorted({d for _, d in wanted})),
        )
        async with self.reads.connect() as conn:
            return {agent: used for agent, day, used in await conn.execute(query) if (agent, day) in wanted}

    async def prune_daily_usage(self, keep_days: int = 7) -> int:
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(daily_usage).where(daily_usage.c.day < func.current_date() - keep_days))
        return result.rowcount

    async def _insert_batch(
        self, pending: list[PendingVote]
    ) -> dict[tuple[str, str, str], tuple[PendingVote, VoteRow]]:
        """Inserts the votes and their outbox events in one transaction; returns
        the stored ones, each with the request it came from."""
        rows: dict[tuple[str, str, str], PendingVote] = {}
        for p in pending:  # the same agent and item twice in one batch: the first wins
            rows.setdefault(_vote_key(p.vote), p)
        requests = list(rows.values())
        # One statement (atomic on its own): the votes, and an outbox event
        # for each one actually inserted. One round trip per batch.
        async with self.reads.connect() as conn:
            # The batch travels as one JSON document: json.dumps is C code,
            # where eight typed array parameters were dumped element by
            # element in Python (~5% of the service's CPU).
            batch = [
                {
                    "agent_id": p.vote.agent_id,
                    "item_type": p.vote.item_type,
                    "item_id": p.vote.item_id,
                    "direction": p.vote.direction,
                    "comment": p.vote.comment,
                    "rating": p.vote.rating,
                    "created_at": p.vote.created_at.isoformat(),
                    "event": p.event,
                }
                for p in requests
            ]
            result = await conn.execute(_INSERT_VOTES_WITH_EVENTS, {"rows": json.dumps(batch)})
            stored: dict[tuple[str, str, str], tuple[PendingVote, VoteRow]] = {}
            for agent_id, item_type, item_id, vote_id, created_at in result:
                key = (agent_id, item_type, item_id)
                row = VoteRow(**{**rows[key].vote.__dict__, "id": vote_id, "created_at": created_at})
                stored[key] = (rows[key], row)
        return stored

    async def _refund_batch(self, pending: list[PendingVote]) -> None:
        if not pending:
            return
        try:
            pipe = self._once.pipeline(transaction=False)
            for p in pending:
                pipe.decr(QUOTA_KEY.format(agent_id=p.vote.agent_id, day=p.day))
            await pipe.execute()
        except RedisError:
            pass  # the quota counter expires with the day anyway

    async def _after_batch(
        self, stored: list[VoteRow], rules: AbuseRules
    ) -> dict[tuple[str, str, str], tuple[Counts, str]]:
        if not stored:
            return {}
        try:
            # Counts that missed an update while Redis was away must not be
            # bumped (and answered) as if they were right: dropped first, they
            # are seeded from the table below.
            await self._drop_stale_keys()
            keys: list[str] = []
            args: list[EncodableT] = [
                COUNTS_TTL_S,
                rules.window_s * 1000,
                rules.burst_window_s * 1000,
                rules.max_votes,
                rules.one_direction_min,
                rules.burst_max,
            ]
            for vote in stored:
                keys += [
                    COUNTS_KEY.format(item_type=vote.item_type, item_id=vote.item_id),
                    RECENT_KEY.format(agent_id=vote.agent_id, direction="up"),
                    RECENT_KEY.format(agent_id=vote.agent_id, direction="down"),
                ]
                args += [direction_field(vote.direction), int(vote.created_at.timestamp() * 1000), vote.id]
            flat = await self._after_votes_script(keys=keys, args=args)
            replies = list(zip(flat[0::3], flat[1::3], flat[2::3], strict=True))
        except RedisError:
            for vote in stored:
                self._stale_keys.add(COUNTS_KEY.format(item_type=vote.item_type, item_id=vote.item_id))
            truth = await self._counts_for(list({(v.item_type, v.item_id) for v in stored}))
            return {_vote_key(v): (truth.get((v.item_type, v.item_id), Counts(0, 0)), "") for v in stored}
        results: dict[tuple[str, str, str], tuple[Counts, str]] = {}
        missing = [v for v, (up, down, _) in zip(stored, replies, strict=True) if up is None or down is None]
        seeded = {}
        for vote in missing:  # first votes on an item since its counts were cached
            key = COUNTS_KEY.format(item_type=vote.item_type, item_id=vote.item_id)
            seeded[(vote.item_type, vote.item_id)] = await self._seed_counts(key, vote.item_type, vote.item_id)
        for vote, (up, down, reason) in zip(stored, replies, strict=True):
            if up is None or down is None:
                counts = seeded[(vote.item_type, vote.item_id)]
            else:
                counts = Counts(int(up), int(down))
            results[_vote_key(vote)] = (counts, reason or "")
        return results

    # -- quota and abuse windows -----------------------------------------------

    async def after_vote(self, vote: VoteRow, rules: AbuseRules) -> tuple[Counts, str]:
        """The item's counts including this committed vote, and the suspicious-agent
        rule the agent now breaks ('' when none)."""
        return (await self._after_batch([vote], rules))[_vote_key(vote)]

    async def forget_recent_votes(self, agent_id: str) -> None:
        """Empties the agent's windows for the suspicious-agent rules."""
        await self.redis.delete(*(RECENT_KEY.format(agent_id=agent_id, direction=d) for d in ("up", "down")))

    async def after_retraction(self, removed: VoteRow) -> None:
        """Takes a committed retraction out of the cached counts (never fails:
        the retraction is durable already; reconciliation repairs a miss)."""
        key = COUNTS_KEY.format(item_type=removed.item_type, item_id=removed.item_id)
        try:
            if not await self._increment(keys=[key], args=[direction_field(removed.direction), -1, COUNTS_TTL_S]):
                await self._seed_counts(key, removed.item_type, removed.item_id)
        except RedisError:
            self._stale_keys.add(key)
        except Exception:  # noqa: BLE001
            log.exception("could not update cached counts after a retraction; reconciliation will")

    async def counts(self, item_type: str, item_id: str) -> Counts:
        key = COUNTS_KEY.format(item_type=item_type, item_id=item_id)
        try:
            await self._drop_stale_keys()
            cached = await self._hot.hmget(key, "up", "down")
            if cached[0] is not None and cached[1] is not None:
                return Counts(int(cached[0]), int(cached[1]))
            return await self._seed_counts(key, item_type, item_id)
        except RedisError:
            return await self.count_from_table(item_type, item_id)

    async def counts_many(self, items: list[tuple[str, str]]) -> dict[tuple[str, str], Counts]:
        """Counts of several items from the votes table, in one query.

        The live feed uses this rather than the Redis copy: an event is only
        relayed after its transaction committed, but its Redis bump may still
        be on its way."""
        unique = list(dict.fromkeys(items))
        found = await self._counts_for(unique)
        return {item: found.get(item, Counts(0, 0)) for item in unique}

    async def _drop_stale_keys(self) -> None:
        if self._stale_keys:
            keys = list(self._stale_keys)
            await self._hot.delete(*keys)  # fail fast while Redis is away
            self._stale_keys.difference_update(keys)

    async def _seed_counts(self, key: str, item_type: str, item_id: str) -> Counts:
        counts = await self.count_from_table(item_type, item_id)
        seeded = await self._seed(keys=[key], args=[counts.up, counts.down, COUNTS_TTL_S])
        # A vote committed after the count above, whose own update found no
        # key to bump, is missing from the seeded value: check it again soon.
        self._mark_for_recheck(key)
        return Counts(int(seeded[0]), int(seeded[1]))

    # -- lists -------------------------------------------------------------------

    async def list_votes(
        self,
        *,
        agent_id: str | None = None,
        item: tuple[str, str] | None = None,
        reviews_only: bool = False,
        limit: int,
        after: tuple[datetime, int] | None,
    ) -> list[VoteRow]:
        """Votes newest first (keyset on created_at, id), by agent or by item."""
        query = select(*_VOTE_COLUMNS).order_by(votes.c.created_at.desc(), votes.c.id.desc()).limit(limit)
        if agent_id is not None:
            query = query.where(votes.c.agent_id == agent_id)
        if item is not None:
            query = query.where(votes.c.item_type == item[0], votes.c.item_id == item[1])
        if reviews_only:
            query = query.where(or_(votes.c.comment != "", votes.c.rating.is_not(None)))
        if after is not None:
            at, last_id = after
            query = query.where(or_(votes.c.created_at < at, and_(votes.c.created_at == at, votes.c.id < last_id)))
        async with self.reads.connect() as conn:
            return [VoteRow(*row) for row in await conn.execute(query)]

    # -- reconciliation ----------------------------------------------------------

    async def reconcile_counts(self, page_size: int = 500) -> int:
        """One pass of reconciliation: rewrites the cached counts that differ
        from the votes table; returns how many it rewrote.

        A pass checks the keys marked for a recheck (seeded or rewritten since
        the last pass) and the next page of a SCAN sweep over every cached
        count, resuming where the last pass stopped. So a pass costs about one
        page whatever the number of cached items, a freshly seeded count that
        missed a concurrent vote is repaired on the next pass, and the sweep
        covers every key within (cached items / page_size) passes.
        """
        keys, self._recheck = self._recheck, set()
        try:
            keys |= await self._next_sweep_page(page_size)
            ordered = sorted(keys)
            fixed = 0
            for start in range(0, len(ordered), page_size):
                fixed += await self._reconcile_keys(ordered[start : start + page_size])
        except BaseException:
            self._recheck |= keys  # not checked: the next pass does
            raise
        if fixed:
            COUNTS_REPAIRED.inc(fixed)
            log.info("cached counts repaired from the votes table", extra={"repaired": fixed})
        return fixed

    async def _next_sweep_page(self, page_size: int) -> set[str]:
        found: set[str] = set()
        for _ in range(SWEEP_SCANS_MAX):
            self._sweep_cursor, keys = await self.redis.scan(
                self._sweep_cursor, match=COUNTS_KEY.format(item_type="*", item_id="*"), count=page_size
            )
            found.update(cast(list[str], keys))  # the client decodes replies to str
            if self._sweep_cursor == 0 or len(found) >= page_size:
                break
        return found

    async def _reconcile_keys(self, keys: list[str]) -> int:
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(key, "up", "down")
        cached = await pipe.execute()
        items = [tuple(key.split(":", 3)[2:]) for key in keys]
        truth = await self._counts_for(items)
        fixed = 0
        for key, item, (up, down) in zip(keys, items, cached, strict=True):
            want = truth.get(item, Counts(0, 0))
            if up is None or down is None or (int(up), int(down)) == (want.up, want.down):
                continue
            # Rewritten only if no vote changed the key since it was read. A
            # vote committed before the count but not yet applied to the key
            # makes a difference that is not drift; the recheck on the next
            # pass undoes a rewrite it caused, and retries a skipped one.
            fixed += await self._replace(keys=[key], args=[up, down, want.up, want.down])
            self._mark_for_recheck(key)
        return fixed

    def _mark_for_recheck(self, key: str) -> None:
        if len(self._recheck) < RECHECK_MAX:
            self._recheck.add(key)

    async def _counts_for(self, items: Sequence[tuple[str, ...]]) -> dict[tuple[str, ...], Counts]:
        if not items:
            return {}
        params = {"item_types": [item[0] for item in items], "item_ids": [item[1] for item in items]}
        async with self.reads.connect() as conn:
            return {(t, i): Counts(up, down) for t, i, up, down in await conn.execute(_COUNTS_FOR, params)}

    # -- outbox relay ----------------------------------------------------------

    async def relay_outbox(self, batch_size: int = 500) -> int:
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
