"""Per-item vote counts cached in Redis, and their reconciliation with the votes table."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import cast

from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.typing import EncodableT

from services.vote.model import Counts, VoteRow, direction_field
from services.vote.store.votes import VotesTable

log = logging.getLogger("vote.counts")

COUNTS_REPAIRED = Counter(
    "vote_counts_repaired_total", "Cached item counts rewritten because they differed from the votes table"
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

# After committed votes: bump each item's counts if cached (else they are
# seeded from the table, which has the votes already).
# KEYS: per vote, its item's counts. ARGV: TTL, then per vote the field (up|down).
# Returns per vote {up or false, down or false}.
_BUMP_IF_CACHED = """
local out = {}
for i = 1, #KEYS do
  local up, down = false, false
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HINCRBY', KEYS[i], ARGV[i + 1], 1)
    redis.call('EXPIRE', KEYS[i], ARGV[1])
    local c = redis.call('HMGET', KEYS[i], 'up', 'down')
    up, down = c[1], c[2]
  end
  out[#out + 1] = up; out[#out + 1] = down
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


def _key(item_type: str, item_id: str) -> str:
    return COUNTS_KEY.format(item_type=item_type, item_id=item_id)


class CountsCache:
    def __init__(self, votes_table: VotesTable, redis: Redis, redis_hot_path: Redis) -> None:
        self.table = votes_table
        self.redis = redis
        # What a vote or a count read waits on goes through the hot-path
        # client: never re-sent, a short timeout and a circuit breaker, so a
        # hung Redis costs one short timeout and then nothing: the table
        # answers at once until Redis is back.
        self._hot = redis_hot_path
        self._bump = redis_hot_path.register_script(_BUMP_IF_CACHED)
        self._increment = redis_hot_path.register_script(_INCREMENT_IF_CACHED)
        self._seed = redis_hot_path.register_script(_SEED_IF_ABSENT)
        self._replace = redis.register_script(_REPLACE_IF_UNCHANGED)
        # Count keys that missed an update while Redis was unreachable.
        self._stale_keys: set[str] = set()
        # Reconciliation: where its sweep of the cached counts resumes (a SCAN
        # cursor), and the keys its next pass checks first.
        self._sweep_cursor = 0
        self._recheck: set[str] = set()

    async def after_votes(self, stored: Sequence[VoteRow]) -> dict[tuple[str, str, str], Counts]:
        """Per stored vote (VoteRow.key), its item's counts just after it:
        bumped where cached, seeded from the table where not, read from the
        table while Redis is unreachable."""
        if not stored:
            return {}
        try:
            # Counts that missed an update while Redis was away must not be
            # bumped (and answered) as if they were right: dropped first, they
            # are seeded from the table below.
            await self._drop_stale_keys()
            args: list[EncodableT] = [COUNTS_TTL_S, *[direction_field(v.direction) for v in stored]]
            flat = await self._bump(keys=[_key(v.item_type, v.item_id) for v in stored], args=args)
        except RedisError:
            self._stale_keys.update(_key(v.item_type, v.item_id) for v in stored)
            return await self.from_table(stored)
        found: dict[tuple[str, str, str], Counts] = {}
        seeded: dict[tuple[str, str], Counts] = {}
        for vote, up, down in zip(stored, flat[0::2], flat[1::2], strict=True):
            if up is not None and down is not None:
                found[vote.key] = Counts(int(up), int(down))
                continue
            # The first votes on an item since its counts were cached.
            item = (vote.item_type, vote.item_id)
            if item not in seeded:
                seeded[item] = await self._seed_counts(*item)
            found[vote.key] = seeded[item]
        return found

    async def from_table(self, stored: Sequence[VoteRow]) -> dict[tuple[str, str, str], Counts]:
        """Per stored vote, its item's counts as the votes table has them."""
        truth = await self.table.counts_many([(v.item_type, v.item_id) for v in stored])
        return {v.key: truth[(v.item_type, v.item_id)] for v in stored}

    async def after_retraction(self, removed: VoteRow) -> None:
        """Takes a committed retraction out of the cached counts (never fails:
        the retraction is durable already; reconciliation repairs a miss)."""
        key = _key(removed.item_type, removed.item_id)
        try:
            if not await self._increment(keys=[key], args=[direction_field(removed.direction), -1, COUNTS_TTL_S]):
                await self._seed_counts(removed.item_type, removed.item_id)
        except RedisError:
            self._stale_keys.add(key)
        except Exception:
            log.exception("could not update cached counts after a retraction; reconciliation will")

    async def counts(self, item_type: str, item_id: str) -> Counts:
        try:
            await self._drop_stale_keys()
            cached = await self._hot.hmget(_key(item_type, item_id), "up", "down")
            if cached[0] is not None and cached[1] is not None:
                return Counts(int(cached[0]), int(cached[1]))
            return await self._seed_counts(item_type, item_id)
        except RedisError:
            return (await self.table.counts_many([(item_type, item_id)]))[(item_type, item_id)]

    async def _drop_stale_keys(self) -> None:
        if self._stale_keys:
            keys = list(self._stale_keys)
            await self._hot.delete(*keys)  # fail fast while Redis is away
            self._stale_keys.difference_update(keys)

    async def _seed_counts(self, item_type: str, item_id: str) -> Counts:
        counts = (await self.table.counts_many([(item_type, item_id)]))[(item_type, item_id)]
        key = _key(item_type, item_id)
        seeded = await self._seed(keys=[key], args=[counts.up, counts.down, COUNTS_TTL_S])
        # A vote committed after the count above, whose own update found no
        # key to bump, is missing from the seeded value: check it again soon.
        self._mark_for_recheck(key)
        return Counts(int(seeded[0]), int(seeded[1]))

    # -- reconciliation ----------------------------------------------------------

    async def reconcile(self, page_size: int = 500) -> int:
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
            self._sweep_cursor, keys = await self.redis.scan(self._sweep_cursor, match=_key("*", "*"), count=page_size)
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
        truth = await self.table.counts_for(items)
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
