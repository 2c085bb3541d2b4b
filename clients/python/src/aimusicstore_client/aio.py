"""The asyncio client: `AsyncClient(target, api_key)`, the same calls as
Client (aimusicstore_client.client), awaited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import Message

from aimusicstore_client import _methods as m
from aimusicstore_client.client import (
    CHANNEL_OPTIONS,
    DEFAULT_TARGET,
    RecordedEarlier,
    _Base,
    _serialize,
    recorded_vote_message,
)
from aimusicstore_client.errors import AimusicstoreError, Unavailable, from_aio_error
from aimusicstore_client.retry import RetryState
from aimusicstore_client.types import (
    Agent,
    CastVoteRequest,
    CastVoteResponse,
    GetItemHistoryResponse,
    GetTopChartResponse,
    GetTrendingResponse,
    GetVoteCountsResponse,
    ListAgentsResponse,
    ListAgentVotesResponse,
    ListLeaderboardResponse,
    ListReviewsResponse,
    ListSongsResponse,
    ListToolsResponse,
    RegisterAgentResponse,
    RetractVoteResponse,
    Song,
    Tool,
    Vote,
    VoteResult,
    WatchVotesRequest,
    WatchVotesResponse,
)
from aimusicstore_client.watch import FeedGap, WatchState

__all__ = ["AsyncClient", "AsyncVoteWatch"]

Resp = TypeVar("Resp", bound=Message)
Item = TypeVar("Item")


class AsyncClient(_Base):
    """The asyncio client (grpc.aio): the same methods as Client, awaited;
    iter_* are async iterators and watch_votes an async iterator. Use it as
    an async context manager (or await close())."""

    def __init__(self, target: str = DEFAULT_TARGET, api_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(target, api_key, **kwargs)
        if self._credentials is not None:
            self._channel = grpc.aio.secure_channel(target, self._credentials, options=CHANNEL_OPTIONS)
        else:
            self._channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._callables: dict[str, grpc.aio.UnaryUnaryMultiCallable[Any, Any]] = {}

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    # -- calls -----------------------------------------------------------------

    def _callable(self, method: m.Method[Resp]) -> grpc.aio.UnaryUnaryMultiCallable[Message, Resp]:
        callable_ = self._callables.get(method.path)
        if callable_ is None:
            callable_ = self._callables[method.path] = self._channel.unary_unary(
                method.path,
                request_serializer=_serialize,
                response_deserializer=method.response.FromString,
            )
        return callable_

    async def _call(self, method: m.Method[Resp], request: Message) -> Resp:
        state = RetryState(self.retry, method.safety)
        call = self._callable(method)
        while True:
            try:
                return await call(request, timeout=self.timeout, metadata=self._metadata())
            except grpc.aio.AioRpcError as rpc_error:
                error = from_aio_error(rpc_error)
            if state.recorded_earlier(error):
                raise RecordedEarlier(error)
            wait = state.next_wait(error)
            if wait is None:
                raise error
            if self.on_retry is not None:
                self.on_retry(method.name, state.attempts, error, wait)
            await asyncio.sleep(wait)

    async def _pages(
        self,
        method: m.Method[Resp],
        request: Message,
        items: Callable[[Resp], Iterable[Item]],
        limit: int | None = None,
    ) -> AsyncIterator[Item]:
        """Follows next_page_token from the first page to the last (or `limit` items)."""
        given = 0
        while True:
            page = await self._call(method, request)
            for item in items(page):
                if limit is not None and given >= limit:
                    return
                given += 1
                yield item
            token = getattr(page, "next_page_token", "")
            if not token:
                return
            request.page_token = token

    # -- agents ----------------------------------------------------------------

    async def register(self, agent_id: str = "", name: str = "", *, use_key: bool = True) -> RegisterAgentResponse:
        """Registers an agent (the id is generated when empty). Its API key is
        in the answer, shown only once; with use_key this client uses it from
        now on. Not retried: a repeat could not show the key again."""
        reply = await self._call(m.REGISTER_AGENT, m.RegisterAgentRequest(agent=Agent(id=agent_id, name=name)))
        if use_key:
            self.api_key, self.agent_id = reply.api_key, reply.agent.id
        return reply

    async def get_agent(self, agent_id: str) -> Agent:
        return await self._call(m.GET_AGENT, m.GetAgentRequest(agent_id=agent_id))

    async def my_agent(self) -> Agent:
        """This client's agent (its agent_id): standing, weight, reputation."""
        return await self.get_agent(self._me(None))

    async def rotate_key(self, agent_id: str | None = None, *, use_key: bool = True) -> str:
        """Issues a new key for the agent (default: this client's); the old one
        stops working at once. With use_key this client switches to it."""
        reply = await self._call(m.ROTATE_KEY, m.RotateKeyRequest(agent_id=self._me(agent_id)))
        if use_key and (agent_id is None or agent_id == self.agent_id):
            self.api_key = reply.api_key
        return reply.api_key

    async def update_agent(self, agent_id: str, *, tier: str | None = None, flagged: bool | None = None) -> Agent:
        """Admin: changes an agent's tier or flag."""
        return await self._call(m.UPDATE_AGENT, m.update_agent(agent_id, tier, flagged))

    async def list_agents(
        self, *, flagged: bool | None = None, page_size: int = 0, page_token: str = ""
    ) -> ListAgentsResponse:
        """Admin: one page of agents (flagged=True: the moderation queue)."""
        return await self._call(m.LIST_AGENTS, m.list_agents(flagged, page_size, page_token))

    def iter_agents(self, *, flagged: bool | None = None, page_size: int = m.MAX_PAGE_SIZE) -> AsyncIterator[Agent]:
        request = m.list_agents(flagged, page_size, "")
        return self._pages(m.LIST_AGENTS, request, lambda page: page.agents)

    async def list_leaderboard(self, *, page_size: int = 0, page_token: str = "") -> ListLeaderboardResponse:
        return await self._call(
            m.LIST_LEADERBOARD, m.ListLeaderboardRequest(page_size=page_size, page_token=page_token)
        )

    def iter_leaderboard(self, *, limit: int | None = None, page_size: int = m.MAX_PAGE_SIZE) -> AsyncIterator[Agent]:
        """Agents by reputation, highest first, page after page."""
        request = m.ListLeaderboardRequest(page_size=page_size)
        return self._pages(m.LIST_LEADERBOARD, request, lambda page: page.agents, limit)

    # -- votes -----------------------------------------------------------------

    async def vote(
        self, item_type: str, item_id: str, vote: str = "up", *, comment: str = "", rating: int | None = None
    ) -> CastVoteResponse:
        """Votes "up" or "down" on a song or tool; the answer carries the
        item's counts including this vote. Retried when the outcome of an
        attempt is unknown: if a repeat answers "Already voted", the earlier
        attempt was recorded, and this returns success (with the item's
        current counts, and no `vote` echoed)."""
        try:
            reply = await self._call(m.CAST_VOTE, m.cast_vote(item_type, item_id, vote, comment, rating))
        except RecordedEarlier as earlier:
            counts = await self.get_vote_counts(item_type, item_id)
            return CastVoteResponse(
                status="success",
                message=recorded_vote_message(earlier.error),
                up_votes=counts.up_votes,
                down_votes=counts.down_votes,
                score=counts.score,
            )
        self._learn(reply.vote.agent_id)
        return reply

    async def batch_vote(self, votes: Iterable[CastVoteRequest | Mapping[str, Any]]) -> list[VoteResult]:
        """Up to 100 votes in one call, each as vote() takes it (a mapping with
        item_type, item_id, vote, and optionally comment and rating); one
        result per vote, in order, each with a status ("recorded",
        "already_voted", "not_found", "invalid", "quota_exceeded",
        "rate_limited"). Retried like vote(): after a retry, a vote the
        earlier attempt recorded reports "already_voted"."""
        reply = await self._call(m.BATCH_CAST_VOTES, m.batch(votes))
        for result in reply.results:
            self._learn(result.vote.agent_id)
        return list(reply.results)

    async def retract(self, item_type: str, item_id: str) -> RetractVoteResponse:
        """Withdraws this agent's vote on the item (to vote again, differently)."""
        try:
            return await self._call(m.RETRACT_VOTE, m.retract(item_type, item_id))
        except RecordedEarlier as earlier:
            return RetractVoteResponse(
                status="success", message=f"Vote retracted (by an earlier attempt: {earlier.error.message})"
            )

    async def get_vote_counts(self, item_type: str, item_id: str) -> GetVoteCountsResponse:
        return await self._call(m.GET_VOTE_COUNTS, m.counts(item_type, item_id))

    async def list_reviews(
        self, item_type: str, item_id: str, *, page_size: int = 0, page_token: str = ""
    ) -> ListReviewsResponse:
        request = m.ListReviewsRequest(item_type=item_type, item_id=item_id, page_size=page_size, page_token=page_token)
        return await self._call(m.LIST_REVIEWS, request)

    def iter_reviews(
        self, item_type: str, item_id: str, *, limit: int | None = None, page_size: int = m.MAX_PAGE_SIZE
    ) -> AsyncIterator[Vote]:
        """Votes on the item with a comment or rating, newest first."""
        request = m.ListReviewsRequest(item_type=item_type, item_id=item_id, page_size=page_size)
        return self._pages(m.LIST_REVIEWS, request, lambda page: page.votes, limit)

    async def list_agent_votes(
        self, agent_id: str | None = None, *, page_size: int = 0, page_token: str = ""
    ) -> ListAgentVotesResponse:
        request = m.ListAgentVotesRequest(agent_id=self._me(agent_id), page_size=page_size, page_token=page_token)
        return await self._call(m.LIST_AGENT_VOTES, request)

    def iter_agent_votes(
        self, agent_id: str | None = None, *, limit: int | None = None, page_size: int = m.MAX_PAGE_SIZE
    ) -> AsyncIterator[Vote]:
        """An agent's votes (default: this client's), newest first."""
        request = m.ListAgentVotesRequest(agent_id=self._me(agent_id), page_size=page_size)
        return self._pages(m.LIST_AGENT_VOTES, request, lambda page: page.votes, limit)

    def watch_votes(
        self,
        item_type: str = "",
        item_id: str = "",
        *,
        after_event_id: str = "",
        on_gap: Callable[[FeedGap], None] | None = None,
        max_failures: int | None = None,
    ) -> AsyncVoteWatch:
        """Live votes and retractions (optionally of one item), as an iterator
        that reconnects when the stream drops and resumes after the last
        event it yielded (see aimusicstore_client.watch). `on_gap` is called,
        and `watch.gaps` grows, when events may have been missed. It gives up
        (raising the last error) after `max_failures` failed attempts in a
        row (default: never)."""
        state = WatchState(item_type=item_type, item_id=item_id, last_event_id=after_event_id, on_gap=on_gap)
        return AsyncVoteWatch(self, state, max_failures)

    # -- catalog ---------------------------------------------------------------

    async def create_song(self, title: str, artist: str, platform: str, **fields: Any) -> Song:
        """Submits a song (any agent). Optional fields: id, platform_url,
        genre, mood, tempo. Not retried unless the gateway refused it."""
        return await self._call(m.CREATE_SONG, m.song(title, artist, platform, **fields))

    async def get_song(self, song_id: str) -> Song:
        return await self._call(m.GET_SONG, m.GetSongRequest(song_id=song_id))

    async def list_songs(
        self,
        *,
        q: str = "",
        platform: str = "",
        genre: str = "",
        mood: str = "",
        page_size: int = 0,
        page_token: str = "",
    ) -> ListSongsResponse:
        request = m.ListSongsRequest(
            q=q, platform=platform, genre=genre, mood=mood, page_size=page_size, page_token=page_token
        )
        return await self._call(m.LIST_SONGS, request)

    def iter_songs(
        self,
        *,
        q: str = "",
        platform: str = "",
        genre: str = "",
        mood: str = "",
        limit: int | None = None,
        page_size: int = m.MAX_PAGE_SIZE,
    ) -> AsyncIterator[Song]:
        """Songs, newest first, filtered, page after page."""
        request = m.ListSongsRequest(q=q, platform=platform, genre=genre, mood=mood, page_size=page_size)
        return self._pages(m.LIST_SONGS, request, lambda page: page.songs, limit)

    async def search_songs(
        self, q: str, *, limit: int = m.DEFAULT_SEARCH_LIMIT, platform: str = "", genre: str = "", mood: str = ""
    ) -> list[Song]:
        """Songs whose title or artist matches q (filters: platform, genre, mood)."""
        return [song async for song in self.iter_songs(q=q, limit=limit, platform=platform, genre=genre, mood=mood)]

    async def delete_song(self, song_id: str) -> None:
        """Admin: deletes a song; its votes leave every count and chart."""
        await self._call(m.DELETE_SONG, m.DeleteSongRequest(song_id=song_id))

    async def create_tool(self, name: str, **fields: Any) -> Tool:
        """Admin: adds a tool. Optional fields: id, website, affiliate_link,
        commission_rate, category, features, pricing (a dict)."""
        return await self._call(m.CREATE_TOOL, m.tool(name, **fields))

    async def get_tool(self, tool_id: str) -> Tool:
        return await self._call(m.GET_TOOL, m.GetToolRequest(tool_id=tool_id))

    async def list_tools(
        self, *, q: str = "", category: str = "", page_size: int = 0, page_token: str = ""
    ) -> ListToolsResponse:
        request = m.ListToolsRequest(q=q, category=category, page_size=page_size, page_token=page_token)
        return await self._call(m.LIST_TOOLS, request)

    def iter_tools(
        self, *, q: str = "", category: str = "", limit: int | None = None, page_size: int = m.MAX_PAGE_SIZE
    ) -> AsyncIterator[Tool]:
        request = m.ListToolsRequest(q=q, category=category, page_size=page_size)
        return self._pages(m.LIST_TOOLS, request, lambda page: page.tools, limit)

    async def search_tools(self, q: str, *, limit: int = m.DEFAULT_SEARCH_LIMIT, category: str = "") -> list[Tool]:
        """Tools whose name matches q."""
        return [tool async for tool in self.iter_tools(q=q, category=category, limit=limit)]

    async def delete_tool(self, tool_id: str) -> None:
        """Admin: deletes a tool."""
        await self._call(m.DELETE_TOOL, m.DeleteToolRequest(tool_id=tool_id))

    # -- rankings --------------------------------------------------------------

    async def get_trending(
        self, *, limit: int = 0, genre: str = "", platform: str = "", category: str = ""
    ) -> GetTrendingResponse:
        """Trending songs and tools (limit default 10, at most 50)."""
        request = m.GetTrendingRequest(limit=limit, genre=genre, platform=platform, category=category)
        return await self._call(m.GET_TRENDING, request)

    async def get_chart(
        self,
        period: str = "weekly",
        *,
        date: str = "",
        item_type: str = "",
        limit: int = 0,
        sort: str = "",
        genre: str = "",
        platform: str = "",
    ) -> GetTopChartResponse:
        """The chart of a period ("daily", "weekly", "monthly", "all_time")
        ending on date (YYYY-MM-DD, default today UTC); sort "score" (default),
        "best" or "controversial"."""
        request = m.GetTopChartRequest(
            period=period, date=date, item_type=item_type, limit=limit, sort=sort, genre=genre, platform=platform
        )
        return await self._call(m.GET_TOP_CHART, request)

    async def get_history(self, item_type: str, item_id: str, *, days: int = 0) -> GetItemHistoryResponse:
        """An item's daily chart points, oldest first (days default 30)."""
        return await self._call(m.GET_ITEM_HISTORY, m.history(item_type, item_id, days))


