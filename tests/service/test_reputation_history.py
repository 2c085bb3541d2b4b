"""Reputation on constructed histories: the reputation domain over its real
stores (PostgreSQL and Redis), with an injected clock; no server runs."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import create_async_engine

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from devstack.stack import Stack
from services.common.auth import hash_api_key
from services.common.config import to_sqlalchemy_url
from services.common.pubsub import AUTH_CHANNEL
from services.common.weights import CHART_WEIGHTS_KEY, WEIGHTS_KEY
from services.reputation.agents import Agents
from services.reputation.standing import GraduationRule, StandingPolicy
from services.reputation.store import AgentStore, Announcements, Standings, VoteProjection, VoteWeights

pytestmark = pytest.mark.service

_event_ids = itertools.count(10**12 + uuid.uuid4().int % 10**9)
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POLICY = StandingPolicy(0.25, GraduationRule(min_age_days=7, min_votes=20, min_active_days=3, flag_cooldown_days=7))


class History:
    """Drives the reputation domain directly with events at chosen times."""

    def __init__(self, agents: Agents, records: AgentStore, projection: VoteProjection) -> None:
        self.agents, self.records, self.projection = agents, records, projection
        self.now = T0
        self.prefix = uuid.uuid4().hex[:6]

    def name(self, short: str) -> str:
        return f"{self.prefix}-{short}"

    async def register(self, *shorts: str) -> None:
        for short in shorts:
            await self.records.create_agent(self.name(short), short, hash_api_key(uuid.uuid4().hex))

    async def events(self, *specs: tuple[str, str, str, int]) -> None:
        """(type, agent, item, direction) each, applied as one batch at self.now."""
        batch = []
        for kind, agent, item, direction in specs:
            event = VoteEvent(
                event_id=next(_event_ids),
                type=kind,
                agent_id=self.name(agent),
                item_type="song",
                item_id=self.name(item),
                direction=direction,
            )
            event.voted_at.FromDatetime(self.now)
            event.occurred_at.FromDatetime(self.now)
            batch.append(event)
        self.agents.clock = lambda: self.now
        await self.agents.apply_vote_events(batch)

    async def score(self, short: str) -> int:
        return (await self.records.get_agent(self.name(short))).reputation_score

    async def standing(self, short: str) -> tuple[str, float]:
        return self.agents.standing(await self.records.get_agent(self.name(short)))


def run_history(stack: Stack, body: Callable[[History, Redis], Awaitable[None]]) -> None:
    async def main() -> None:
        engine = create_async_engine(to_sqlalchemy_url(stack.database_url or ""))
        redis = Redis.from_url(stack.redis_url or "", decode_responses=True)
        records, projection = AgentStore(engine), VoteProjection(engine)
        agents = Agents(
            records, projection, Standings(engine), Announcements(engine, redis), VoteWeights(redis), POLICY
        )
        try:
            await body(History(agents, records, projection), redis)
        finally:
            await redis.aclose()
            await engine.dispose()

    asyncio.run(main())


def test_votes_agreements_and_flips_by_other_agents(backing: Stack) -> None:
    async def body(h: History, redis: Redis) -> None:
        await h.register("a", "b", "c")
        await h.events(("vote", "a", "x", 1))
        assert await h.score("a") == 2  # one vote, agreeing with the item's +1
        await h.events(("vote", "b", "x", -1), ("vote", "c", "x", -1))
        # x is now -1: a no longer agrees; b and c do.
        assert (await h.score("a"), await h.score("b"), await h.score("c")) == (1, 2, 2)
        await h.events(("retract", "b", "x", -1))
        # x is 0: nobody agrees; b's retracted vote no longer counts.
        assert (await h.score("a"), await h.score("b"), await h.score("c")) == (1, 0, 1)
        # On probation: 0.25 x the reputation factor
        assert float(await redis.hget(WEIGHTS_KEY, h.name("a")) or "nan") == pytest.approx(0.25 * 1.004)

    run_history(backing, body)


def test_time_bonus_uses_whole_days_since_the_first_vote(backing: Stack) -> None:
    async def body(h: History, redis: Redis) -> None:
        await h.register("a")
        await h.events(("vote", "a", "x", 1))
        h.now = T0 + timedelta(days=35, hours=23)
        await h.events(("vote", "a", "y", -1))
        # 2 votes + 2 agreements + int(0.1 * 35) = 7
        assert await h.score("a") == 7
        h.now = T0 + timedelta(days=2000)
        # Only this agent: a full pass at a far-future clock would age everyone.
        await h.projection.recompute_agents([h.name("a")], h.now)
        assert await h.score("a") == 4 + 100

    run_history(backing, body)


def test_reputation_is_capped_at_1000(backing: Stack) -> None:
    async def body(h: History, redis: Redis) -> None:
        await h.register("a")
        await h.events(*[("vote", "a", f"item{n}", 1) for n in range(600)])
        assert await h.score("a") == 1000

    run_history(backing, body)


def test_flagged_agents_earn_nothing(backing: Stack) -> None:
    async def body(h: History, redis: Redis) -> None:
        await h.register("a", "b")
        await h.events(("vote", "a", "x", 1))
        assert await h.score("a") == 2
        await h.agents.flag(h.name("a"), "more than 10 votes within 10 seconds")
        assert float(await redis.hget(WEIGHTS_KEY, h.name("a")) or "nan") == 0.0
        assert float(await redis.hget(CHART_WEIGHTS_KEY, h.name("a")) or "nan") == 0.0
        await h.events(("vote", "a", "y", 1), ("vote", "a", "z", 1))
        assert await h.score("a") == 2  # frozen while flagged
        # Cleared: the votes cast while flagged still never earn.
        from services.common.auth import ADMIN

        await h.agents.update(ADMIN, h.name("a"), tier=None, flagged=False)
        assert await h.score("a") == 2
        assert float(await redis.hget(WEIGHTS_KEY, h.name("a")) or "nan") == pytest.approx(0.25 * 1.008)
        assert float(await redis.hget(CHART_WEIGHTS_KEY, h.name("a")) or "nan") == 0.25

    run_history(backing, body)


def test_the_full_recompute_agrees_with_the_incremental_path(backing: Stack) -> None:
    async def body(h: History, redis: Redis) -> None:
        await h.register("a", "b", "c")
        await h.events(("vote", "a", "x", 1), ("vote", "b", "x", 1), ("vote", "c", "y", -1))
        await h.events(("vote", "c", "x", -1), ("retract", "a", "x", 1), ("vote", "a", "y", 1))
        before = [await h.score(s) for s in "abc"]
        await h.agents.recompute_all()
        assert [await h.score(s) for s in "abc"] == before

    run_history(backing, body)


def test_the_pass_trusts_agents_active_on_three_utc_days_and_announces_them(backing: Stack) -> None:
    async def body(h: History, redis: Redis) -> None:
        # created_at is the database's clock: the history is built around the real now.
        base = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
        await h.register("steady", "burst", "flagged")
        for day in range(3):
            h.now = base + timedelta(days=day)
            await h.events(*[("vote", "steady", f"s{day}-{n}", 1) for n in range(7)])
            await h.events(*[("vote", "flagged", f"f{day}-{n}", 1) for n in range(7)])
        h.now = base
        await h.events(*[("vote", "burst", f"b{n}", 1) for n in range(40)])
        await h.agents.flag(h.name("flagged"), "coordinated voting: group g-1")

        async with redis.pubsub() as announcements:
            await announcements.subscribe(AUTH_CHANNEL)
            assert (await announcements.get_message(timeout=2) or {}).get("type") == "subscribe"
            h.now = base + timedelta(days=6)  # not old enough yet
            await h.agents.recompute_all()
            assert await h.standing("steady") == ("probation", 0.25)
            h.now = base + timedelta(days=8)
            await h.agents.recompute_all()
            heard = set()
            while (message := await announcements.get_message(ignore_subscribe_messages=True, timeout=0.5)) is not None:
                heard.add(message["data"])

        assert await h.standing("steady") == ("trusted", 1.0)
        assert await h.standing("burst") == ("probation", 0.25)  # 40 votes, one day
        assert await h.standing("flagged") == ("flagged", 0.0)
        assert f"agent:{h.name('steady')}" in heard
        assert f"agent:{h.name('burst')}" not in heard
        weights = {
            short: (
                float(await redis.hget(CHART_WEIGHTS_KEY, h.name(short)) or "nan"),
                float(await redis.hget(WEIGHTS_KEY, h.name(short)) or "nan"),
            )
            for short in ("steady", "burst", "flagged")
        }
        steady_factor = 1 + 4 * await h.score("steady") / 1000
        assert weights["steady"] == (1.0, pytest.approx(steady_factor))
        assert weights["burst"][0] == 0.25 and weights["flagged"] == (0.0, 0.0)

    run_history(backing, body)
