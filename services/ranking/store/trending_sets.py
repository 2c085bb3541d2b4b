"""The trending sorted sets in Redis (one per item type and one per filter
value, see services/ranking/trending.py), their epoch, and their rebuild
from the vote projection."""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ranking import trending
from services.ranking.trending import TrendClock

log = logging.getLogger("ranking.store")

# The time origin of the stored trending scores (see trending.py).
TRENDING_EPOCH_KEY = "ranking:trending-epoch"

_LIVE_VOTES_SINCE = text(
    """
    SELECT v.item_type, v.item_id, v.direction, v.voted_at, v.weight,
           s.genre, s.platform, t.category
    FROM ranking.votes v
    LEFT JOIN ranking.songs s ON v.item_type = 'song' AND s.id = v.item_id
    LEFT JOIN ranking.tools t ON v.item_type = 'tool' AND t.id = v.item_id
    WHERE v.voted_at >= :since
    """
)


def _scored(members: Any) -> list[tuple[str, float]]:
    """A ZRANGE ... WITHSCORES reply as (member, score) pairs."""
    return [(str(member), float(score)) for member, score in members]


class TrendingSets:
    def __init__(self, engine: AsyncEngine, redis: Redis, redis_at_most_once: Redis | None = None) -> None:
        self.reads = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.redis = redis
        # Trending moves by ZINCRBY, which must not run twice (redis_client.py).
        self._once = redis_at_most_once or redis

    async def move(
        self, deltas: dict[tuple[str, str], float], attributes: dict[tuple[str, str], dict[str, str]]
    ) -> None:
        """Adds each item's (scaled) change to every set it is listed in."""
        if not deltas:
            return
        try:
            pipe = self._once.pipeline(transaction=False)
            # A zero change still lists the item (a weightless vote is a vote).
            for (item_type, item_id), delta in sorted(deltas.items()):
                for key in trending.keys_for(item_type, attributes.get((item_type, item_id), {})):
                    pipe.zincrby(key, delta, item_id)
            await pipe.execute()
        except RedisError:
            log.warning("could not move trending for %d items; the next rebuild will", len(deltas))

    async def rebuild(self, trend: TrendClock, horizon_half_lives: float = 20.0) -> int:
        """Recomputes every trending set from the projection (drift repair and
        epoch moves). Votes older than the horizon weigh < 2**-20 and are left out."""
        since = trend.now() - timedelta(seconds=trend.half_life_s * horizon_half_lives)
        sets: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        async with self.reads.connect() as conn:
            for row in await conn.execute(_LIVE_VOTES_SINCE, {"since": since}):
                attributes = {"genre": row.genre, "platform": row.platform, "category": row.category}
                value = trend.scaled(row.weight, row.direction, row.voted_at)
                for key in trending.keys_for(row.item_type, attributes):
                    sets[key][row.item_id] += value
        stale = [key async for key in self.redis.scan_iter(match="trending:*", count=1000) if key not in sets]
        pipe = self.redis.pipeline(transaction=True)
        for key, members in sets.items():
            temporary = f"{key}:rebuild"
            pipe.delete(temporary)
            for start in range(0, len(members), 5000):
                chunk = dict(list(members.items())[start : start + 5000])
                pipe.zadd(temporary, chunk)
            pipe.rename(temporary, key)
        if stale:
            pipe.delete(*stale)
        await pipe.execute()
        return len(sets)

    async def top(self, key: str, limit: int) -> list[tuple[str, float]]:
        return _scored(await self.redis.zrevrange(key, 0, limit - 1, withscores=True))

    async def top_in_all(self, keys: list[str], limit: int) -> list[tuple[str, float]]:
        """Top members present in every key (genre and platform together),
        scored by the first."""
        temporary = f"trending:tmp:{uuid.uuid4().hex}"
        pipe = self.redis.pipeline(transaction=True)
        pipe.zinterstore(temporary, {keys[0]: 1.0, **{k: 0.0 for k in keys[1:]}})
        pipe.zrevrange(temporary, 0, limit - 1, withscores=True)
        pipe.delete(temporary)
        _, members, _ = await pipe.execute()
        return _scored(members)

    async def scores(self, item_type: str, ids: list[str]) -> dict[str, float]:
        """Stored scores in the item type's whole set (none when Redis fails)."""
        if not ids:
            return {}
        try:
            scores = await self.redis.zmscore(f"trending:{item_type}", ids)
        except RedisError:
            return {}
        return {i: s for i, s in zip(ids, scores, strict=True) if s is not None}

    async def epoch(self) -> datetime | None:
        raw = await self.redis.get(TRENDING_EPOCH_KEY)
        return datetime.fromisoformat(str(raw)) if raw else None

    async def set_epoch(self, epoch: datetime) -> None:
        await self.redis.set(TRENDING_EPOCH_KEY, epoch.isoformat())
