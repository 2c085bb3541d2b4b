"""The vote weights the ranking service reads: two Redis hashes
(services/common/weights.py), the chart weight and the trending weight of
each agent."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.common.weights import CHART_WEIGHTS_KEY, WEIGHTS_KEY

log = logging.getLogger("reputation.store")

# The full pass publishes every agent's weights: this many fields per HSET
# (and per HSCAN step when it reads them back), so that no single command
# holds Redis, which the vote path shares, for long.
_FIELDS_PER_WRITE = 5000


class VoteWeights:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def publish_weights(self, chart: Mapping[str, float], trending: Mapping[str, float]) -> None:
        """Writes chart and trending weights for the ranking service (best
        effort: the periodic pass republishes them all)."""
        try:
            for key, weights in ((CHART_WEIGHTS_KEY, chart), (WEIGHTS_KEY, trending)):
                items = list(weights.items())
                for start in range(0, len(items), _FIELDS_PER_WRITE):
                    await self.redis.hset(key, mapping=dict(items[start : start + _FIELDS_PER_WRITE]))
        except RedisError:
            log.warning(
                "could not publish %d chart and %d trending weights; the next full pass will", len(chart), len(trending)
            )

    async def published_chart_weights(self) -> dict[str, float] | None:
        """The chart weights as published; None when unknown (Redis away, or
        the hash is gone, as after a flush)."""
        try:
            published = {
                agent: float(weight)
                async for agent, weight in self.redis.hscan_iter(CHART_WEIGHTS_KEY, count=_FIELDS_PER_WRITE)
            }
        except RedisError:
            log.warning("could not read the published chart weights")
            return None
        return published or None
