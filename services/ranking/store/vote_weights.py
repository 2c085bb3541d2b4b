"""The voters' weights as the reputation service publishes them (two Redis
hashes, services/common/weights.py), read for each batch of vote events and
for each re-weigh."""

from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.common.weights import CHART_WEIGHTS_KEY, WEIGHTS_KEY
from services.ranking import vote_batch
from services.ranking.vote_batch import AgentWeights

log = logging.getLogger("ranking.store")


class VoteWeights:
    def __init__(self, redis: Redis, probation_weight: float) -> None:
        self.redis = redis
        # What an agent the reputation service has not published counts.
        self.probation_weight = probation_weight

    async def for_batch(self, agent_ids: set[str]) -> dict[str, AgentWeights]:
        """The weights a batch's votes are applied with. Redis away: raised,
        and the batch is retried whole (as when PostgreSQL is away) rather
        than a flagged agent's vote being counted at a guessed weight for
        good; any other Redis error counts the batch's voters on probation."""
        try:
            return await self.of(agent_ids)
        except (RedisConnectionError, RedisTimeoutError):
            raise
        except RedisError:
            log.warning("could not read the weights of %d agents; counting them on probation", len(agent_ids))
            return {a: vote_batch.agent_weights(None, None, self.probation_weight) for a in agent_ids}

    async def of(self, agent_ids: set[str]) -> dict[str, AgentWeights]:
        """Both weights of each agent, in one round trip; any Redis error is raised."""
        if not agent_ids:
            return {}
        ordered = sorted(agent_ids)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(WEIGHTS_KEY, ordered)
        pipe.hmget(CHART_WEIGHTS_KEY, ordered)
        trending, chart = await pipe.execute()
        return {
            agent: vote_batch.agent_weights(t, c, self.probation_weight)
            for agent, t, c in zip(ordered, trending, chart, strict=True)
        }

    async def published_chart(self, agent_ids: set[str]) -> dict[str, float]:
        """The chart weight published for each of these agents that has one.
        An agent with none is left out rather than taken to be on probation:
        it is one never published (on probation, as its votes were counted),
        or the hash was lost (a Redis flush, until the reputation service's
        next pass), when nothing is known of what it weighs."""
        ordered = sorted(agent_ids)
        chart = await self.redis.hmget(CHART_WEIGHTS_KEY, ordered)
        return {agent: float(c) for agent, c in zip(ordered, chart, strict=True) if c is not None}