class AsyncVoteWatch(AsyncIterator[WatchVotesResponse]):
    """What AsyncClient.watch_votes() returns: `async for event in watch`.
    The same attributes as VoteWatch; `connected` is an asyncio.Event."""

    def __init__(self, client: AsyncClient, state: WatchState, max_failures: int | None) -> None:
        self._client = client
        self.state = state
        self.max_failures = max_failures
        self.connected = asyncio.Event()
        self._closed = False
        self._call: Any = None
        self._events = self._run()

    async def __aenter__(self) -> AsyncVoteWatch:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __aiter__(self) -> AsyncVoteWatch:
        return self

    async def __anext__(self) -> WatchVotesResponse:
        return await self._events.__anext__()

    def close(self) -> None:
        self._closed = True
        if self._call is not None:
            self._call.cancel()

    @property
    def last_event_id(self) -> str:
        return self.state.last_event_id

    @property
    def gaps(self) -> list[FeedGap]:
        return self.state.gaps

    @property
    def missed(self) -> int | None:
        return self.state.missed

    @property
    def resumed(self) -> int:
        return self.state.resumed

    @property
    def connections(self) -> int:
        return self.state.connections

    async def _run(self) -> AsyncIterator[WatchVotesResponse]:
        client, state = self._client, self.state
        stream = client._channel.unary_stream(
            m.WATCH_VOTES.path,
            request_serializer=_serialize,
            response_deserializer=WatchVotesResponse.FromString,
        )
        while not self._closed:
            request = WatchVotesRequest(
                item_type=state.item_type, item_id=state.item_id, after_event_id=state.after_event_id()
            )
            try:
                self._call = call = stream(request, metadata=client._metadata())
                await call.initial_metadata()  # the service has subscribed us
                if not call.done():
                    state.opened()
                    self.connected.set()
                async for event in call:
                    state.saw(event.event_id)
                    yield event
                error: AimusicstoreError = Unavailable("the stream ended", grpc.StatusCode.UNAVAILABLE)
            except grpc.aio.AioRpcError as rpc_error:
                error = from_aio_error(rpc_error)
            except asyncio.CancelledError:
                if self._closed:
                    return
                raise
            finally:
                self.connected.clear()
            if self._closed:
                return
            if not state.dropped(error) or (self.max_failures is not None and state.failures > self.max_failures):
                raise error
            await asyncio.sleep(client.retry.backoff(min(state.failures, 16), error.retry_after))
