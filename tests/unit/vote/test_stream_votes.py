"""StreamVotes' flow control, with a vote domain that stalls: the servicer
reads at most its in-flight allowance ahead of the results it sent, so a
sender faster than votes commit is slowed (by HTTP/2 flow control, once
grpc stops reading), not buffered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from aimusicstore.vote.v1 import vote_service_pb2 as pb
from services.common.auth import Authenticator, Caller
from services.vote.model import Counts, VoteRow
from services.vote.servicer import StreamLimits, VoteService
from services.vote.voting import Ballot, BallotResult, Voting

NOW = datetime(2026, 12, 6, tzinfo=UTC)


class StallingVoting:
    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.cast_calls = 0

    async def cast_many(self, caller: Caller, ballots: Sequence[Ballot], *, bulk: bool = False) -> list[BallotResult]:
        self.cast_calls += 1
        await self.release.wait()
        return [
            BallotResult(
                b.item_type, b.item_id, VoteRow(caller.agent_id, b.item_type, b.item_id, 1, "", None, NOW), Counts(1, 0)
            )
            for b in ballots
        ]


class Context:
    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", "Bearer agent-key"),)


async def _verify(token: str) -> Caller | None:
    return Caller("bob", tier="pro")


async def test_a_stalled_stream_reads_no_more_than_its_allowance_ahead() -> None:
    limits = StreamLimits(in_flight=50, chunk=20, idle_s=5.0)
    voting = StallingVoting()
    auth = Authenticator("admin-" + "k" * 20, _verify, cache_ttl_s=60.0)
    service = VoteService(cast(Voting, voting), auth, feed=cast(Any, None), stream=limits)
    pulled = 0

    async def sender() -> AsyncIterator[pb.CastVoteRequest]:
        nonlocal pulled
        for n in range(1000):
            pulled += 1
            yield pb.CastVoteRequest(item_type="song", item_id=f"s{n}", vote="up")

    results = service.StreamVotes(sender(), cast(Any, Context()))
    first = asyncio.ensure_future(results.__anext__())
    for _ in range(50):
        await asyncio.sleep(0.001)
    assert not first.done() and voting.cast_calls == 1
    # The chunk being cast, the queue's allowance, and the one the reader holds.
    assert pulled <= limits.chunk + limits.in_flight + 1
    voting.release.set()
    answered = [(await first).item_id] + [r.item_id async for r in results]
    assert answered == [f"s{n}" for n in range(1000)] and pulled == 1000
