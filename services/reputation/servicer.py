"""Thin gRPC servicers for the reputation service: protos in, domain calls, protos out."""

from __future__ import annotations

from aimusicstore.reputation.v1 import (
    agent_pb2,
    agent_service_pb2_grpc,
    api_key_service_pb2,
    api_key_service_pb2_grpc,
    moderation_service_pb2,
    moderation_service_pb2_grpc,
)
from aimusicstore.reputation.v1 import (
    agent_service_pb2 as pb,
)
from services.common.auth import Authenticator
from services.common.convert import timestamp
from services.common.credentials import require_service
from services.common.errors import NotFound
from services.common.grpc_types import Context
from services.reputation.agents import Agents
from services.reputation.registrations import CLIENT_ADDRESS_HEADER
from services.reputation.store import AgentRow


def client_address(context: Context) -> str | None:
    """Where the gateway saw the call come from (it sets the header over any
    the client sent); None for a call that did not come through it."""
    for key, value in context.invocation_metadata() or ():
        if key == CLIENT_ADDRESS_HEADER and isinstance(value, str):
            return value
    return None


def agent_proto(row: AgentRow, agents: Agents) -> agent_pb2.Agent:
    standing, weight = agents.standing(row)
    return agent_pb2.Agent(
        id=row.id,
        name=row.name,
        tier=row.tier,
        reputation_score=row.reputation_score,
        vote_count=row.vote_count,
        created_at=timestamp(row.created_at),
        last_vote_at=timestamp(row.last_vote_at),
        flagged=row.flagged,
        flag_reason=row.flag_reason,
        standing=standing,
        weight=weight,
    )


class AgentService(agent_service_pb2_grpc.AgentServiceServicer):
    def __init__(self, agents: Agents, auth: Authenticator) -> None:
        self.agents = agents
        self.auth = auth

    async def RegisterAgent(self, request: pb.RegisterAgentRequest, context: Context) -> pb.RegisterAgentResponse:
        agent, api_key = await self.agents.register(request.agent.id, request.agent.name, client_address(context))
        return pb.RegisterAgentResponse(agent=agent_proto(agent, self.agents), api_key=api_key)

    async def GetAgent(self, request: pb.GetAgentRequest, context: Context) -> agent_pb2.Agent:
        return agent_proto(await self.agents.get(request.agent_id), self.agents)

    async def UpdateAgent(self, request: pb.UpdateAgentRequest, context: Context) -> agent_pb2.Agent:
        caller = await self.auth.caller(context)
        agent = await self.agents.update(
            caller,
            request.agent_id,
            tier=request.tier if request.HasField("tier") else None,
            flagged=request.flagged if request.HasField("flagged") else None,
        )
        return agent_proto(agent, self.agents)

    async def RotateKey(self, request: pb.RotateKeyRequest, context: Context) -> pb.RotateKeyResponse:
        caller = await self.auth.caller(context)
        api_key, old_hash = await self.agents.rotate_key(caller, request.agent_id)
        if old_hash is not None:
            self.auth.forget(old_hash)
        return pb.RotateKeyResponse(api_key=api_key)

    async def ListAgents(self, request: pb.ListAgentsRequest, context: Context) -> pb.ListAgentsResponse:
        caller = await self.auth.caller(context)
        rows, next_token = await self.agents.list_agents(
            caller,
            request.flagged if request.HasField("flagged") else None,
            request.page_size,
            request.page_token,
        )
        return pb.ListAgentsResponse(agents=[agent_proto(r, self.agents) for r in rows], next_page_token=next_token)

    async def ListLeaderboard(self, request: pb.ListLeaderboardRequest, context: Context) -> pb.ListLeaderboardResponse:
        rows, next_token = await self.agents.leaderboard(request.page_size, request.page_token)
        return pb.ListLeaderboardResponse(
            agents=[agent_proto(r, self.agents) for r in rows], next_page_token=next_token
        )


class ApiKeyService(api_key_service_pb2_grpc.ApiKeyServiceServicer):
    """Internal: for the other services only (their service credential)."""

    def __init__(self, agents: Agents, service_credential: str) -> None:
        self.agents = agents
        self.service_credential = service_credential

    async def VerifyApiKey(
        self, request: api_key_service_pb2.VerifyApiKeyRequest, context: Context
    ) -> api_key_service_pb2.VerifyApiKeyResponse:
        require_service(context, self.service_credential)
        caller = await self.agents.verify_key(request.api_key)
        if caller is None:
            raise NotFound("no live API key matches")
        return api_key_service_pb2.VerifyApiKeyResponse(
            agent_id=caller.agent_id, tier=caller.tier, flagged=caller.flagged
        )


class ModerationService(moderation_service_pb2_grpc.ModerationServiceServicer):
    """Internal: for the other services only (their service credential)."""

    def __init__(self, agents: Agents, service_credential: str) -> None:
        self.agents = agents
        self.service_credential = service_credential

    async def FlagAgent(
        self, request: moderation_service_pb2.FlagAgentRequest, context: Context
    ) -> moderation_service_pb2.FlagAgentResponse:
        require_service(context, self.service_credential)
        newly = await self.agents.flag(request.agent_id, request.reason)
        return moderation_service_pb2.FlagAgentResponse(newly_flagged=newly)
