"""Thin gRPC servicer for the vote service."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aimusicstore.vote.v1 import vote_service_pb2 as pb
from aimusicstore.vote.v1 import vote_service_pb2_grpc
from services.common.auth import Authenticator
from services.common.convert import timestamp
from services.common.grpc_types import Context
from services.vote import metrics
from services.vote.live import VoteFeed
from services.vote.model import VoteRow, direction_field
from services.vote.voting import Voting


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


class VoteService(vote_service_pb2_grpc.VoteServiceServicer):
    def __init__(self, voting: Voting, auth: Authenticator, feed: VoteFeed) -> None:
        self.voting = voting
        self.auth = auth
        self.feed = feed

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
