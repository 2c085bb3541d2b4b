"""Admission of votes: the daily quota counters and revoked-key markers,
and each agent's recent votes for the abuse rules' windows (Redis).

Quota admission is atomic in Redis (concurrent requests cannot pass a
quota); while Redis is unreachable it counts the votes table instead, with
the same decision (rules.admit_in_order). The windows only count; the rules
decide (rules.broken_rule).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.typing import EncodableT

from services.common.auth import REVOKED_KEY
from services.vote.model import VoteRow, direction_field
from services.vote.rules import WindowCounts, admit_in_order
from services.vote.store.votes import VotesTable

log = logging.getLogger("vote.admission")

# Votes an agent cast on a UTC day (quota), and its recent votes by direction
# (sorted sets scored by time in ms) for the abuse rules.
QUOTA_KEY = "vote:quota:{agent_id}:{day}"
QUOTA_TTL_S = 2 * 86_400
RECENT_KEY = "vote:recent:{agent_id}:{direction}"
# Agents whose quota counters wait to be raised after an outage (past it, the
# others are still counted from the table while Redis is down, but their
# counters are not raised afterwards: a bound on memory during a long outage).
QUOTA_RESYNC_MAX = 100_000

# The scripts take a whole micro-batch in one call: one command to pack and
# one reply to parse per batch instead of per vote (per-command client
# overhead was ~10% of the vote service's CPU under load). A batch runs
# atomically; the keys are not hash-tagged, so this assumes a standalone
# Redis (or a cluster proxy), not Redis Cluster.

# Refuses a revoked key, then takes one vote of the agent's daily quota
# atomically. The same agent twice in a batch is charged twice, in order.
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
# Records committed votes in their agents' recent windows and counts them.
# KEYS: per vote, recent up, recent down.
# ARGV: the number of windows, then the windows in ms (longest first: the
# sets keep that long), then per vote: direction (up|down), time ms, member.
# Returns per vote, per window: {up, down, run} with times in
# (now - window, now] for the longest, [now - window, +inf) for the others;
# run: the vote's direction's votes after the latest opposite one in the
# window (the rules count runs: rules.Counted.ONE_WAY_VOTES).
_RECORD_IN_WINDOWS = """
local n = tonumber(ARGV[1])
local longest = tonumber(ARGV[2])
local out = {}
for i = 1, #KEYS / 2 do
  local recent_up, recent_down = KEYS[2 * i - 1], KEYS[2 * i]
  local at = n + 3 * (i - 1) + 2
  local direction, now, member = ARGV[at], tonumber(ARGV[at + 1]), ARGV[at + 2]
  local same, other = recent_up, recent_down
  if direction ~= 'up' then same, other = recent_down, recent_up end
  redis.call('ZADD', same, now, member)
  for _, key in ipairs({recent_up, recent_down}) do
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - longest)
    redis.call('PEXPIRE', key, longest)
  end
  for w = 1, n do
    local since = now - tonumber(ARGV[w + 1])
    local up = redis.call('ZCOUNT', recent_up, since, '+inf')
    local down = redis.call('ZCOUNT', recent_down, since, '+inf')
    local last = redis.call('ZREVRANGEBYSCORE', other, '+inf', since, 'WITHSCORES', 'LIMIT', 0, 1)
    local run_since = since
    if #last > 0 then run_since = '(' .. last[2] end
    out[#out + 1] = up
    out[#out + 1] = down
    out[#out + 1] = redis.call('ZCOUNT', same, run_since, '+inf')
  end
end
return out
"""


@dataclass(frozen=True)
class QuotaRequest:
    """One vote asking for a unit of its agent's quota."""

    agent_id: str
    key_hash: bytes
    day: str  # YYYYMMDD, UTC
    day_date: date
    limit: int | None


@dataclass(frozen=True)
class Admission:
    admitted: bool
    used: int
    key_revoked: bool = False
    # True when Redis holds a quota unit for this vote (refunded if not stored).
    charged: bool = False


class QuotaCounters:
    def __init__(self, votes_table: VotesTable, redis_hot_path: Redis, redis_at_most_once: Redis) -> None:
        self.table = votes_table
        # Charges must not run twice, and a vote must not wait on a hung
        # Redis: the hot-path client never re-sends, times out fast, and
        # trips a circuit breaker (redis_client.create_hot_path_redis).
        self._admit = redis_hot_path.register_script(_ADMIT_BATCH)
        # Idempotent, but tried before each admission while Redis is away:
        # fail fast, without the retries' back-off, and fall back.
        self._raise = redis_hot_path.register_script(_RAISE_QUOTAS)
        self._once = redis_at_most_once
        # Agents (and their UTC day) admitted by counting the votes table
        # while Redis was unreachable: their Redis counters missed those
        # votes, and are raised to the table's count before the next
        # admission Redis answers (or an agent would get its quota again).
        self._to_resync: dict[tuple[str, str], date] = {}

    async def admit(self, requests: Sequence[QuotaRequest]) -> list[Admission]:
        try:
            if self._to_resync:
                await self._resync()
            keys: list[str] = []
            args: list[EncodableT] = [QUOTA_TTL_S]
            for r in requests:
                keys += [
                    QUOTA_KEY.format(agent_id=r.agent_id, day=r.day),
                    REVOKED_KEY.format(key_hash=r.key_hash.hex()),
                ]
                args.append(-1 if r.limit is None else r.limit)
            flat = await self._admit(keys=keys, args=args)
            return [
                Admission(admitted=s == 1, used=int(u), key_revoked=s == -2, charged=s == 1)
                for s, u in zip(flat[0::2], flat[1::2], strict=True)
            ]
        except RedisError:
            return await self._admit_from_table(requests)

    async def _admit_from_table(self, requests: Sequence[QuotaRequest]) -> list[Admission]:
        for r in requests:
            if len(self._to_resync) < QUOTA_RESYNC_MAX:
                self._to_resync[(r.agent_id, r.day)] = r.day_date
        admissions: list[Admission | None] = [None] * len(requests)
        for day in sorted({r.day_date for r in requests}):  # a batch may straddle midnight
            positions = [i for i, r in enumerate(requests) if r.day_date == day]
            used = await self.table.votes_on_day([requests[i].agent_id for i in positions], day)
            verdicts = admit_in_order([(requests[i].agent_id, requests[i].limit) for i in positions], used)
            for i, (admitted, so_far) in zip(positions, verdicts, strict=True):
                admissions[i] = Admission(admitted=admitted, used=so_far)
        return [a for a in admissions if a is not None]

    async def _resync(self) -> None:
        waiting, self._to_resync = self._to_resync, {}
        try:
            for day in sorted(set(waiting.values())):
                agents = [(agent, key_day) for (agent, key_day), d in waiting.items() if d == day]
                used = await self.table.votes_on_day([agent for agent, _ in agents], day)
                keys = [QUOTA_KEY.format(agent_id=agent, day=key_day) for agent, key_day in agents]
                await self._raise(keys=keys, args=[QUOTA_TTL_S, *[used.get(agent, 0) for agent, _ in agents]])
        except BaseException:
            for key, day in waiting.items():  # not done: the next admission tries again
                self._to_resync.setdefault(key, day)
            raise
        log.info("quota counters raised to the votes table after an outage", extra={"agents": len(waiting)})

    async def refund(self, requests: Sequence[QuotaRequest]) -> None:
        """Gives back the units charged for votes that were not stored."""
        if not requests:
            return
        try:
            pipe = self._once.pipeline(transaction=False)
            for r in requests:
                pipe.decr(QUOTA_KEY.format(agent_id=r.agent_id, day=r.day))
            await pipe.execute()
        except RedisError:
            pass  # the quota counter expires with the day anyway


class RuleWindows:
    """Each agent's recent votes, counted per abuse-rule window."""

    def __init__(self, redis: Redis, redis_hot_path: Redis, windows_s: Sequence[int]) -> None:
        self.redis = redis
        self.windows_s = sorted(set(windows_s), reverse=True)
        self._record = redis_hot_path.register_script(_RECORD_IN_WINDOWS)

    async def record(self, stored: Sequence[VoteRow]) -> dict[tuple[str, str, str], dict[int, WindowCounts]]:
        """Adds committed votes to their agents' windows; returns, per vote
        (VoteRow.key), the agent's counts in each window just after it (none
        while Redis is unreachable)."""
        if not stored:
            return {}
        n = len(self.windows_s)
        keys: list[str] = []
        args: list[EncodableT] = [n, *[w * 1000 for w in self.windows_s]]
        for vote in stored:
            keys += [RECENT_KEY.format(agent_id=vote.agent_id, direction=d) for d in ("up", "down")]
            args += [direction_field(vote.direction), int(vote.created_at.timestamp() * 1000), vote.id]
        try:
            flat = await self._record(keys=keys, args=args)
        except RedisError:
            return {}  # Redis away: these votes escape the rules (docs/operations.md)
        found = {}
        for i, vote in enumerate(stored):
            counts = flat[3 * n * i : 3 * n * (i + 1)]
            found[vote.key] = {
                w: WindowCounts(int(counts[3 * j]), int(counts[3 * j + 1]), int(counts[3 * j + 2]))
                for j, w in enumerate(self.windows_s)
            }
        return found

    async def forget(self, agent_id: str) -> None:
        """Empties the agent's windows (an admin forgave the votes that broke a rule)."""
        await self.redis.delete(*(RECENT_KEY.format(agent_id=agent_id, direction=d) for d in ("up", "down")))
