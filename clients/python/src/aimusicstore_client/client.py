"""The synchronous client: `Client(target, api_key)`.

Every call goes to the gateway's one port over gRPC, with the API key as
`authorization: Bearer ...` metadata, a deadline (`timeout`, per attempt),
and retries where repeating is safe (aimusicstore_client.retry).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from aimusicstore_client import _methods as m
from aimusicstore_client.errors import AimusicstoreError, Unavailable, from_rpc_error
from aimusicstore_client.retry import RetryPolicy, RetryState
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

__all__ = ["Client", "VoteWatch"]

Resp = TypeVar("Resp", bound=Message)
Item = TypeVar("Item")

DEFAULT_TARGET = "localhost:8080"
DEFAULT_TIMEOUT_S = 10.0
USER_AGENT = "aimusicstore-client/0.1"
# Watch streams: pings find a connection that died without a word.
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.primary_user_agent", USER_AGENT),
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
)

OnRetry = Callable[[str, int, AimusicstoreError, float], None]


def _serialize(message: Message) -> bytes:
    data: bytes = message.SerializeToString()
    return data


class RecordedEarlier(Exception):
    """Internal: a repeat answered that an earlier attempt did it."""

    def __init__(self, error: AimusicstoreError) -> None:
        super().__init__(error.message)
        self.error = error


def recorded_vote_message(error: AimusicstoreError) -> str:
    return f"Vote recorded (by an earlier attempt of this call: its repeat answered {error.message!r})"


class _Base:
    """Configuration both clients share."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        api_key: str | None = None,
        *,
        agent_id: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        on_retry: OnRetry | None = None,
    ) -> None:
        self.target = target
        self.api_key = api_key
        # The agent the key belongs to, when known (given, or learnt from
        # register() or from a vote's answer): the default of my_agent()
        # and list_agent_votes().
        self.agent_id = agent_id
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.on_retry = on_retry
        self._credentials = credentials
        self._extra_metadata = tuple(metadata)

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        auth = (("authorization", f"Bearer {self.api_key}"),) if self.api_key else ()
        return auth + self._extra_metadata

    def _me(self, agent_id: str | None) -> str:
        agent_id = agent_id or self.agent_id
        if not agent_id:
            raise ValueError(
                "no agent id: pass one, give Client(agent_id=...), or register() with this client "
                "(an API key does not say which agent it belongs to)"
            )
        return agent_id

    def _learn(self, agent_id: str) -> None:
        if agent_id and not self.agent_id:
            self.agent_id = agent_id


