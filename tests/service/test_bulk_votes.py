"""BatchCastVotes and StreamVotes over gRPC, on the in-process vote service
with its real peers: every single-vote rule applies to each vote of a batch
or a stream, and each gets its own result, in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from redis.asyncio import Redis

from aimusicstore.ranking.v1 import catalog_service_pb2_grpc
from aimusicstore.reputation.v1 import agent_service_pb2, agent_service_pb2_grpc
from aimusicstore.vote.v1 import vote_service_pb2 as pb
from aimusicstore.vote.v1 import vote_service_pb2_grpc
from devstack.stack import Stack
from tests.service.conftest import ADMIN, channel, in_process, target_env
from tests.service.test_vote_service import Services

pytestmark = pytest.mark.service

QUOTA_FREE = 4
BULK_BURST = 12
STREAM_IDLE_S = 1.5
ONE_WAY_MIN = 10
# The abuse rules are raised out of the way but the one-way rule, which the
# flag test breaks on purpose (10 votes all up); other tests mix directions.
ENV = {
    "AIMUSICSTORE_QUOTA_FREE": str(QUOTA_FREE),
    "AIMUSICSTORE_QUOTA_PRO": "100000",
    "AIMUSICSTORE_ABUSE_BURST_MAX": "100000",
    "AIMUSICSTORE_ABUSE_MAX_VOTES": "100000",
    "AIMUSICSTORE_ABUSE_ONE_DIRECTION_MIN": str(ONE_WAY_MIN),
    "AIMUSICSTORE_BULK_VOTES_PER_S": "0.5",
    "AIMUSICSTORE_BULK_VOTES_BURST": str(BULK_BURST),
    "AIMUSICSTORE_STREAM_IDLE_S": str(STREAM_IDLE_S),
    "AIMUSICSTORE_BATCH_MAX_VOTES": "100",
}


@pytest.fixture(scope="module")
async def services(backing: Stack) -> AsyncIterator[Services]:
    async with (
        in_process(backing, "reputation") as reputation,
        in_process(backing, "ranking", **target_env(reputation=reputation)) as ranking,
        in_process(backing, "vote", **target_env(reputation=reputation, ranking=ranking), **ENV) as vote,
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


def up(song: str, **fields: Any) -> pb.CastVoteRequest:
    return pb.CastVoteRequest(item_type="song", item_id=song, vote="up", **fields)


def mixed(songs: list[str]) -> list[pb.CastVoteRequest]:
    """Votes alternating up and down: no one-way run."""
    return [pb.CastVoteRequest(item_type="song", item_id=s, vote=("up", "down")[n % 2]) for n, s in enumerate(songs)]


def statuses(results: Any) -> list[tuple[str, str, int]]:
    return [(r.item_id, r.status, r.code) for r in results]


async def test_each_vote_of_a_batch_gets_the_single_vote_answer_in_order(services: Services) -> None:
    voter, key = await services.agent()
    a, b, c, d, e, f = await services.songs(6)
    request = pb.BatchCastVotesRequest(
        votes=[
            up(a),
            up(a),  # the same item twice in one batch
            up("no-such-song"),
            up(b, rating=4),  # a rating on a song
            pb.CastVoteRequest(item_type="song", item_id=c, vote="sideways"),
            up(c, agent_id="someone-else"),
            up(c),
            up(d),
            up(e),  # the quota's fourth vote: the duplicate above was not charged
            up(f),  # the fifth
        ]
    )
    reply = await services.votes.BatchCastVotes(request, metadata=key, timeout=10)
    assert statuses(reply.results) == [
        (a, "recorded", 200),
        (a, "already_voted", 409),
        ("no-such-song", "not_found", 404),
        (b, "invalid", 400),
        (c, "invalid", 400),
        (c, "invalid", 403),
        (c, "recorded", 200),
        (d, "recorded", 200),
        (e, "recorded", 200),
        (f, "quota_exceeded", 429),
    ]
    recorded = reply.results[0]
    assert (recorded.up_votes, recorded.down_votes, recorded.score) == (1, 0, 1)
    assert recorded.vote.agent_id == voter and recorded.message == "Vote recorded"
    assert "rating" in reply.results[3].message and "vote" in reply.results[4].message
    assert "resets at" in reply.results[9].message
    # Durable when answered: the agent's votes are listed at once.
    listed = await services.votes.ListAgentVotes(pb.ListAgentVotesRequest(agent_id=voter), timeout=5)
    assert sorted(v.item_id for v in listed.votes) == sorted([a, c, d, e])
    # Past the quota, a vote already cast is refused for the quota, as CastVote would.
    again = await services.votes.BatchCastVotes(pb.BatchCastVotesRequest(votes=[up(a)]), metadata=key, timeout=5)
    assert statuses(again.results) == [(a, "quota_exceeded", 429)]
    with pytest.raises(grpc.aio.AioRpcError) as single:
        await services.votes.CastVote(up(a), metadata=key, timeout=5)
    assert single.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_a_batch_fails_whole_only_for_its_size_or_its_caller(services: Services) -> None:
    _, key = await services.agent()
    (song,) = await services.songs(1)
    for count, fragment in ((0, "1 to 100 votes (got 0)"), (101, "1 to 100 votes (got 101)")):
        request = pb.BatchCastVotesRequest(votes=[up(song)] * count)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await services.votes.BatchCastVotes(request, metadata=key, timeout=5)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert fragment in (refused.value.details() or "")
    one = pb.BatchCastVotesRequest(votes=[up(song)])
    for metadata, code in (
        ((), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", "Bearer not-a-key"),), grpc.StatusCode.UNAUTHENTICATED),
        (ADMIN, grpc.StatusCode.PERMISSION_DENIED),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await services.votes.BatchCastVotes(one, metadata=metadata, timeout=5)
        assert refused.value.code() == code


async def test_votes_past_the_agents_bulk_pace_are_rate_limited(services: Services) -> None:
    _, key = await services.agent(tier="pro")
    songs = await services.songs(BULK_BURST + 3)
    reply = await services.votes.BatchCastVotes(pb.BatchCastVotesRequest(votes=mixed(songs)), metadata=key, timeout=10)
    assert [r.status for r in reply.results] == ["recorded"] * BULK_BURST + ["rate_limited"] * 3
    assert all(r.code == 429 and "votes a second" in r.message for r in reply.results[BULK_BURST:])


async def _requests(votes: list[pb.CastVoteRequest], gate: asyncio.Event | None = None) -> AsyncIterator[Any]:
    for vote in votes:
        yield vote
    if gate is not None:
        await gate.wait()


async def test_a_stream_answers_each_vote_in_order_then_ends_with_the_client(services: Services) -> None:
    _, key = await services.agent(tier="pro")
    a, b, c = await services.songs(3)
    call = services.votes.StreamVotes(_requests([up(a), up(b), up(a), up("missing"), up(c)]), metadata=key, timeout=10)
    results = [r async for r in call]
    assert statuses(results) == [
        (a, "recorded", 200),
        (b, "recorded", 200),
        (a, "already_voted", 409),
        ("missing", "not_found", 404),
        (c, "recorded", 200),
    ]
    assert await call.code() == grpc.StatusCode.OK


async def test_a_key_revoked_mid_stream_closes_it_unauthenticated(services: Services) -> None:
    voter, key = await services.agent(tier="pro")
    a, b = await services.songs(2)
    queue: asyncio.Queue[pb.CastVoteRequest | None] = asyncio.Queue()

    async def requests() -> AsyncIterator[pb.CastVoteRequest]:
        while (vote := await queue.get()) is not None:
            yield vote

    call = services.votes.StreamVotes(requests(), metadata=key, timeout=10)
    await queue.put(up(a))
    assert (await call.read()).status == "recorded"
    await services.agents.RotateKey(agent_service_pb2.RotateKeyRequest(agent_id=voter), metadata=key, timeout=5)
    await queue.put(up(b))
    with pytest.raises(grpc.aio.AioRpcError) as closed:
        await call.read()
    await queue.put(None)  # the client's side ends too: nothing is left waiting at teardown
    assert closed.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "not valid" in (closed.value.details() or "")
    listed = await services.votes.ListAgentVotes(pb.ListAgentVotesRequest(agent_id=voter), timeout=5)
    assert [v.item_id for v in listed.votes] == [a]


async def test_an_agent_flagged_mid_stream_is_answered_then_closed_and_cannot_reopen(services: Services) -> None:
    _, key = await services.agent(tier="pro")
    songs = await services.songs(ONE_WAY_MIN)
    gate = asyncio.Event()  # the client keeps its side open: the server ends the call
    call = services.votes.StreamVotes(_requests([up(s) for s in songs], gate), metadata=key, timeout=20)
    results = []
    with pytest.raises(grpc.aio.AioRpcError) as closed:
        async for result in call:
            results.append(result)
    gate.set()
    assert closed.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert f"flagged ({ONE_WAY_MIN} votes in 300 seconds, all up)" in (closed.value.details() or "")
    # Every vote read was answered before the stream closed (the flag-raising one included).
    assert len(results) == ONE_WAY_MIN and all(r.status == "recorded" for r in results)
    again = services.votes.StreamVotes(_requests([up(songs[0])]), metadata=key, timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await again.read()
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED and "is flagged" in (refused.value.details() or "")


async def test_an_idle_stream_is_closed_with_a_reason(services: Services) -> None:
    _, key = await services.agent(tier="pro")
    (song,) = await services.songs(1)
    gate = asyncio.Event()
    call = services.votes.StreamVotes(_requests([up(song)], gate), metadata=key, timeout=STREAM_IDLE_S + 10)
    assert (await call.read()).status == "recorded"
    with pytest.raises(grpc.aio.AioRpcError) as closed:
        await call.read()
    gate.set()
    assert closed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert f"no vote for {STREAM_IDLE_S:g} seconds" in (closed.value.details() or "")
