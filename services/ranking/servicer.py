"""Thin gRPC servicers for the ranking service."""

from __future__ import annotations

from google.protobuf import json_format, struct_pb2

from aimusicstore.ranking.v1 import (
    catalog_pb2,
    catalog_service_pb2_grpc,
    ranking_service_pb2_grpc,
)
from aimusicstore.ranking.v1 import (
    catalog_service_pb2 as pb,
)
from aimusicstore.ranking.v1 import ranking_service_pb2 as ranking_pb
from services.common.auth import Authenticator
from services.common.convert import timestamp
from services.common.grpc_types import Context
from services.ranking.catalog import Catalog
from services.ranking.charts import HistoryPoint
from services.ranking.items import Song, Tool
from services.ranking.rankings.chart_rows import Entry
from services.ranking.rankings.history import History
from services.ranking.rankings.period_charts import Charts
from services.ranking.rankings.trending_lists import Trending


def song_proto(song: Song) -> catalog_pb2.Song:
    return catalog_pb2.Song(
        id=song.id,
        title=song.title,
        artist=song.artist,
        platform=song.platform,
        platform_url=song.platform_url,
        genre=song.genre,
        mood=song.mood,
        tempo=song.tempo,
        submitted_by=song.submitted_by,
        created_at=timestamp(song.created_at),
        up_votes=song.up_votes,
        down_votes=song.down_votes,
        score=song.score,
    )


def tool_proto(tool: Tool) -> catalog_pb2.Tool:
    pricing = struct_pb2.Struct()
    pricing.update(tool.pricing)
    rating = tool.rating_sum / tool.rating_count if tool.rating_count else 0.0
    return catalog_pb2.Tool(
        id=tool.id,
        name=tool.name,
        website=tool.website,
        affiliate_link=tool.affiliate_link,
        commission_rate=tool.commission_rate,
        category=tool.category,
        features=tool.features,
        pricing=pricing,
        created_at=timestamp(tool.created_at),
        up_votes=tool.up_votes,
        down_votes=tool.down_votes,
        score=tool.score,
        rating=round(rating, 3),
        review_count=tool.review_count,
    )


class CatalogService(catalog_service_pb2_grpc.CatalogServiceServicer):
    def __init__(self, catalog: Catalog, auth: Authenticator) -> None:
        self.catalog = catalog
        self.auth = auth

    async def CreateSong(self, request: pb.CreateSongRequest, context: Context) -> catalog_pb2.Song:
        caller = await self.auth.caller(context)
        song = request.song
        fields = {
            "id": song.id,
            "title": song.title,
            "artist": song.artist,
            "platform": song.platform,
            "platform_url": song.platform_url,
            "genre": song.genre,
            "mood": song.mood,
            "tempo": song.tempo if song.HasField("tempo") else None,
        }
        return song_proto(await self.catalog.create_song(caller, fields))

    async def GetSong(self, request: pb.GetSongRequest, context: Context) -> catalog_pb2.Song:
        return song_proto(await self.catalog.get(Song, request.song_id))

    async def ListSongs(self, request: pb.ListSongsRequest, context: Context) -> pb.ListSongsResponse:
        filters = {"platform": request.platform, "genre": request.genre, "mood": request.mood}
        songs, token = await self.catalog.list(Song, filters, request.q, request.page_size, request.page_token)
        return pb.ListSongsResponse(songs=[song_proto(s) for s in songs], next_page_token=token)

    async def DeleteSong(self, request: pb.DeleteSongRequest, context: Context) -> pb.DeleteSongResponse:
        await self.catalog.delete(await self.auth.caller(context), Song, request.song_id)
        return pb.DeleteSongResponse()

    async def CreateTool(self, request: pb.CreateToolRequest, context: Context) -> catalog_pb2.Tool:
        caller = await self.auth.caller(context)
        tool = request.tool
        fields = {
            "id": tool.id,
            "name": tool.name,
            "website": tool.website,
            "affiliate_link": tool.affiliate_link,
            "commission_rate": tool.commission_rate,
            "category": tool.category,
            "features": list(tool.features),
            "pricing": json_format.MessageToDict(tool.pricing),
        }
        return tool_proto(await self.catalog.create_tool(caller, fields))

    async def GetTool(self, request: pb.GetToolRequest, context: Context) -> catalog_pb2.Tool:
        return tool_proto(await self.catalog.get(Tool, request.tool_id))

    async def ListTools(self, request: pb.ListToolsRequest, context: Context) -> pb.ListToolsResponse:
        tools, token = await self.catalog.list(
            Tool, {"category": request.category}, request.q, request.page_size, request.page_token
        )
        return pb.ListToolsResponse(tools=[tool_proto(t) for t in tools], next_page_token=token)

    async def DeleteTool(self, request: pb.DeleteToolRequest, context: Context) -> pb.DeleteToolResponse:
        await self.catalog.delete(await self.auth.caller(context), Tool, request.tool_id)
        return pb.DeleteToolResponse()


def entry_proto(entry: Entry) -> ranking_pb.ChartEntry:
    return ranking_pb.ChartEntry(**entry.__dict__)


def history_point_proto(point: HistoryPoint) -> ranking_pb.HistoryPoint:
    return ranking_pb.HistoryPoint(
        date=point.day.isoformat(),
        rank=point.rank,
        score=point.score,
        up_votes=point.up_votes,
        down_votes=point.down_votes,
    )


class RankingService(ranking_service_pb2_grpc.RankingServiceServicer):
    def __init__(self, trending: Trending, charts: Charts, history: History) -> None:
        self.trending = trending
        self.charts = charts
        self.history = history

    async def GetTrending(
        self, request: ranking_pb.GetTrendingRequest, context: Context
    ) -> ranking_pb.GetTrendingResponse:
        result = await self.trending.lists(request.limit, request.genre, request.platform, request.category)
        return ranking_pb.GetTrendingResponse(
            songs=[entry_proto(e) for e in result.songs],
            tools=[entry_proto(e) for e in result.tools],
            updated_at=timestamp(result.updated_at),
        )

    async def GetTopChart(
        self, request: ranking_pb.GetTopChartRequest, context: Context
    ) -> ranking_pb.GetTopChartResponse:
        result = await self.charts.top_chart(
            request.period,
            request.date,
            request.item_type,
            request.limit,
            request.sort,
            request.genre,
            request.platform,
        )
        return ranking_pb.GetTopChartResponse(
            period=result.period,
            date=result.date,
            item_type=result.item_type,
            entries=[entry_proto(e) for e in result.entries],
            updated_at=timestamp(result.updated_at),
        )

    async def GetItemHistory(
        self, request: ranking_pb.GetItemHistoryRequest, context: Context
    ) -> ranking_pb.GetItemHistoryResponse:
        result = await self.history.item_history(request.collection, request.item_id, request.days)
        return ranking_pb.GetItemHistoryResponse(
            item_type=result.item_type,
            item_id=result.item_id,
            points=[history_point_proto(p) for p in result.points],
        )