class Client(_Base):
    """A synchronous client; use it as a context manager (or call close()).

    `target` is the gateway's host:port ("localhost:8080"); `api_key` the
    agent's key (reads need none; register() adopts the key it gets).
    `timeout` is each attempt's deadline in seconds; `retry` the RetryPolicy
    (RetryPolicy.never() turns retries off); `credentials` makes it TLS;
    `metadata` is sent with every call; `on_retry(method, attempt, error,
    wait_s)` is told of each retry.
    """

    def __init__(self, target: str = DEFAULT_TARGET, api_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(target, api_key, **kwargs)
        if self._credentials is not None:
            self._channel = grpc.secure_channel(target, self._credentials, options=CHANNEL_OPTIONS)
        else:
            self._channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._callables: dict[str, grpc.UnaryUnaryMultiCallable[Any, Any]] = {}

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    # -- calls -----------------------------------------------------------------

    def _callable(self, method: m.Method[Resp]) -> grpc.UnaryUnaryMultiCallable[Message, Resp]:
        callable_ = self._callables.get(method.path)
        if callable_ is None:
            callable_ = self._callables[method.path] = self._channel.unary_unary(
                method.path,
                request_serializer=_serialize,
                response_deserializer=method.response.FromString,
            )
        return callable_

    def _call(self, method: m.Method[Resp], request: Message) -> Resp:
        state = RetryState(self.retry, method.safety)
        call = self._callable(method)
        while True:
            try:
                return call(request, timeout=self.timeout, metadata=self._metadata())
            except grpc.RpcError as rpc_error:
                error = from_rpc_error(rpc_error)
            if state.recorded_earlier(error):
                raise RecordedEarlier(error)
            wait = state.next_wait(error)
            if wait is None:
                raise error
            if self.on_retry is not None:
                self.on_retry(method.name, state.attempts, error, wait)
            time.sleep(wait)

    def _pages(
        self,
        method: m.Method[Resp],
        request: Message,
        items: Callable[[Resp], Iterable[Item]],
        limit: int | None = None,
    ) -> Iterator[Item]:
        """Follows next_page_token from the first page to the last (or `limit` items)."""
        given = 0
        while True:
            page = self._call(method, request)
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

    def register(self, agent_id: str = "", name: str = "", *, use_key: bool = True) -> RegisterAgentResponse:
        """Registers an agent (the id is generated when empty). Its API key is
        in the answer, shown only once; with use_key this client uses it from
        now on. Not retried: a repeat could not show the key again."""
        reply = self._call(m.REGISTER_AGENT, m.RegisterAgentRequest(agent=Agent(id=agent_id, name=name)))
        if use_key:
            self.api_key, self.agent_id = reply.api_key, reply.agent.id
        return reply

    def get_agent(self, agent_id: str) -> Agent:
        return self._call(m.GET_AGENT, m.GetAgentRequest(agent_id=agent_id))

    def my_agent(self) -> Agent:
        """This client's agent (its agent_id): standing, weight, reputation."""
        return self.get_agent(self._me(None))

    def rotate_key(self, agent_id: str | None = None, *, use_key: bool = True) -> str:
        """Issues a new key for the agent (default: this client's); the old one
        stops working at once. With use_key this client switches to it."""
        reply = self._call(m.ROTATE_KEY, m.RotateKeyRequest(agent_id=self._me(agent_id)))
        if use_key and (agent_id is None or agent_id == self.agent_id):
            self.api_key = reply.api_key
        return reply.api_key

    def update_agent(self, agent_id: str, *, tier: str | None = None, flagged: bool | None = None) -> Agent:
        """Admin: changes an agent's tier or flag."""
        return self._call(m.UPDATE_AGENT, m.update_agent(agent_id, tier, flagged))

    def list_agents(
        self, *, flagged: bool | None = None, page_size: int = 0, page_token: str = ""
    ) -> ListAgentsResponse:
        """Admin: one page of agents (flagged=True: the moderation queue)."""
        return self._call(m.LIST_AGENTS, m.list_agents(flagged, page_size, page_token))

    def iter_agents(self, *, flagged: bool | None = None, page_size: int = m.MAX_PAGE_SIZE) -> Iterator[Agent]:
        request = m.list_agents(flagged, page_size, "")
        return self._pages(m.LIST_AGENTS, request, lambda page: page.agents)

    def list_leaderboard(self, *, page_size: int = 0, page_token: str = "") -> ListLeaderboardResponse:
        return self._call(m.LIST_LEADERBOARD, m.ListLeaderboardRequest(page_size=page_size, page_token=page_token))

    def iter_leaderboard(self, *, limit: int | None = None, page_size: int = m.MAX_PAGE_SIZE) -> Iterator[Agent]:
        """Agents by reputation, highest first, page after page."""
        request = m.ListLeaderboardRequest(page_size=page_size)
        return self._pages(m.LIST_LEADERBOARD, request, lambda page: page.agents, limit)

    # -- votes -----------------------------------------------------------------

    def vote(
        self, item_type: str, item_id: str, vote: str = "up", *, comment: str = "", rating: int | None = None
    ) -> CastVoteResponse:
        """Votes "up" or "down" on a song or tool; the answer carries the
        item's counts including this vote. Retried when the outcome of an
        attempt is unknown: if a repeat answers "Already voted", the earlier
        attempt was recorded, and this returns success (with the item's
        current counts, and no `vote` echoed)."""
        try:
            reply = self._call(m.CAST_VOTE, m.cast_vote(item_type, item_id, vote, comment, rating))
        except RecordedEarlier as earlier:
            counts = self.get_vote_counts(item_type, item_id)
            return CastVoteResponse(
                status="success",
                message=recorded_vote_message(earlier.error),
                up_votes=counts.up_votes,
                down_votes=counts.down_votes,
                score=counts.score,
            )
        self._learn(reply.vote.agent_id)
        return reply

    def batch_vote(self, votes: Iterable[CastVoteRequest | Mapping[str, Any]]) -> list[VoteResult]:
        """Up to 100 votes in one call, each as vote() takes it (a mapping with
        item_type, item_id, vote, and optionally comment and rating); one
        result per vote, in order, each with a status ("recorded",
        "already_voted", "not_found", "invalid", "quota_exceeded",
        "rate_limited"). Retried like vote(): after a retry, a vote the
        earlier attempt recorded reports "already_voted"."""
        reply = self._call(m.BATCH_CAST_VOTES, m.batch(votes))
        for result in reply.results:
            self._learn(result.vote.agent_id)
        return list(reply.results)

    def retract(self, item_type: str, item_id: str) -> RetractVoteResponse:
        """Withdraws this agent's vote on the item (to vote again, differently)."""
        try:
            return self._call(m.RETRACT_VOTE, m.retract(item_type, item_id))
        except RecordedEarlier as earlier:
            return RetractVoteResponse(
                status="success", message=f"Vote retracted (by an earlier attempt: {earlier.error.message})"
            )

    def get_vote_counts(self, item_type: str, item_id: str) -> GetVoteCountsResponse:
        return self._call(m.GET_VOTE_COUNTS, m.counts(item_type, item_id))

    def list_reviews(
        self, item_type: str, item_id: str, *, page_size: int = 0, page_token: str = ""
    ) -> ListReviewsResponse:
        request = m.ListReviewsRequest(item_type=item_type, item_id=item_id, page_size=page_size, page_token=page_token)
        return self._call(m.LIST_REVIEWS, request)

    def iter_reviews(
        self, item_type: str, item_id: str, *, limit: int | None = None, page_size: int = m.MAX_PAGE_SIZE
    ) -> Iterator[Vote]:
        """Votes on the item with a comment or rating, newest first."""
        request = m.ListReviewsRequest(item_type=item_type, item_id=item_id, page_size=page_size)
        return self._pages(m.LIST_REVIEWS, request, lambda page: page.votes, limit)

    def list_agent_votes(
        self, agent_id: str | None = None, *, page_size: int = 0, page_token: str = ""
    ) -> ListAgentVotesResponse:
        request = m.ListAgentVotesRequest(agent_id=self._me(agent_id), page_size=page_size, page_token=page_token)
        return self._call(m.LIST_AGENT_VOTES, request)

    def iter_agent_votes(
        self, agent_id: str | None = None, *, limit: int | None = None, page_size: int = m.MAX_PAGE_SIZE
    ) -> Iterator[Vote]:
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
    ) -> VoteWatch:
        """Live votes and retractions (optionally of one item), as an iterator
        that reconnects when the stream drops and resumes after the last
        event it yielded (see aimusicstore_client.watch). `on_gap` is called,
        and `watch.gaps` grows, when events may have been missed. It gives up
        (raising the last error) after `max_failures` failed attempts in a
        row (default: never)."""
        state = WatchState(item_type=item_type, item_id=item_id, last_event_id=after_event_id, on_gap=on_gap)
        return VoteWatch(self, state, max_failures)

    # -- catalog ---------------------------------------------------------------

    def create_song(self, title: str, artist: str, platform: str, **fields: Any) -> Song:
        """Submits a song (any agent). Optional fields: id, platform_url,
        genre, mood, tempo. Not retried unless the gateway refused it."""
        return self._call(m.CREATE_SONG, m.song(title, artist, platform, **fields))

    def get_song(self, song_id: str) -> Song:
        return self._call(m.GET_SONG, m.GetSongRequest(song_id=song_id))

    def list_songs(
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
        return self._call(m.LIST_SONGS, request)

    def iter_songs(
        self,
        *,
        q: str = "",
        platform: str = "",
        genre: str = "",
        mood: str = "",
        limit: int | None = None,
        page_size: int = m.MAX_PAGE_SIZE,
    ) -> Iterator[Song]:
        """Songs, newest first, filtered, page after page."""
        request = m.ListSongsRequest(q=q, platform=platform, genre=genre, mood=mood, page_size=page_size)
        return self._pages(m.LIST_SONGS, request, lambda page: page.songs, limit)

    def search_songs(
        self, q: str, *, limit: int = m.DEFAULT_SEARCH_LIMIT, platform: str = "", genre: str = "", mood: str = ""
    ) -> list[Song]:
        """Songs whose title or artist matches q (filters: platform, genre, mood)."""
        return list(self.iter_songs(q=q, limit=limit, platform=platform, genre=genre, mood=mood))

    def delete_song(self, song_id: str) -> None:
        """Admin: deletes a song; its votes leave every count and chart."""
        self._call(m.DELETE_SONG, m.DeleteSongRequest(song_id=song_id))

    def create_tool(self, name: str, **fields: Any) -> Tool:
        """Admin: adds a tool. Optional fields: id, website, affiliate_link,
        commission_rate, category, features, pricing (a dict)."""
        return self._call(m.CREATE_TOOL, m.tool(name, **fields))

    def get_tool(self, tool_id: str) -> Tool:
        return self._call(m.GET_TOOL, m.GetToolRequest(tool_id=tool_id))

    def list_tools(
        self, *, q: str = "", category: str = "", page_size: int = 0, page_token: str = ""
    ) -> ListToolsResponse:
        request = m.ListToolsRequest(q=q, category=category, page_size=page_size, page_token=page_token)
        return self._call(m.LIST_TOOLS, request)

    def iter_tools(
        self, *, q: str = "", category: str = "", limit: int | None = None, page_size: int = m.MAX_PAGE_SIZE
    ) -> Iterator[Tool]:
        request = m.ListToolsRequest(q=q, category=category, page_size=page_size)
        return self._pages(m.LIST_TOOLS, request, lambda page: page.tools, limit)

    def search_tools(self, q: str, *, limit: int = m.DEFAULT_SEARCH_LIMIT, category: str = "") -> list[Tool]:
        """Tools whose name matches q."""
        return list(self.iter_tools(q=q, category=category, limit=limit))

    def delete_tool(self, tool_id: str) -> None:
        """Admin: deletes a tool."""
        self._call(m.DELETE_TOOL, m.DeleteToolRequest(tool_id=tool_id))

    # -- rankings --------------------------------------------------------------

    def get_trending(
        self, *, limit: int = 0, genre: str = "", platform: str = "", category: str = ""
    ) -> GetTrendingResponse:
        """Trending songs and tools (limit default 10, at most 50)."""
        request = m.GetTrendingRequest(limit=limit, genre=genre, platform=platform, category=category)
        return self._call(m.GET_TRENDING, request)

    def get_chart(
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
        return self._call(m.GET_TOP_CHART, request)

    def get_history(self, item_type: str, item_id: str, *, days: int = 0) -> GetItemHistoryResponse:
        """An item's daily chart points, oldest first (days default 30)."""
        return self._call(m.GET_ITEM_HISTORY, m.history(item_type, item_id, days))


class VoteWatch(Iterator[WatchVotesResponse]):
    """The iterator watch_votes() returns. Iterate it for events; it
    reconnects by itself. Attributes: `last_event_id`, `gaps` (FeedGap list),
    `missed` (0, or None when unknown events were missed), `resumed`,
    `connections`; `connected` is set while a stream is open. close() (or a
    `with` block) ends it from any thread."""

    def __init__(self, client: Client, state: WatchState, max_failures: int | None) -> None:
        self._client = client
        self.state = state
        self.max_failures = max_failures
        self.connected = threading.Event()
        self._closed = threading.Event()
        self._call: Any = None
        self._events = self._run()

    def __enter__(self) -> VoteWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __next__(self) -> WatchVotesResponse:
        return next(self._events)

    def close(self) -> None:
        self._closed.set()
        call = self._call
        if call is not None:
            call.cancel()

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

    def _run(self) -> Iterator[WatchVotesResponse]:
        client, state = self._client, self.state
        stream = client._channel.unary_stream(
            m.WATCH_VOTES.path,
            request_serializer=_serialize,
            response_deserializer=WatchVotesResponse.FromString,
        )
        while not self._closed.is_set():
            request = WatchVotesRequest(
                item_type=state.item_type, item_id=state.item_id, after_event_id=state.after_event_id()
            )
            try:
                self._call = call = stream(request, metadata=client._metadata())
                if self._closed.is_set():
                    call.cancel()
                call.initial_metadata()  # blocks until the service has subscribed us
                if not call.done():  # type: ignore[attr-defined]  # a grpc.Future too
                    state.opened()
                    self.connected.set()
                for event in call:
                    state.saw(event.event_id)
                    yield event
                error: AimusicstoreError = Unavailable("the stream ended", grpc.StatusCode.UNAVAILABLE)
            except grpc.RpcError as rpc_error:
                error = from_rpc_error(rpc_error)
            finally:
                self.connected.clear()
            if self._closed.is_set():
                return
            if not state.dropped(error) or (self.max_failures is not None and state.failures > self.max_failures):
                raise error
            wait = client.retry.backoff(min(state.failures, 16), error.retry_after)
            self._closed.wait(wait)
