"""The public gRPC methods the clients call, each with its response type and
whether repeating it is safe, and the requests they take (built once here
for both the synchronous and the asynchronous client)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from google.protobuf import struct_pb2
from google.protobuf.message import Message

from aimusicstore_client.retry import Safety
from aimusicstore_client.types import (
    Agent,
    BatchCastVotesRequest,
    BatchCastVotesResponse,
    CastVoteRequest,
    CastVoteResponse,
    CreateSongRequest,
    CreateToolRequest,
    DeleteSongRequest,
    DeleteSongResponse,
    DeleteToolRequest,
    DeleteToolResponse,
    GetAgentRequest,
    GetItemHistoryRequest,
    GetItemHistoryResponse,
    GetSongRequest,
    GetToolRequest,
    GetTopChartRequest,
    GetTopChartResponse,
    GetTrendingRequest,
    GetTrendingResponse,
    GetVoteCountsRequest,
    GetVoteCountsResponse,
    ListAgentsRequest,
    ListAgentsResponse,
    ListAgentVotesRequest,
    ListAgentVotesResponse,
    ListLeaderboardRequest,
    ListLeaderboardResponse,
    ListReviewsRequest,
    ListReviewsResponse,
    ListSongsRequest,
    ListSongsResponse,
    ListToolsRequest,
    ListToolsResponse,
    RegisterAgentRequest,
    RegisterAgentResponse,
    RetractVoteRequest,
    RetractVoteResponse,
    RotateKeyRequest,
    RotateKeyResponse,
    Song,
    Tool,
    UpdateAgentRequest,
    WatchVotesResponse,
)

Resp = TypeVar("Resp", bound=Message)

_VOTE = "/aimusicstore.vote.v1.VoteService/"
_CATALOG = "/aimusicstore.ranking.v1.CatalogService/"
_RANKING = "/aimusicstore.ranking.v1.RankingService/"
_AGENTS = "/aimusicstore.reputation.v1.AgentService/"


@dataclass(frozen=True)
class Method(Generic[Resp]):
    path: str
    response: type[Resp]
    safety: Safety

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


READ, VOTE, RETRACT, NONE = Safety.READ, Safety.VOTE, Safety.RETRACT, Safety.NONE

CAST_VOTE = Method(_VOTE + "CastVote", CastVoteResponse, VOTE)
BATCH_CAST_VOTES = Method(_VOTE + "BatchCastVotes", BatchCastVotesResponse, VOTE)
RETRACT_VOTE = Method(_VOTE + "RetractVote", RetractVoteResponse, RETRACT)
GET_VOTE_COUNTS = Method(_VOTE + "GetVoteCounts", GetVoteCountsResponse, READ)
LIST_REVIEWS = Method(_VOTE + "ListReviews", ListReviewsResponse, READ)
LIST_AGENT_VOTES = Method(_VOTE + "ListAgentVotes", ListAgentVotesResponse, READ)
WATCH_VOTES = Method(_VOTE + "WatchVotes", WatchVotesResponse, READ)

CREATE_SONG = Method(_CATALOG + "CreateSong", Song, NONE)
GET_SONG = Method(_CATALOG + "GetSong", Song, READ)
LIST_SONGS = Method(_CATALOG + "ListSongs", ListSongsResponse, READ)
DELETE_SONG = Method(_CATALOG + "DeleteSong", DeleteSongResponse, NONE)
CREATE_TOOL = Method(_CATALOG + "CreateTool", Tool, NONE)
GET_TOOL = Method(_CATALOG + "GetTool", Tool, READ)
LIST_TOOLS = Method(_CATALOG + "ListTools", ListToolsResponse, READ)
DELETE_TOOL = Method(_CATALOG + "DeleteTool", DeleteToolResponse, NONE)

GET_TRENDING = Method(_RANKING + "GetTrending", GetTrendingResponse, READ)
GET_TOP_CHART = Method(_RANKING + "GetTopChart", GetTopChartResponse, READ)
GET_ITEM_HISTORY = Method(_RANKING + "GetItemHistory", GetItemHistoryResponse, READ)

REGISTER_AGENT = Method(_AGENTS + "RegisterAgent", RegisterAgentResponse, NONE)
GET_AGENT = Method(_AGENTS + "GetAgent", Agent, READ)
UPDATE_AGENT = Method(_AGENTS + "UpdateAgent", Agent, NONE)
ROTATE_KEY = Method(_AGENTS + "RotateKey", RotateKeyResponse, NONE)
LIST_AGENTS = Method(_AGENTS + "ListAgents", ListAgentsResponse, READ)
LIST_LEADERBOARD = Method(_AGENTS + "ListLeaderboard", ListLeaderboardResponse, READ)

# The largest page the service gives: what the iterators ask for.
MAX_PAGE_SIZE = 100
# What the LLM-facing searches return when not told.
DEFAULT_SEARCH_LIMIT = 20


def cast_vote(item_type: str, item_id: str, vote: str, comment: str = "", rating: int | None = None) -> CastVoteRequest:
    request = CastVoteRequest(item_type=item_type, item_id=item_id, vote=vote, comment=comment)
    if rating is not None:
        request.rating = rating
    return request


def batch(votes: Iterable[CastVoteRequest | Mapping[str, Any]]) -> BatchCastVotesRequest:
    return BatchCastVotesRequest(
        votes=[v if isinstance(v, CastVoteRequest) else cast_vote(**dict(v)) for v in votes],
    )


def retract(item_type: str, item_id: str) -> RetractVoteRequest:
    return RetractVoteRequest(item_type=item_type, item_id=item_id)


def counts(item_type: str, item_id: str) -> GetVoteCountsRequest:
    return GetVoteCountsRequest(item_type=item_type, item_id=item_id)


def history(item_type: str, item_id: str, days: int) -> GetItemHistoryRequest:
    # The request names the URL collection ("songs"); callers name the item type.
    collection = {"song": "songs", "tool": "tools"}.get(item_type, item_type)
    return GetItemHistoryRequest(collection=collection, item_id=item_id, days=days)


def song(
    title: str,
    artist: str,
    platform: str,
    *,
    id: str = "",
    platform_url: str = "",
    genre: str = "",
    mood: str = "",
    tempo: int | None = None,
) -> CreateSongRequest:
    new = Song(id=id, title=title, artist=artist, platform=platform, platform_url=platform_url, genre=genre, mood=mood)
    if tempo is not None:
        new.tempo = tempo
    return CreateSongRequest(song=new)


def tool(
    name: str,
    *,
    id: str = "",
    website: str = "",
    affiliate_link: str = "",
    commission_rate: int = 0,
    category: str = "",
    features: Iterable[str] = (),
    pricing: Mapping[str, Any] | None = None,
) -> CreateToolRequest:
    new = Tool(
        id=id,
        name=name,
        website=website,
        affiliate_link=affiliate_link,
        commission_rate=commission_rate,
        category=category,
        features=list(features),
    )
    if pricing is not None:
        structure = struct_pb2.Struct()
        structure.update(dict(pricing))
        new.pricing.CopyFrom(structure)
    return CreateToolRequest(tool=new)


def update_agent(agent_id: str, tier: str | None, flagged: bool | None) -> UpdateAgentRequest:
    request = UpdateAgentRequest(agent_id=agent_id)
    if tier is not None:
        request.tier = tier
    if flagged is not None:
        request.flagged = flagged
    return request


def list_agents(flagged: bool | None, page_size: int, page_token: str) -> ListAgentsRequest:
    request = ListAgentsRequest(page_size=page_size, page_token=page_token)
    if flagged is not None:
        request.flagged = flagged
    return request


__all__ = [
    "DeleteSongRequest",
    "DeleteToolRequest",
    "GetAgentRequest",
    "GetSongRequest",
    "GetToolRequest",
    "GetTopChartRequest",
    "GetTrendingRequest",
    "ListAgentVotesRequest",
    "ListLeaderboardRequest",
    "ListReviewsRequest",
    "ListSongsRequest",
    "ListToolsRequest",
    "RegisterAgentRequest",
    "RotateKeyRequest",
]
