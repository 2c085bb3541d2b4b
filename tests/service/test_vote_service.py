"""The vote service over gRPC, run in-process with its real peers (the
ranking and reputation services, in-process too): what it stores, answers,
refuses, and the one event it publishes per vote or retraction."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from redis.asyncio import Redis

from aimusicstore.ranking.v1 import catalog_pb2, catalog_service_pb2, catalog_service_pb2_grpc
from aimusicstore.reputation.v1 import agent_pb2, agent_service_pb2, agent_service_pb2_grpc
from aimusicstore.vote.v1 import vote_service_pb2, vote_service_pb2_grpc
from devstack.stack import Stack
from services.common import events
from tests.service.conftest import ADMIN, channel, in_process, target_env, unique

pytestmark = pytest.mark.service

QUOTA_FREE = 2
BURST_MAX = 3


@dataclass
class Services:
    votes: vote_service_pb2_grpc.VoteServiceStub
    agents: agent_service_pb2_grpc.AgentServiceStub
    catalog: catalog_service_pb2_grpc.CatalogServiceStub
    redis: Redis

    async def agent(self, tier: str = "free") -> tuple[str, tuple[tuple[str, str], ...]]:
        agent_id = unique("voter")
        reply = await self.agents.RegisterAgent(
            agent_service_pb2.RegisterAgentRequest(agent=agent_pb2.Agent(id=agent_id)), timeout=5
        )
        if tier != "free":
            await self.agents.UpdateAgent(
                agent_service_pb2.UpdateAgentRequest(agent_id=agent_id, tier=tier), metadata=ADMIN, timeout=5
            )
        return agent_id, (("authorization", f"Bearer {reply.api_key}"),)

    async def songs(self, count: int) -> list[str]:
        ids = []
        for _ in range(count):
            song = catalog_pb2.Song(id=unique("song"), title="Glass Tide", artist="Model Y", platform="udio")
            await self.catalog.CreateSong(catalog_service_pb2.CreateSongRequest(song=song), metadata=ADMIN, timeout=5)
            ids.append(song.id)
        return ids

    async def cast(self, key: Any, song: str, vote: str = "up") -> vote_service_pb2.CastVoteResponse:
        request = vote_service_pb2.CastVoteRequest(item_type="song", item_id=song, vote=vote)
        return await self.votes.CastVote(request, metadata=key, timeout=5)

    async def published(self, agent_id: str, count: int) -> list[dict[str, Any]]:
        """The agent's events on the stream, as the consumers read them."""
        for _ in range(100):
            entries = events.entry_list(await self.redis.xrange(events.VOTE_EVENTS_STREAM))
            found = [json.loads(f[events.EVENT_FIELD]) for _, f in entries]
            mine = [e for e in found if e.get("agent_id") == agent_id]
            if len(mine) >= count:
                return mine
            await asyncio.sleep(0.05)
        raise AssertionError(f"{count} events of {agent_id} never reached the stream")


@pytest.fixture(scope="module")
async def services(backing: Stack) -> AsyncIterator[Services]:
    env = {"AIMUSICSTORE_QUOTA_FREE": str(QUOTA_FREE), "AIMUSICSTORE_ABUSE_BURST_MAX": str(BURST_MAX)}
    async with (
        in_process(backing, "reputation") as reputation,
        in_process(backing, "ranking", **target_env(reputation=reputation)) as ranking,
        in_process(backing, "vote", **target_env(reputation=reputation, ranking=ranking), **env) as vote,
        channel(vote) as votes,
        channel(reputation) as agents,
        channel(ranking) as catalog,
    ):
        redis = Redis.from_url(backing.redis_url or "", decode_responses=True)
        yield Services(
            vote_service_pb2_grpc.VoteServiceStub(votes),
            agent_service_pb2_grpc.AgentServiceStub(agents),
            catalog_service_pb2_grpc.CatalogServiceStub(catalog),
            redis,
        )
        await redis.aclose()


async def test_a_vote_is_answered_with_counts_and_published_once(services: Services) -> None:
    agent_id, key = await services.agent()
    (song,) = await services.songs(1)
    reply = await services.cast(key, song, "down")
    assert (reply.status, reply.message) == ("success", "Vote recorded")
    assert (reply.up_votes, reply.down_votes, reply.score) == (0, 1, -1)
    assert (reply.vote.agent_id, reply.vote.item_id, reply.vote.vote) == (agent_id, song, "down")
    (event,) = await services.published(agent_id, 1)
    decoded = events.decode(json.dumps(event))
    assert (decoded.type, decoded.item_type, decoded.item_id, decoded.direction) == ("vote", "song", song, -1)
    assert decoded.event_id > 0 and not decoded.has_review
    assert decoded.voted_at == reply.vote.timestamp


