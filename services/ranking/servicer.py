"""Thin gRPC servicers for the ranking service."""

from __future__ import annotations

from typing import Any

import grpc
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
from services.ranking.catalog import Catalog
from services.ranking.rankings import Entry, Rankings


def song_proto(row: dict[str, Any]) -> catalog_pb2.Song:
    return catalog_pb2.Song(
        id=row["id"],
        title=row["title"],
        artist=row["artist"],
        platform=row["platform"],
        platform_url=row["platform_url"],
        genre=row["genre"],
        mood=row["mood"],
        tempo=row["tempo"],
        submitted_by=row["submitted_by"],
        created_at=timestamp(row["created_at"]),
        up_votes=row["up_votes"],
        down_votes=row["down_votes"],
        score=row["score"],
    )


def tool_proto(row: dict[str, Any]) -> catalog_pb2.Tool:
    pricing = struct_pb2.Struct()
    pricing.update(row["pricing"])
    rating = row["rating_sum"] / row["rating_count"] if row["rating_count"] else 0.0
    return catalog_pb2.Tool(
        id=row["id"],
        name=row["name"],
        website=row["website"],
        affiliate_link=row["affiliate_link"],
        commission_rate=row["commission_rate"],
        category=row["category"],
        features=row["features"],
        pricing=pricing,
        created_at=timestamp(row["created_at"]),
        up_votes=row["up_votes"],
        down_votes=row["down_votes"],
        score=row["score"],
        rating=round(rating, 3),
        review_count=row["review_count"],
    )


class CatalogService(catalog_service_pb2_grpc.CatalogServiceServicer):
    def __init__(self, catalog: Catalog, auth: Authenticator) -> None:
        self.catalog = catalog
        self.auth = auth

    async def CreateSong(self, request: pb.CreateSongRequest, context: grpc.aio.ServicerContext) -> catalog_pb2.Song:
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

    async def GetSong(self, request: pb.GetSongRequest, context: grpc.aio.ServicerContext) -> catalog_pb2.Song:
        return song_proto(await self.catalog.get("song", request.song_id))

    async def ListSongs(self, request: pb.ListSongsRequest, context: grpc.aio.ServicerContext) -> pb.ListSongsResponse:
        filters = {"platform": request.platform, "genre": request.genre, "mood": request.mood}
        rows, token = await self.catalog.list("song", filters, request.q, request.page_size, request.page_token)
        return pb.ListSongsResponse(songs=[song_proto(r) for r in rows], next_page_token=token)

    async def DeleteSong(
        self, request: pb.DeleteSongRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteSongResponse:
        await self.catalog.delete(await self.auth.caller(context), "song", request.song_id)
        return pb.DeleteSongResponse()

    async def CreateTool(self, request: pb.CreateToolRequest, context: grpc.aio.ServicerContext) -> catalog_pb2.Tool:
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

    async def GetTool(self, request: pb.GetToolRequest, context: grpc.aio.ServicerContext) -> catalog_pb2.Tool:
        return tool_proto(await self.catalog.get("tool", request.tool_id))

    async def ListTools(self, request: pb.ListToolsRequest, context: grpc.aio.ServicerContext) -> pb.ListToolsResponse:
        rows, token = await self.catalog.list(
            "tool", {"category": request.category}, request.q, request.page_size, request.page_token
        )
        return pb.ListToolsResponse(tools=[tool_proto(r) for r in rows], next_page_token=token)

    async def DeleteTool(
        self, request: pb.DeleteToolRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteToolResponse:
        await self.catalog.delete(await self.auth.caller(context), "tool", request.tool_id)
        return pb.DeleteToolResponse()


def entry_proto(entry: Entry) -> ranking_pb.ChartEntry:
    return ranking_pb.ChartEntry(**entry.__dict__)


class RankingService(ranking_service_pb2_grpc.RankingServiceServicer):
    def __init__(self, rankings: Rankings) -> None:
        self.rankings = rankings

    async def GetTrending(
        self, request: ranking_pb.GetTrendingRequest, context: grpc.aio.ServicerContext
    ) -> ranking_pb.GetTrendingResponse:
        result = await self.rankings.trending(request.limit, request.genre, request.platform, request.category)
        return ranking_pb.GetTrendingResponse(
            songs=[entry_proto(e) for e in result["songs"]],
            tools=[entry_proto(e) for e in result["tools"]],
            updated_at=timestamp(result["updated_at"]),
        )

    async def GetTopChart(
        self, request: ranking_pb.GetTopChartRequest, context: grpc.aio.ServicerContext
    ) -> ranking_pb.GetTopChartResponse:
        result = await self.rankings.top_chart(
            request.period,
            request.date,
            request.item_type,
            request.limit,
            request.sort,
            request.genre,
            request.platform,
        )
        return ranking_pb.GetTopChartResponse(
            period=result["period"],
            date=result["date"],
            item_type=result["item_type"],
            entries=[entry_proto(e) for e in result["entries"]],
            updated_at=timestamp(result["updated_at"]),
        )

    async def GetItemHistory(
        self, request: ranking_pb.GetItemHistoryRequest, context: grpc.aio.ServicerContext
    ) -> ranking_pb.GetItemHistoryResponse:
        result = await self.rankings.history(request.collection, request.item_id, request.days)
        return ranking_pb.GetItemHistoryResponse(
            item_type=result["item_type"],
            item_id=result["item_id"],
            points=[ranking_pb.HistoryPoint(**(p | {"date": p["date"].isoformat()})) for p in result["points"]],
        )
