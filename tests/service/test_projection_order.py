"""Both consumers' projections are order-independent (services/common/vote_order.py):
the same vote history is put on the stream twice, once in order and once out
of order (a retraction before its vote, a re-vote before the retraction
before it, an old vote after a newer re-vote), each on its own items and
agents; the ranking service's projection, counts and tallies and
the reputation service's projection, vote counts, item scores and
reputations must come out the same, with no ghost row."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from aimusicstore.ranking.v1 import catalog_pb2, catalog_service_pb2, catalog_service_pb2_grpc
from aimusicstore.reputation.v1 import agent_pb2, agent_service_pb2, agent_service_pb2_grpc
from devstack.stack import Stack
from services.common import events
from services.common.config import to_sqlalchemy_url
from tests.service.conftest import ADMIN, channel, in_process, target_env, unique

pytestmark = pytest.mark.service

SCHEMAS = ("ranking", "reputation")
_id_blocks = itertools.count(10**16 + uuid.uuid4().int % 10**9 * 1000, 1000)
T = TypeVar("T")


async def eventually(read: Callable[[], Awaitable[T]], ok: Callable[[T], bool], timeout_s: float = 10) -> T:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = await read()
        if ok(value) or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
async def world(backing: Stack) -> AsyncIterator[tuple[Any, Any, Redis, AsyncEngine]]:
    async with (
        in_process(backing, "reputation") as reputation,
        in_process(backing, "ranking", **target_env(reputation=reputation)) as ranking,
        channel(ranking) as ranking_channel,
        channel(reputation) as reputation_channel,
    ):
        redis = Redis.from_url(backing.redis_url or "", decode_responses=True)
        engine = create_async_engine(to_sqlalchemy_url(backing.database_url or ""))
        yield (
            catalog_service_pb2_grpc.CatalogServiceStub(ranking_channel),
            agent_service_pb2_grpc.AgentServiceStub(reputation_channel),
            redis,
            engine,
        )
        await engine.dispose()
        await redis.aclose()


# One history per (agent, item), as the vote service would publish it: event
# number (an offset in the block of ids), kind, agent, item, direction,
# rating, review.
Step = tuple[int, str, str, str, int, int | None, bool]
HISTORY: list[Step] = [
    (1, "vote", "p", "song", 1, None, False),
    (2, "retract", "p", "song", 1, None, False),
    (3, "vote", "q", "song", 1, None, False),
    (4, "retract", "q", "song", 1, None, False),
    (5, "vote", "q", "song", -1, None, False),
    (6, "vote", "r", "tool", 1, 5, True),
    (7, "retract", "r", "tool", 1, 5, True),
    (8, "vote", "r", "tool", -1, 2, False),
    (9, "vote", "s", "song", 1, None, False),
    (10, "vote", "s", "tool", 1, 4, True),
]
# Out of order: p's retraction before its vote; q's re-vote before its
# retraction, and its first vote last; r's re-vote before the retraction.
OUT_OF_ORDER = [2, 9, 5, 4, 1, 3, 6, 8, 10, 7]


async def publish(redis: Redis, steps: list[Step], block: int, names: dict[str, str], voted_at: datetime) -> None:
    pipe = redis.pipeline(transaction=True)
    for n, kind, agent, item, direction, rating, review in steps:
        event: dict[str, Any] = {"event_id": block + n, "type": kind, "agent_id": names[agent],
                                 "item_type": item, "item_id": names[item], "direction": direction,
                                 "has_review": review, "voted_at": voted_at.isoformat(),
                                 "occurred_at": voted_at.isoformat()}  # fmt: skip
        if rating is not None:
            event["rating"] = rating
        pipe.xadd(events.VOTE_EVENTS_STREAM, {events.EVENT_FIELD: json.dumps(event)})
    await pipe.execute()


async def setup_names(catalog: Any, agents: Any) -> dict[str, str]:
    names = {agent: unique(f"order-{agent}") for agent in "pqrsz"}
    for agent_id in names.values():
        await agents.RegisterAgent(
            agent_service_pb2.RegisterAgentRequest(agent=agent_pb2.Agent(id=agent_id)), timeout=5
        )
    names["song"], names["tool"] = unique("order-song"), unique("order-tool")
    song = catalog_pb2.Song(id=names["song"], title="Order", artist="Model O", platform="suno_ai")
    await catalog.CreateSong(catalog_service_pb2.CreateSongRequest(song=song), metadata=ADMIN, timeout=5)
    tool = catalog_pb2.Tool(id=names["tool"], name="Order Tool")
    await catalog.CreateTool(catalog_service_pb2.CreateToolRequest(tool=tool), metadata=ADMIN, timeout=5)
    return names


async def rows(engine: AsyncEngine, query: str, **params: Any) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        return [tuple(row) for row in await conn.execute(text(query), params)]


async def state(engine: AsyncEngine, agents: Any, names: dict[str, str]) -> dict[str, Any]:
    """Everything both projections derive from the history, with the
    scenario's names replaced by their roles (so two runs compare). Not the
    trending weight of each projected vote: it follows the voter's
    reputation at the time it was applied, which moves with the timing."""
    role = {name: r for r, name in names.items()}
    song, tool = names["song"], names["tool"]
    voters = [names[a] for a in "pqrs"]
    ranking_votes = await rows(
        engine,
        "SELECT agent_id, item_type, direction, chart_weight, rating, has_review FROM ranking.votes"
        " WHERE item_id IN (:song, :tool) ORDER BY 1, 2",
        song=song,
        tool=tool,
    )
    reputation_votes = await rows(
        engine,
        "SELECT agent_id, item_type, direction, earns FROM reputation.votes"
        " WHERE agent_id = ANY(:voters) ORDER BY 1, 2",
        voters=voters,
    )
    return {
        "ranking.votes": [(role[a], *rest) for a, *rest in ranking_votes],
        "songs": await rows(engine, "SELECT up_votes, down_votes FROM ranking.songs WHERE id = :id", id=song),
        "tools": await rows(
            engine,
            "SELECT up_votes, down_votes, rating_sum, rating_count, review_count FROM ranking.tools WHERE id = :id",
            id=tool,
        ),
        "tallies": await rows(
            engine,
            "SELECT item_type, day, up_votes, down_votes, round(weighted_up::numeric, 6),"
            " round(weighted_down::numeric, 6) FROM ranking.daily_tallies WHERE item_id IN (:song, :tool) ORDER BY 1",
            song=song,
            tool=tool,
        ),
        "reputation.votes": [(role[a], *rest) for a, *rest in reputation_votes],
        "item_scores": await rows(
            engine,
            "SELECT item_type, score FROM reputation.item_scores WHERE item_id IN (:song, :tool) ORDER BY 1",
            song=song,
            tool=tool,
        ),
        "agents": [
            (role[a.id], a.vote_count, a.reputation_score)
            for a in [
                await agents.GetAgent(agent_service_pb2.GetAgentRequest(agent_id=names[r]), timeout=5) for r in "pqrs"
            ]
        ],
    }


async def applied(engine: AsyncEngine, names: dict[str, str]) -> bool:
    """Both consumers applied the history's last entry (a sentinel vote of z)."""
    found = await rows(
        engine,
        "SELECT (SELECT count(*) FROM ranking.votes WHERE agent_id = :z)"
        " + (SELECT count(*) FROM reputation.votes WHERE agent_id = :z)",
        z=names["z"],
    )
    return found[0][0] == 2