async def test_a_retraction_publishes_the_retracted_vote(services: Services) -> None:
    agent_id, key = await services.agent()
    (song,) = await services.songs(1)
    cast = await services.cast(key, song)
    request = vote_service_pb2.RetractVoteRequest(item_type="song", item_id=song)
    await services.votes.RetractVote(request, metadata=key, timeout=5)
    counts = await services.votes.GetVoteCounts(
        vote_service_pb2.GetVoteCountsRequest(item_type="song", item_id=song), timeout=5
    )
    assert (counts.up_votes, counts.down_votes) == (0, 0)
    _, retraction = await services.published(agent_id, 2)
    decoded = events.decode(json.dumps(retraction))
    assert (decoded.type, decoded.direction, decoded.voted_at) == ("retract", 1, cast.vote.timestamp)
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await services.votes.RetractVote(request, metadata=key, timeout=5)
    assert again.value.code() == grpc.StatusCode.NOT_FOUND


async def test_refusals_carry_the_status_and_the_reason(services: Services) -> None:
    _, key = await services.agent()
    songs = await services.songs(QUOTA_FREE + 1)
    await services.cast(key, songs[0])
    with pytest.raises(grpc.aio.AioRpcError) as twice:
        await services.cast(key, songs[0], "down")
    assert (twice.value.code(), twice.value.details()) == (grpc.StatusCode.ALREADY_EXISTS, "Already voted")
    await services.cast(key, songs[1])
    with pytest.raises(grpc.aio.AioRpcError) as over:
        await services.cast(key, songs[2])
    assert over.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"daily vote quota of {QUOTA_FREE} for the free tier is used up" in (over.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await services.cast(key, unique("no-such-song"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await services.cast((), songs[2])
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_breaking_an_abuse_rule_flags_the_agent_with_its_reason(services: Services) -> None:
    agent_id, key = await services.agent("pro")
    for song in await services.songs(BURST_MAX + 1):
        await services.cast(key, song, "up")
    agent = await services.agents.GetAgent(agent_service_pb2.GetAgentRequest(agent_id=agent_id), timeout=5)
    assert agent.flagged
    assert agent.flag_reason == f"more than {BURST_MAX} votes within 10 seconds"


async def _watched(call: Any, agent_id: str, count: int) -> list[vote_service_pb2.WatchVotesResponse]:
    """The agent's next `count` events (earlier tests' events may still be relayed)."""
    seen = []
    async for event in call:
        if event.agent_id == agent_id:
            seen.append(event)
        if len(seen) == count:
            break
    call.cancel()
    return seen


async def test_a_watch_resumed_after_an_event_gets_what_followed_it_once_then_live_ones(services: Services) -> None:
    voter, key = await services.agent(tier="pro")
    first, missed, live = await services.songs(3)
    watch = vote_service_pb2.WatchVotesRequest(item_type="song")
    call = services.votes.WatchVotes(watch, timeout=10)
    await call.initial_metadata()
    await services.cast(key, first)
    (seen,) = await _watched(call, voter, 1)
    assert seen.item_id == first and seen.event_id
    # Disconnected: this vote happens while nobody watches.
    await services.cast(key, missed)
    resume = vote_service_pb2.WatchVotesRequest(item_type="song", after_event_id=seen.event_id)
    resumed = services.votes.WatchVotes(resume, timeout=10)
    await resumed.initial_metadata()
    await services.cast(key, live)
    got = await _watched(resumed, voter, 2)
    assert [e.item_id for e in got] == [missed, live]
    assert len({e.event_id for e in got}) == 2 and seen.event_id not in {e.event_id for e in got}


@pytest.mark.parametrize("event_id", ["yesterday", "1-2-3", "-1", "1" * 60])
async def test_a_malformed_resume_id_is_refused_naming_the_field(services: Services, event_id: str) -> None:
    call = services.votes.WatchVotes(vote_service_pb2.WatchVotesRequest(after_event_id=event_id), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call.initial_metadata()
        await call.read()
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "after_event_id" in (refused.value.details() or "")
