"""The vote service's calls to other services: the catalog (cached), agents and moderation."""

from __future__ import annotations

import logging

import grpc
from redis.asyncio import Redis

from aimusicstore.ranking.v1 import catalog_service_pb2 as catalog_pb
from aimusicstore.ranking.v1 import catalog_service_pb2_grpc
from aimusicstore.reputation.v1 import (
    agent_service_pb2,
    agent_service_pb2_grpc,
    moderation_service_pb2,
    moderation_service_pb2_grpc,
)
from services.common.caches import RevalidatingCache
from services.common.channels import peer_unavailable
from services.common.errors import NotFound
from services.common.pubsub import CATALOG_CHANNEL, subscribe_forever


class CatalogClient:
    def __init__(self, channel: grpc.aio.Channel, cache_ttl_s: float, cache_grace_s: float) -> None:
        self._stub = catalog_service_pb2_grpc.CatalogServiceStub(channel)
        # Only existing items are cached: a new item is votable at once, and
        # a deleted one stops being votable at once (pub/sub). Past its TTL
        # an entry is still served while one background call re-checks it,
        # so a vote never waits on the catalog for an item it knows; should
        # the deletion message be lost, the re-check finds the item gone.
        self._known: RevalidatingCache[tuple[str, str], bool] = RevalidatingCache(
            "catalog item", maxsize=200_000, ttl_s=cache_ttl_s, grace_s=cache_grace_s
        )

    async def require_item(self, item_type: str, item_id: str) -> None:
        if not await self._known.get((item_type, item_id), lambda: self._exists(item_type, item_id)):
            raise NotFound(f"{item_type} {item_id!r} does not exist")

    async def _exists(self, item_type: str, item_id: str) -> bool | None:
        """True, or None when the catalog has no such item (not cached)."""
        try:
            if item_type == "song":
                await self._stub.GetSong(catalog_pb.GetSongRequest(song_id=item_id))
            else:
                await self._stub.GetTool(catalog_pb.GetToolRequest(tool_id=item_id))
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise peer_unavailable("check the item", "catalog service", exc) from exc
        return True

    def forget(self, item_type: str, item_id: str) -> None:
        self._known.forget((item_type, item_id))

    async def follow_deletions(self, redis: Redis) -> None:
        """Stops treating deleted items as votable as soon as the catalog says so."""

        async def handle(message: str) -> None:
            item_type, _, item_id = message.partition(":")
            self.forget(item_type, item_id)

        # (Re)subscribed: deletions may have been missed meanwhile, so every
        # cached item is re-checked on its next use.
        await subscribe_forever(redis, CATALOG_CHANNEL, handle, on_subscribed=self._known.expire_all)


log = logging.getLogger("vote.clients")


class AgentClient:
    """Asks the reputation service, which owns agents, whether one exists."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = agent_service_pb2_grpc.AgentServiceStub(channel)

    async def require_agent(self, agent_id: str) -> None:
        try:
            await self._stub.GetAgent(agent_service_pb2.GetAgentRequest(agent_id=agent_id))
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(f"agent {agent_id!r} does not exist") from None
            raise peer_unavailable("check the agent", "reputation service", exc) from exc


class ModerationClient:
    """Reports suspicious agents to the reputation service, which owns the flag."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = moderation_service_pb2_grpc.ModerationServiceStub(channel)

    async def flag(self, agent_id: str, reason: str) -> bool:
        """True once the reputation service answered (flagged, or already was)."""
        try:
            await self._stub.FlagAgent(moderation_service_pb2.FlagAgentRequest(agent_id=agent_id, reason=reason))
            log.info("flagged agent %s: %s", agent_id, reason)
            return True
        except grpc.aio.AioRpcError as exc:
            # A rule broken by a vote: the agent's next vote reports it again;
            # a ring: the next pass finds it again.
            log.warning("could not flag agent %s (%s); will retry", agent_id, exc.code().name)
            return False