async def publish_one_by_one(
    world: tuple[Any, Any, Redis, AsyncEngine], steps: list[Step], block: int, names: dict[str, str]
) -> None:
    """Each event in a batch of its own: published once both consumers
    recorded the one before (a batch keeps only its newest event per agent
    and item, so events in one batch would not reach the projection's
    version check)."""
    _, _, redis, engine = world
    voted_at = datetime.now(UTC) - timedelta(minutes=1)
    for step in steps:
        await publish(redis, [step], block, names, voted_at)

        async def seen(step: Step = step) -> int:
            recorded = "SELECT count(*) FROM {}.processed_events WHERE event_id = :id"
            counts = [await rows(engine, recorded.format(schema), id=block + step[0]) for schema in SCHEMAS]
            return sum(found[0][0] for found in counts)

        assert await eventually(seen, lambda n: n == 2), f"event {step[0]} was not applied"


async def run(world: tuple[Any, Any, Redis, AsyncEngine], order: list[int]) -> dict[str, Any]:
    catalog, agents, _, engine = world
    names = await setup_names(catalog, agents)
    steps = {step[0]: step for step in HISTORY}
    sentinel: Step = (99, "vote", "z", "song", 1, None, False)
    await publish_one_by_one(world, [steps[n] for n in order] + [sentinel], next(_id_blocks), names)
    assert await applied(engine, names)
    return await state(engine, agents, names)


async def test_out_of_order_events_end_as_the_in_order_application(
    world: tuple[Any, Any, Redis, AsyncEngine],
) -> None:
    in_order = await run(world, [step[0] for step in HISTORY])
    # What the in-order application gives, spelled out: p retracted (no
    # row), q's down re-vote, r's down re-vote rated 2 without review, s up.
    assert [(r, t, d) for r, t, d, *_ in in_order["ranking.votes"]] == [
        ("q", "song", -1),
        ("r", "tool", -1),
        ("s", "song", 1),
        ("s", "tool", 1),
        ("z", "song", 1),  # the sentinel
    ]
    assert in_order["songs"] == [(2, 1)]  # s and the sentinel z up, q down
    assert in_order["tools"] == [(1, 1, 6, 2, 1)]
    assert [(r, t, d) for r, t, d, _ in in_order["reputation.votes"]] == [
        ("q", "song", -1),
        ("r", "tool", -1),
        ("s", "song", 1),
        ("s", "tool", 1),
    ]
    assert [(r, n) for r, n, _ in in_order["agents"]] == [("p", 0), ("q", 1), ("r", 1), ("s", 2)]

    out_of_order = await run(world, OUT_OF_ORDER)
    assert out_of_order == in_order


async def test_a_retraction_applied_before_its_vote_leaves_no_ghost_row(
    world: tuple[Any, Any, Redis, AsyncEngine],
) -> None:
    catalog, agents, _, engine = world
    names = await setup_names(catalog, agents)
    block = next(_id_blocks)
    retraction: Step = (2, "retract", "p", "song", 1, None, False)
    vote: Step = (1, "vote", "p", "song", 1, None, False)
    sentinel: Step = (3, "vote", "z", "song", 1, None, False)
    await publish_one_by_one(world, [retraction, vote, sentinel], block, names)
    assert await applied(engine, names)
    p = names["p"]
    assert await rows(engine, "SELECT 1 FROM ranking.votes WHERE agent_id = :p", p=p) == []
    assert await rows(engine, "SELECT 1 FROM reputation.votes WHERE agent_id = :p", p=p) == []
    assert await rows(engine, "SELECT up_votes FROM ranking.songs WHERE id = :id", id=names["song"]) == [(1,)]
    tombstones = "SELECT event_id FROM {}.vote_tombstones WHERE agent_id = :p"
    assert await rows(engine, tombstones.format("ranking"), p=p) == [(block + 2,)]
    assert await rows(engine, tombstones.format("reputation"), p=p) == [(block + 2,)]
    agent = await agents.GetAgent(agent_service_pb2.GetAgentRequest(agent_id=p), timeout=5)
    assert agent.vote_count == 0
