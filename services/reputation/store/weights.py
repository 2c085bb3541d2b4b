"""The trending weights the ranking service reads (a Redis hash, services/common/weights.py)."""

from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.common.weights import WEIGHTS_KEY

log = logging.getLogger("reputation.store")

# The full pass publishes every agent's weight: this many fields per HSET.
_FIELDS_PER_WRITE = 5000


class TrendingWeights:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def publish_weights(self, weights: dict[str, float]) -> None:
        """Writes trending weights for the ranking service (best effort: the
        periodic pass republishes them all)."""
        if not weights:
            return
        try:
            items = list(weights.items())
            for start in range(0, len(items), _FIELDS_PER_WRITE):
                await self.redis.hset(WEIGHTS_KEY, mapping=dict(items[start : start + _FIELDS_PER_WRITE]))
        except RedisError:
            log.warning("could not publish %d trending weights; the next full pass will", len(weights))
