"""The reputation service on its own, over gRPC: agents, keys, tiers, the
leaderboard, and the internal methods only our services may call."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from aimusicstore.reputation.v1 import (
    agent_pb2,
    agent_service_pb2,
    agent_service_pb2_grpc,
    api_key_service_pb2,
    api_key_service_pb2_grpc,
    moderation_service_pb2,
    moderation_service_pb2_grpc,
)
from devstack.stack import Stack
from services.common.credentials import SERVICE_CREDENTIAL_KEY, service_credential
from services.common.server import RunningService
from tests.backing import ADMIN_KEY
from tests.service.conftest import ADMIN, channel, in_process, unique

pytestmark = pytest.mark.service
INTERNAL = ((SERVICE_CREDENTIAL_KEY, service_credential(ADMIN_KEY)),)


@pytest.fixture(scope="module")
async def reputation(backing: Stack) -> AsyncIterator[RunningService]:
    async with in_process(backing, "reputation") as service:
        yield service


@pytest.fixture(scope="module")
async def stubs(reputation: RunningService) -> AsyncIterator[tuple]:
    async with channel(reputation) as ch:
        yield (
            agent_service_pb2_grpc.AgentServiceStub(ch),
            api_key_service_pb2_grpc.ApiKeyServiceStub(ch),
            moderation_service_pb2_grpc.ModerationServiceStub(ch),
        )


async def register(agents: agent_service_pb2_grpc.AgentServiceStub, agent_id: str) -> str:
    reply = await agents.RegisterAgent(
        agent_service_pb2.RegisterAgentRequest(agent=agent_pb2.Agent(id=agent_id, name="Tester")), timeout=5
    )
    assert reply.agent.id == agent_id and reply.agent.tier == "free"
    return reply.api_key


def bad_request_fields(error: grpc.aio.AioRpcError) -> list[str]:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            detail = error_details_pb2.BadRequest()
            status.details[0].Unpack(detail)
            return [v.field for v in detail.field_violations]
    return []


async def test_register_then_verify_the_key_and_read_the_agent(stubs: tuple) -> None:
    agents, keys, _ = stubs
    agent_id = unique("rep")
    api_key = await register(agents, agent_id)
    verified = await keys.VerifyApiKey(
        api_key_service_pb2.VerifyApiKeyRequest(api_key=api_key), metadata=INTERNAL, timeout=5
    )
    assert (verified.agent_id, verified.tier, verified.flagged) == (agent_id, "free", False)
    agent = await agents.GetAgent(agent_service_pb2.GetAgentRequest(agent_id=agent_id), timeout=5)
    assert (agent.name, agent.reputation_score, agent.vote_count) == ("Tester", 0, 0)


async def test_registration_errors_name_the_problem(stubs: tuple) -> None:
    agents, _, _ = stubs
    agent_id = unique("dup")
    await register(agents, agent_id)
    with pytest.raises(grpc.aio.AioRpcError) as taken:
        await register(agents, agent_id)
    assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await register(agents, "not a valid id!")
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(bad.value), "a BadRequest detail names the field"
    with pytest.raises(grpc.aio.AioRpcError) as reserved:
        await register(agents, "Admin")
    assert reserved.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_internal_methods_refuse_callers_without_the_service_credential(stubs: tuple) -> None:
    agents, keys, moderation = stubs
    api_key = await register(agents, unique("int"))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await keys.VerifyApiKey(api_key_service_pb2.VerifyApiKeyRequest(api_key=api_key), timeout=5)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as also:
        await moderation.FlagAgent(moderation_service_pb2.FlagAgentRequest(agent_id="x", reason="y"), timeout=5)
    assert also.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await keys.VerifyApiKey(
            api_key_service_pb2.VerifyApiKeyRequest(api_key="ams_" + "x" * 43), metadata=INTERNAL, timeout=5
        )
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


async def test_flagging_once_and_clearing_by_the_admin(stubs: tuple) -> None:
    agents, _, moderation = stubs
    agent_id = unique("flag")
    await register(agents, agent_id)
    request = moderation_service_pb2.FlagAgentRequest(agent_id=agent_id, reason="more than 10 votes within 10 seconds")
    assert (await moderation.FlagAgent(request, metadata=INTERNAL, timeout=5)).newly_flagged
    assert not (await moderation.FlagAgent(request, metadata=INTERNAL, timeout=5)).newly_flagged
    agent = await agents.GetAgent(agent_service_pb2.GetAgentRequest(agent_id=agent_id), timeout=5)
    assert agent.flagged and agent.flag_reason == request.reason
    cleared = await agents.UpdateAgent(
        agent_service_pb2.UpdateAgentRequest(agent_id=agent_id, flagged=False), metadata=ADMIN, timeout=5
    )
    assert not cleared.flagged and cleared.flag_reason == ""


async def test_tiers_are_the_admins_and_keys_rotate(stubs: tuple) -> None:
    agents, keys, _ = stubs
    agent_id = unique("tier")
    old_key = await register(agents, agent_id)
    own = (("authorization", f"Bearer {old_key}"),)
    with pytest.raises(grpc.aio.AioRpcError) as not_admin:
        await agents.UpdateAgent(
            agent_service_pb2.UpdateAgentRequest(agent_id=agent_id, tier="pro"), metadata=own, timeout=5
        )
    assert not_admin.value.code() == grpc.StatusCode.PERMISSION_DENIED
    upgraded = await agents.UpdateAgent(
        agent_service_pb2.UpdateAgentRequest(agent_id=agent_id, tier="pro"), metadata=ADMIN, timeout=5
    )
    assert upgraded.tier == "pro"
    new_key = (await agents.RotateKey(agent_service_pb2.RotateKeyRequest(agent_id=agent_id), metadata=own)).api_key
    assert new_key != old_key
    for key, found in ((old_key, False), (new_key, True)):
        request = api_key_service_pb2.VerifyApiKeyRequest(api_key=key)
        if found:
            assert (await keys.VerifyApiKey(request, metadata=INTERNAL, timeout=5)).tier == "pro"
        else:
            with pytest.raises(grpc.aio.AioRpcError) as gone:
                await keys.VerifyApiKey(request, metadata=INTERNAL, timeout=5)
            assert gone.value.code() == grpc.StatusCode.NOT_FOUND


async def test_the_leaderboard_pages_with_a_token(stubs: tuple) -> None:
    agents, _, _ = stubs
    for _ in range(3):
        await register(agents, unique("board"))
    first = await agents.ListLeaderboard(agent_service_pb2.ListLeaderboardRequest(page_size=2), timeout=5)
    assert len(first.agents) == 2 and first.next_page_token
    second = await agents.ListLeaderboard(
        agent_service_pb2.ListLeaderboardRequest(page_size=2, page_token=first.next_page_token), timeout=5
    )
    assert {a.id for a in first.agents}.isdisjoint({a.id for a in second.agents})
    with pytest.raises(grpc.aio.AioRpcError) as forged:
        await agents.ListLeaderboard(agent_service_pb2.ListLeaderboardRequest(page_token="forged"), timeout=5)
    assert forged.value.code() == grpc.StatusCode.INVALID_ARGUMENT
