"""Thin gRPC servicer for the vote service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aimusicstore.vote.v1 import vote_service_pb2 as pb
from aimusicstore.vote.v1 import vote_service_pb2_grpc
from services.common.auth import Authenticator, Caller
from services.common.convert import timestamp
from services.common.errors import DeadlineExceeded, InvalidArgument, PermissionDenied, Unauthenticated
from services.common.grpc_types import Context
from services.vote import metrics
from services.vote.live import VoteFeed
from services.vote.model import VoteRow, direction_field
from services.vote.voting import Ballot, BallotResult, Voting


def vote_proto(row: VoteRow) -> pb.Vote:
    return pb.Vote(
        agent_id=row.agent_id,
        item_type=row.item_type,
        item_id=row.item_id,
        vote=direction_field(row.direction),
        comment=row.comment,
        rating=row.rating,
        timestamp=timestamp(row.created_at),
    )


def ballot(request: pb.CastVoteRequest) -> Ballot:
    rating = request.rating if request.HasField("rating") else None
    return Ballot(request.item_type, request.item_id, request.vote, request.comment, rating, request.agent_id)


def vote_result(result: BallotResult) -> pb.VoteResult:
    answer = pb.VoteResult(
        item_type=result.item_type,
        item_id=result.item_id,
        status=result.status,
        code=result.http_status,
        message="Vote recorded" if result.error is None else result.error.message,
    )
    if result.vote is not None and result.counts is not None:
        answer.up_votes, answer.down_votes, answer.score = result.counts.up, result.counts.down, result.counts.score
        answer.vote.CopyFrom(vote_proto(result.vote))
    return answer


@dataclass(frozen=True)
class StreamLimits:
    # Votes read ahead of their results: past it the stream is not read, so
    # HTTP/2 flow control slows the sender instead of this process buffering.
    in_flight: int = 200
    # Votes cast together (one cast_many) at most.
    chunk: int = 100
    idle_s: float = 60.0


_END = object()


_FLAGGED_STREAMS = "streams are closed to flagged agents (CastVote still records their votes, weighing 0)"


def _refuse_flagged(caller: Caller) -> None:
    if caller.flagged:
        raise PermissionDenied(f"agent {caller.agent_id} is flagged: {_FLAGGED_STREAMS}")


class VoteService(vote_service_pb2_grpc.VoteServiceServicer):
    def __init__(
        self,
        voting: Voting,
        auth: Authenticator,
        feed: VoteFeed,
        *,
        batch_max_votes: int = 100,
        stream: StreamLimits = StreamLimits(),
    ) -> None:
        self.voting = voting
        self.auth = auth
        self.feed = feed
        self.batch_max_votes = batch_max_votes
        self.stream = stream

    async def CastVote(self, request: pb.CastVoteRequest, context: Context) -> pb.CastVoteResponse:
        # The vote's admission script refuses a revoked key atomically with
        # the quota charge: no separate revocation lookup per vote.
        try:
            caller = await self.auth.caller(context, check_revoked=False)
            vote, counts = await self.voting.cast(
                caller,
                item_type=request.item_type,
                item_id=request.item_id,
                vote=request.vote,
                comment=request.comment,
                rating=request.rating if request.HasField("rating") else None,
                agent_id=request.agent_id,
            )
        except Exception as exc:
            metrics.count_vote(exc)
            raise
        metrics.count_vote(None)
        return pb.CastVoteResponse(
            status="success",
            message="Vote recorded",
            vote=vote_proto(vote),
            up_votes=counts.up,
            down_votes=counts.down,
            score=counts.score,
        )

    async def BatchCastVotes(self, request: pb.BatchCastVotesRequest, context: Context) -> pb.BatchCastVotesResponse:
        # One revocation lookup per batch: a revoked key fails the whole call.
        caller = await self.auth.caller(context)
        if not 1 <= len(request.votes) <= self.batch_max_votes:
            raise InvalidArgument(
                "votes", f"a batch holds 1 to {self.batch_max_votes} votes (got {len(request.votes)})"
            )
        results = await self.voting.cast_many(caller, [ballot(v) for v in request.votes], bulk=True)
        for result in results:
            metrics.count_vote(result.error)
        return pb.BatchCastVotesResponse(results=[vote_result(r) for r in results])

    async def StreamVotes(
        self, request_iterator: AsyncIterator[pb.CastVoteRequest], context: Context
    ) -> AsyncIterator[pb.VoteResult]:
        """Reads ahead at most `in_flight` votes, casts what has arrived in
        chunks, and answers each vote once it is durable, in order. A revoked
        key, or the agent being flagged, ends the stream after the results
        of the votes already cast."""
        caller = await self.auth.caller(context)
        _refuse_flagged(caller)
        received: asyncio.Queue[object] = asyncio.Queue(self.stream.in_flight)

        async def read() -> None:
            try:
                async for request in request_iterator:
                    await received.put(request)
            except Exception as exc:  # noqa: BLE001 - handed to the writer, which ends the call with it
                await received.put(exc)
            await received.put(_END)

        reader = asyncio.create_task(read(), name="stream-votes-reader")
        try:
            while True:
                try:
                    first = await asyncio.wait_for(received.get(), self.stream.idle_s)
                except TimeoutError:
                    raise DeadlineExceeded(
                        f"no vote for {self.stream.idle_s:g} seconds: the stream is closed; open a new one"
                    ) from None
                chunk = [first]
                while len(chunk) < self.stream.chunk and not received.empty():
                    chunk.append(received.get_nowait())
                # The reader's last word (the end, or its failure) follows every vote it read.
                requests = [r for r in chunk if isinstance(r, pb.CastVoteRequest)]
                last_word = next((r for r in chunk if not isinstance(r, pb.CastVoteRequest)), None)
                if requests:
                    # The cached caller, re-read: a flag or a rotation announced meanwhile shows here.
                    caller = await self.auth.caller(context, check_revoked=False)
                    results = await self.voting.cast_many(caller, [ballot(r) for r in requests], bulk=True)
                    for result in results:
                        metrics.count_vote(result.error)
                        if isinstance(result.error, Unauthenticated):
                            raise result.error
                        yield vote_result(result)
                    if broken := next((r.broken_rule for r in results if r.broken_rule), ""):
                        raise PermissionDenied(f"agent {caller.agent_id} was flagged ({broken}): {_FLAGGED_STREAMS}")
                    _refuse_flagged(caller)
                if isinstance(last_word, Exception):
                    raise last_word
                if last_word is _END:
                    return
        finally:
            reader.cancel()

    async def RetractVote(self, request: pb.RetractVoteRequest, context: Context) -> pb.RetractVoteResponse:
        caller = await self.auth.caller(context)
        await self.voting.retract(caller, request.item_type, request.item_id)
        return pb.RetractVoteResponse(status="success", message="Vote retracted")

    async def GetVoteCounts(self, request: pb.GetVoteCountsRequest, context: Context) -> pb.GetVoteCountsResponse:
        counts = await self.voting.counts(request.item_type, request.item_id)
        return pb.GetVoteCountsResponse(
            item_type=request.item_type,
            item_id=request.item_id,
            up_votes=counts.up,
            down_votes=counts.down,
            score=counts.score,
        )

    async def ListReviews(self, request: pb.ListReviewsRequest, context: Context) -> pb.ListReviewsResponse:
        rows, token = await self.voting.reviews(
            request.item_type, request.item_id, request.page_size, request.page_token
        )
        return pb.ListReviewsResponse(votes=[vote_proto(r) for r in rows], next_page_token=token)

    async def ListAgentVotes(self, request: pb.ListAgentVotesRequest, context: Context) -> pb.ListAgentVotesResponse:
        rows, token = await self.voting.agent_votes(request.agent_id, request.page_size, request.page_token)
        return pb.ListAgentVotesResponse(votes=[vote_proto(r) for r in rows], next_page_token=token)

    async def WatchVotes(self, request: pb.WatchVotesRequest, context: Context) -> AsyncIterator[pb.WatchVotesResponse]:
        # Validated and registered before anything is read: nothing is missed.
        watcher = self.feed.subscribe(request.item_type, request.item_id, request.after_event_id)
        try:
            # A resume point the feed no longer holds is refused before the
            # stream starts: a status the gateway turns into a 400.
            await self.feed.check_resumable(watcher)
            # Headers go out now, so a client knows it is subscribed before any event.
            await context.send_initial_metadata(())
            async for live in self.feed.events(watcher):
                event, counts = live.event, live.counts
                yield pb.WatchVotesResponse(
                    type=event.type,
                    item_type=event.item_type,
                    item_id=event.item_id,
                    agent_id=event.agent_id,
                    vote=direction_field(event.direction),
                    up_votes=counts.up,
                    down_votes=counts.down,
                    score=counts.score,
                    timestamp=event.occurred_at,
                    event_id=live.event_id,
                )
        finally:
            self.feed.unsubscribe(watcher)
