"""The Redis copy of catalog items, for reads.

Field "row" holds the item's fixed fields as JSON, the count fields hold
absolute values written by the event consumer after each commit (a refill
from PostgreSQL never overwrites them: HSETNX), so the copy cannot go
backwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from datetime import datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.typing import EncodableT

from services.ranking.items import Item, ItemT

log = logging.getLogger("ranking.store")

ITEM_KEY = "ranking:item:{item_type}:{item_id}"
ITEM_TTL_S = 86_400
COUNT_FIELDS = {
    "song": ("up_votes", "down_votes"),
    "tool": ("up_votes", "down_votes", "rating_sum", "rating_count", "review_count"),
}
_FILL_IF_ABSENT = """
redis.call('HSETNX', KEYS[1], 'row', ARGV[2])
for i = 3, #ARGV, 2 do redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""

# Absolute counts per item, as the event consumer writes them after a commit.
NewCounts = dict[tuple[str, str], dict[str, int]]


def item_key(item_type: str, item_id: str) -> str:
    return ITEM_KEY.format(item_type=item_type, item_id=item_id)


class ItemCache:
    def __init__(self, redis: Redis, redis_hot_path: Redis | None = None) -> None:
        self.redis = redis
        # Item reads are on the vote path (the vote service asks whether an
        # item exists): through the client with a short timeout and the
        # circuit breaker, so a hung Redis sends them to PostgreSQL at once
        # instead of holding them past the caller's deadline.
        self._hot = redis_hot_path or redis
        self._fill = self._hot.register_script(_FILL_IF_ABSENT)

    async def read(self, kind: type[ItemT], item_id: str) -> ItemT | None:
        """The item from its copy; None when there is no complete copy (or no Redis)."""
        try:
            cached = await self._hot.hgetall(item_key(kind.item_type, item_id))
        except RedisError:
            return None
        count_fields = COUNT_FIELDS[kind.item_type]
        if "row" not in cached or not all(field in cached for field in count_fields):
            return None
        values = json.loads(cached["row"])
        values["created_at"] = datetime.fromisoformat(values["created_at"])
        for field in count_fields:
            values[field] = int(cached[field])
        values["score"] = values["up_votes"] - values["down_votes"]
        return kind(**values)

    async def fill(self, item: Item) -> None:
        """Copies an item read from PostgreSQL, keeping any counts already copied."""
        count_fields = COUNT_FIELDS[item.item_type]
        static = {
            field.name: getattr(item, field.name)
            for field in dataclasses.fields(item)
            if field.name not in count_fields and field.name != "score"
        }
        static["created_at"] = item.created_at.isoformat()
        args: list[Any] = [ITEM_TTL_S, json.dumps(static)]
        for field in count_fields:
            args += [field, getattr(item, field)]
        with contextlib.suppress(RedisError):  # reads fall back to PostgreSQL
            await self._fill(keys=[item_key(item.item_type, item.id)], args=args)

    async def copy_counts(self, counts: NewCounts) -> None:
        """Writes items' absolute counts to their Redis copies after a commit."""
        if not counts:
            return
        try:
            pipe = self.redis.pipeline(transaction=False)
            for (item_type, item_id), values in counts.items():
                key = item_key(item_type, item_id)
                fields: dict[EncodableT, EncodableT] = {name: value for name, value in values.items()}
                pipe.hset(key, mapping=fields)
                pipe.expire(key, ITEM_TTL_S)
            await pipe.execute()
        except RedisError:
            # A stale copy must not outlive this: drop them (reads refill from PostgreSQL).
            try:
                await self.redis.delete(*[item_key(t, i) for t, i in counts])
            except RedisError:
                log.warning("could not update the Redis copy of %d items' counts", len(counts))

    async def forget(self, item_type: str, item_id: str) -> None:
        await self.redis.delete(item_key(item_type, item_id))
