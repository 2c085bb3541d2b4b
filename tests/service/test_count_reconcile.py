"""The consumers' projections reconciled with the votes table, through the
vote service's internal VoteLedgerService: the ranking service's item counts
(services/ranking/store/reconcile.py) and the reputation service's projected
votes (services/reputation/store/reconcile.py). Drift is repaired within a
sweep, a pass checks at most a page, what has events still in flight is
left alone, and the methods are for the services only."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from aimusicstore.ranking.v1 import catalog_pb2, catalog_service_pb2, catalog_service_pb2_grpc
from aimusicstore.reputation.v1 import agent_pb2, agent_service_pb2, agent_service_pb2_grpc
from aimusicstore.vote.v1 import vote_ledger_service_pb2, vote_ledger_service_pb2_grpc
from devstack.stack import Stack
from services.common.channels import peer_channel
from services.common.config import to_sqlalchemy_url
from services.common.credentials import SERVICE_CREDENTIAL_KEY, service_credential
from services.common.interceptors import DeadlineClientInterceptor
from services.ranking.store.item_cache import ItemCache
from services.ranking.store.reconcile import COUNTS_REPAIRED, CountReconciler
from services.reputation.store.projection import VoteProjection
from services.reputation.store.reconcile import VOTES_REPAIRED, AgentVoteReconciler
from tests.backing import ADMIN_KEY
from tests.service.conftest import ADMIN, channel, in_process, target_env, unique

pytestmark = pytest.mark.service

# The reputation service's own reconciliation stays out of the way of the passes run here.
QUIET = {"AIMUSICSTORE_VOTE_RECONCILE_INTERVAL_S": "3600"}


@dataclass
class World:
    catalog: Any
    agents: Any
    ledger: Any
    engine: AsyncEngine
    redis: Redis
    vote_target: str


@pytest.fixture(scope="module")
async def world(backing: Stack) -> AsyncIterator[World]:
    async with (
        in_process(backing, "reputation", **QUIET) as reputation,
        in_process(backing, "ranking", **target_env(reputation=reputation)) as ranking,
        in_process(backing, "vote", **target_env(reputation=reputation, ranking=ranking)) as vote,
        channel(ranking) as ranking_channel,
        channel(reputation) as reputation_channel,
    ):
        credential = (SERVICE_CREDENTIAL_KEY, service_credential(ADMIN_KEY))
        target = f"127.0.0.1:{vote.port}"
        async with peer_channel(target, interceptors=[DeadlineClientInterceptor(5, credential)]) as vote_channel:
            engine = create_async_engine(to_sqlalchemy_url(backing.database_url or ""))
            redis = Redis.from_url(backing.redis_url or "", decode_responses=True)
            yield World(
                catalog_service_pb2_grpc.CatalogServiceStub(ranking_channel),
                agent_service_pb2_grpc.AgentServiceStub(reputation_channel),
                vote_ledger_service_pb2_grpc.VoteLedgerServiceStub(vote_channel),
                engine,
                redis,
                target,
            )
            await redis.aclose()
            await engine.dispose()


async def new_song(world: World) -> str:
    song = catalog_pb2.Song(id=unique("drift"), title="Drift", artist="Model D", platform="suno_ai")
    await world.catalog.CreateSong(catalog_service_pb2.CreateSongRequest(song=song), metadata=ADMIN, timeout=5)
    return song.id


async def execute(engine: AsyncEngine, statement: str, **params: Any) -> list[tuple[Any, ...]]:
    async with engine.begin() as conn:
        result = await conn.execute(text(statement), params)
        return [tuple(row) for row in result] if result.returns_rows else []


async def song_counts(world: World, song: str) -> tuple[int, int]:
    reply = await world.catalog.GetSong(catalog_service_pb2.GetSongRequest(song_id=song), timeout=5)
    return reply.up_votes, reply.down_votes


def reconciler(world: World, page_size: int) -> CountReconciler:
    return CountReconciler(world.engine, world.ledger, ItemCache(world.redis), page_size)


async def sweep_to(rec: CountReconciler, song: str, passes_max: int = 10_000) -> list[int]:
    """Runs passes until one has checked `song` (the sweep is in id order);
    returns how many items each pass checked."""
    checked = []
    for _ in range(passes_max):
        before = (rec.item_type, rec.after)
        result = await rec.reconcile()
        checked.append(result.checked)
        if before[0] == "song" and (before[1] < song and (rec.after >= song or rec.item_type != "song")):
            return checked
    raise AssertionError("the sweep never reached the song")


async def test_corrupted_counts_are_repaired_within_a_sweep_in_bounded_passes(world: World) -> None:
    song = await new_song(world)
    await song_counts(world, song)  # cached in Redis, as a read leaves it
    await execute(world.engine, "UPDATE ranking.songs SET up_votes = 7, down_votes = 2 WHERE id = :id", id=song)
    repaired_before = COUNTS_REPAIRED.labels("song")._value.get()

    rec = reconciler(world, page_size=3)
    rec.after = song[:-1]  # start the sweep just before it (the table holds other tests' songs)
    checked = await sweep_to(rec, song)
    assert max(checked) <= 3, "a pass checks at most a page of items"
    assert await execute(world.engine, "SELECT up_votes, down_votes FROM ranking.songs WHERE id = :id", id=song) == [
        (0, 0)
    ]
    assert await song_counts(world, song) == (0, 0), "the cached copy follows"
    assert COUNTS_REPAIRED.labels("song")._value.get() >= repaired_before + 1


async def test_counts_with_events_in_flight_are_left_alone(world: World) -> None:
    song = await new_song(world)
    await execute(world.engine, "UPDATE ranking.songs SET up_votes = 1 WHERE id = :id", id=song)
    # An event of the song still in the outbox (relayed a moment ago, not yet
    # forgotten): its consumers may not have applied it.
    payload = json.dumps({"type": "vote", "agent_id": "nobody", "item_type": "song", "item_id": song, "direction": 1})
    (outbox_id,) = (
        await execute(
            world.engine,
            "INSERT INTO vote.outbox (payload, relayed_at, stream_ms, stream_seq)"
            " VALUES (CAST(:p AS jsonb), now(), 1, 0) RETURNING id",
            p=payload,
        )
    )[0]
    try:
        reply = await world.ledger.CountItemVotes(
            vote_ledger_service_pb2.CountItemVotesRequest(
                items=[vote_ledger_service_pb2.ItemRef(item_type="song", item_id=song)]
            )
        )
        assert [(c.item_id, c.up_votes, c.settled) for c in reply.counts] == [(song, 0, False)]
        rec = reconciler(world, page_size=50)
        rec.after = song[:-1]
        await sweep_to(rec, song)
        assert await song_counts(world, song) == (1, 0)
    finally:
        await execute(world.engine, "DELETE FROM vote.outbox WHERE id = :id", id=outbox_id)
    rec = reconciler(world, page_size=50)
    rec.after = song[:-1]
    await sweep_to(rec, song)
    assert await song_counts(world, song) == (0, 0), "repaired once settled"


async def test_the_ledger_is_for_the_services_only_and_bounded(world: World) -> None:
    async with grpc.aio.insecure_channel(world.vote_target) as bare:
        stub = vote_ledger_service_pb2_grpc.VoteLedgerServiceStub(bare)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CountItemVotes(vote_ledger_service_pb2.CountItemVotesRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    too_many = [vote_ledger_service_pb2.ItemRef(item_type="song", item_id=f"s{n}") for n in range(1001)]
    with pytest.raises(grpc.aio.AioRpcError) as bounded:
        await world.ledger.CountItemVotes(vote_ledger_service_pb2.CountItemVotesRequest(items=too_many))
    assert bounded.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_ghost_and_a_lost_vote_in_the_reputation_projection_are_repaired(world: World) -> None:
    agent = unique("drifter")
    await world.agents.RegisterAgent(agent_service_pb2.RegisterAgentRequest(agent=agent_pb2.Agent(id=agent)), timeout=5)
    ghost_song, lost_song = await new_song(world), await new_song(world)
    # A ghost: projected, and counted, with no vote in the table.
    await execute(
        world.engine,
        "INSERT INTO reputation.votes (agent_id, item_type, item_id, direction, cast_at, earns, event_id)"
        " VALUES (:a, 'song', :s, 1, now(), true, 5)",
        a=agent,
        s=ghost_song,
    )
    await execute(world.engine, "UPDATE reputation.agents SET vote_count = 1 WHERE id = :a", a=agent)
    await execute(
        world.engine,
        "INSERT INTO reputation.item_scores (item_type, item_id, score) VALUES ('song', :s, 1)",
        s=ghost_song,
    )
    # A vote whose event was lost for good: in the table, never projected.
    await execute(
        world.engine,
        "INSERT INTO vote.votes (agent_id, item_type, item_id, direction) VALUES (:a, 'song', :s, -1)",
        a=agent,
        s=lost_song,
    )
    ghosts_before = VOTES_REPAIRED.labels("ghost")._value.get()

    # A page of one: the agent alone (the tables hold other tests' agents and voters).
    rec = AgentVoteReconciler(world.engine, world.ledger, VoteProjection(world.engine), page_size=1)
    rec.after = agent[:-1]
    repaired, _ = await rec.reconcile(datetime.now(UTC))
    assert repaired == 2
    projected = "SELECT item_id, direction FROM reputation.votes WHERE agent_id = :a"
    assert await execute(world.engine, projected, a=agent) == [(lost_song, -1)]
    reply = await world.agents.GetAgent(agent_service_pb2.GetAgentRequest(agent_id=agent), timeout=5)
    assert reply.vote_count == 1
    scores = "SELECT item_id, score FROM reputation.item_scores WHERE item_id IN (:g, :l) ORDER BY score"
    assert await execute(world.engine, scores, g=ghost_song, l=lost_song) == [(lost_song, -1), (ghost_song, 0)]
    assert VOTES_REPAIRED.labels("ghost")._value.get() == ghosts_before + 1

    # Repaired: the next look finds nothing to do; a pass checked at most a page.
    rec.after = agent[:-1]
    assert (await rec.reconcile(datetime.now(UTC)))[0] == 0
    page = "SELECT count(*) FROM reputation.agents WHERE id > :a"
    if (await execute(world.engine, page, a=agent[:-1]))[0][0] > 1:
        assert rec.after == agent  # it stopped after a page of 1
    # The ranking counts of the lost vote's song follow too.
    rec_items = reconciler(world, page_size=3)
    rec_items.after = lost_song[:-1]
    await sweep_to(rec_items, lost_song)
    assert await song_counts(world, lost_song) == (0, 1)


async def in_table(world: World, agent: str, song: str, direction: int) -> None:
    """A vote stored by the vote service (its event is not published: lost)."""
    await execute(
        world.engine,
        "INSERT INTO vote.votes (agent_id, item_type, item_id, direction) VALUES (:a, 'song', :s, :d)",
        a=agent,
        s=song,
        d=direction,
    )


async def test_the_ledger_lists_the_agents_with_votes_in_pages(world: World) -> None:
    prefix = unique("voters")
    first, second, third = f"{prefix}-a", f"{prefix}-b", f"{prefix}-c"
    song, other = await new_song(world), await new_song(world)
    for agent in (first, second, third):
        await in_table(world, agent, song, 1)
    await in_table(world, second, other, -1)  # two votes: listed once

    def page(after: str, size: int) -> Any:
        return world.ledger.ListVoters(vote_ledger_service_pb2.ListVotersRequest(after_agent_id=after, page_size=size))

    assert list((await page(prefix, 2)).agent_ids) == [first, second]
    assert list((await page(second, 2)).agent_ids)[:1] == [third]
    async with grpc.aio.insecure_channel(world.vote_target) as bare:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await vote_ledger_service_pb2_grpc.VoteLedgerServiceStub(bare).ListVoters(
                vote_ledger_service_pb2.ListVotersRequest(page_size=1), timeout=5
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    for size in (0, 1001):
        with pytest.raises(grpc.aio.AioRpcError) as bounded:
            await page("", size)
        assert bounded.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def sweep_past(rec: AgentVoteReconciler, agent: str) -> int:
    """Runs passes from just before `agent` until one has checked it; returns
    the repairs made."""
    rec.after = agent[:-1]
    repaired = 0
    for _ in range(1000):
        repaired += (await rec.reconcile(datetime.now(UTC)))[0]
        if not rec.after or rec.after >= agent:
            return repaired
    raise AssertionError("the sweep never reached the agent")


async def test_agents_the_reputation_projection_holds_nothing_of_are_repaired(world: World) -> None:
    """Every event of theirs was lost: a registered agent with no projected
    vote, and one the agents table lacks too (the sweep reaches it through
    the vote service's list of voters)."""
    registered, unknown = unique("unseen-registered"), unique("unseen-unknown")
    await world.agents.RegisterAgent(
        agent_service_pb2.RegisterAgentRequest(agent=agent_pb2.Agent(id=registered)), timeout=5
    )
    up, down = await new_song(world), await new_song(world)
    for agent in (registered, unknown):
        await in_table(world, agent, up, 1)
        await in_table(world, agent, down, -1)
    missing_before = VOTES_REPAIRED.labels("missing")._value.get()

    # A page of one: each pass checks just one agent (the tables hold other tests' agents and voters).
    rec = AgentVoteReconciler(world.engine, world.ledger, VoteProjection(world.engine), page_size=1)
    assert await sweep_past(rec, registered) == 2
    assert await sweep_past(rec, unknown) == 2
    projected = "SELECT item_id, direction FROM reputation.votes WHERE agent_id = :a ORDER BY direction"
    for agent in (registered, unknown):
        assert await execute(world.engine, projected, a=agent) == [(down, -1), (up, 1)]
    reply = await world.agents.GetAgent(agent_service_pb2.GetAgentRequest(agent_id=registered), timeout=5)
    assert reply.vote_count == 2
    scores = "SELECT item_id, score FROM reputation.item_scores WHERE item_id IN (:u, :d) ORDER BY score"
    assert await execute(world.engine, scores, u=up, d=down) == [(down, -2), (up, 2)]
    assert VOTES_REPAIRED.labels("missing")._value.get() == missing_before + 4
    assert await sweep_past(rec, unknown) == 0, "repaired once"
