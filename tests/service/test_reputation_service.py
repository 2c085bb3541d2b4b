"""The reputation service on its own, over gRPC: agents, keys, tiers, the
leaderboard, standing and weights, the agent list, and the internal methods
only our services may call."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

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
from services.common import events
from services.common.config import to_sqlalchemy_url
from services.common.credentials import CLIENT_ADDRESS_KEY, SERVICE_CREDENTIAL_KEY, service_credential
from services.common.pubsub import AUTH_CHANNEL
from services.common.server import RunningService
from services.common.weights import CHART_WEIGHTS_KEY, WEIGHTS_KEY
from tests.backing import ADMIN_KEY
from tests.service.conftest import ADMIN, channel, in_process, unique

pytestmark = pytest.mark.service
INTERNAL = ((SERVICE_CREDENTIAL_KEY, service_credential(ADMIN_KEY)),)
_event_ids = itertools.count(10**15 + uuid.uuid4().int % 10**9)
T = TypeVar("T")


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


# standing, weights and the agent list


async def get_agent(agents: agent_service_pb2_grpc.AgentServiceStub, agent_id: str) -> agent_pb2.Agent:
    return await agents.GetAgent(agent_service_pb2.GetAgentRequest(agent_id=agent_id), timeout=5)


async def eventually(read: Callable[[], Awaitable[T]], ok: Callable[[T], bool], timeout_s: float = 10) -> T:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = await read()
        if ok(value) or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.05)


async def weights_of(redis: Redis, agent_id: str) -> tuple[float, float]:
    """(chart weight, trending weight) as published; nan when absent."""
    chart, trending = await redis.hget(CHART_WEIGHTS_KEY, agent_id), await redis.hget(WEIGHTS_KEY, agent_id)
    return float(chart or "nan"), float(trending or "nan")


@pytest.fixture(scope="module")
async def redis(backing: Stack) -> AsyncIterator[Redis]:
    client = Redis.from_url(backing.redis_url or "", decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def graduating(backing: Stack) -> AsyncIterator[tuple]:
    """A second reputation service whose periodic pass runs every 0.2 s and
    whose rule has no flag cooldown (the rule otherwise at its defaults).
    Only for the test that asks for it: its pass would trust other tests' agents."""
    async with (
        in_process(
            backing,
            "reputation",
            AIMUSICSTORE_REPUTATION_RECOMPUTE_INTERVAL_S="0.2",
            AIMUSICSTORE_TRUST_FLAG_COOLDOWN_DAYS="0",
        ) as service,
        channel(service) as ch,
    ):
        yield agent_service_pb2_grpc.AgentServiceStub(ch), moderation_service_pb2_grpc.ModerationServiceStub(ch)


async def age_with_votes(backing: Stack, redis: Redis, agent_id: str, days: int = 10) -> None:
    """Makes the agent `days` old with 21 votes on three past UTC days (the
    default rule asks for 7 days, 20 votes, 3 days): the account's creation
    is moved back in the database, the votes arrive as vote events."""
    now = datetime.now(UTC)
    for n in range(21):
        at = (now - timedelta(days=1 + n % 3)).isoformat()
        event = {"event_id": next(_event_ids), "type": "vote", "agent_id": agent_id, "item_type": "song",
                 "item_id": f"{agent_id}-song-{n}", "direction": 1, "voted_at": at, "occurred_at": at}  # fmt: skip
        await redis.xadd(events.VOTE_EVENTS_STREAM, {events.EVENT_FIELD: json.dumps(event)})
    engine = create_async_engine(to_sqlalchemy_url(backing.database_url or ""))
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE reputation.agents SET created_at = now() - make_interval(days => :days) WHERE id = :id"),
                {"days": days, "id": agent_id},
            )
    finally:
        await engine.dispose()


async def test_a_new_agent_is_on_probation_with_the_probation_weight(stubs: tuple) -> None:
    agents, _, _ = stubs
    agent_id = unique("new")
    reply = await agents.RegisterAgent(
        agent_service_pb2.RegisterAgentRequest(agent=agent_pb2.Agent(id=agent_id)), timeout=5
    )
    assert (reply.agent.standing, reply.agent.weight) == ("probation", 0.25)
    agent = await get_agent(agents, agent_id)
    assert (agent.standing, agent.weight) == ("probation", 0.25)


async def test_concurrent_registrations_from_one_address_are_counted_one_after_the_other(
    stubs: tuple, redis: Redis
) -> None:
    agents, _, _ = stubs
    # A /64 of the documentation block no other run shares; hosts in it are one address.
    block = f"2001:db8:{uuid.uuid4().int % 65536:x}:{uuid.uuid4().int % 65536:x}"
    ids = [unique("crowd") for _ in range(8)]

    async def one(n: int, agent_id: str) -> agent_pb2.Agent:
        metadata = ((CLIENT_ADDRESS_KEY, f"{block}::{n + 1:x}"),)
        request = agent_service_pb2.RegisterAgentRequest(agent=agent_pb2.Agent(id=agent_id))
        return (await agents.RegisterAgent(request, metadata=metadata, timeout=5)).agent

    registered = await asyncio.gather(*(one(n, agent_id) for n, agent_id in enumerate(ids)))
    # Each the n-th of its address, once each, whatever order they ran in;
    # the first 3 (the default) weigh the full probation weight, the n-th 3/n of it.
    weights = sorted((a.weight for a in registered), reverse=True)
    assert weights == pytest.approx([0.25] * 3 + [0.25 * 3 / n for n in range(4, 9)], rel=1e-6)
    # Published before the key was handed out, for the crowded ones only.
    published = await redis.hmget(CHART_WEIGHTS_KEY, ids)
    assert sorted((float(w) for w in published if w is not None), reverse=True) == pytest.approx(weights[3:])
    # The count goes on; a call that did not come through the gateway is not counted.
    assert (await one(0, unique("crowd"))).weight == pytest.approx(0.25 * 3 / 9)
    request = agent_service_pb2.RegisterAgentRequest(agent=agent_pb2.Agent(id=unique("direct")))
    assert (await agents.RegisterAgent(request, timeout=5)).agent.weight == 0.25


async def test_an_aged_active_agent_becomes_trusted_on_the_pass_and_is_announced(
    backing: Stack, graduating: tuple, redis: Redis
) -> None:
    agents, _ = graduating
    agent_id = unique("steady")
    await register(agents, agent_id)
    async with redis.pubsub() as announcements:
        await announcements.subscribe(AUTH_CHANNEL)
        await age_with_votes(backing, redis, agent_id)
        agent = await eventually(lambda: get_agent(agents, agent_id), lambda a: a.standing == "trusted")
        assert (agent.standing, agent.weight, agent.vote_count) == ("trusted", 1.0, 21)
        heard = await eventually(
            lambda: announcements.get_message(ignore_subscribe_messages=True, timeout=0.2),
            lambda m: m is not None and m["data"] == f"agent:{agent_id}",
        )
        assert heard is not None and heard["data"] == f"agent:{agent_id}"
    chart, trending = await weights_of(redis, agent_id)
    assert chart == 1.0 and trending == pytest.approx(1 + 4 * agent.reputation_score / 1000)


async def test_a_flagged_agent_weighs_zero_and_clearing_restores_the_rules_standing(
    backing: Stack, graduating: tuple, redis: Redis
) -> None:
    agents, moderation = graduating
    agent_id = unique("flagme")
    await register(agents, agent_id)
    await age_with_votes(backing, redis, agent_id)
    await eventually(lambda: get_agent(agents, agent_id), lambda a: a.standing == "trusted")

    request = moderation_service_pb2.FlagAgentRequest(agent_id=agent_id, reason="coordinated voting: group g-7")
    assert (await moderation.FlagAgent(request, metadata=INTERNAL, timeout=5)).newly_flagged
    flagged = await get_agent(agents, agent_id)
    assert (flagged.standing, flagged.weight, flagged.flag_reason) == ("flagged", 0.0, request.reason)
    assert await weights_of(redis, agent_id) == (0.0, 0.0)

    cleared = await agents.UpdateAgent(
        agent_service_pb2.UpdateAgentRequest(agent_id=agent_id, flagged=False), metadata=ADMIN, timeout=5
    )
    # Without a cooldown the rule trusts it again at once.
    assert (cleared.standing, cleared.weight, cleared.flagged) == ("trusted", 1.0, False)
    assert (await weights_of(redis, agent_id))[0] == 1.0


async def test_with_the_default_cooldown_a_cleared_agent_is_back_on_probation(
    backing: Stack, stubs: tuple, redis: Redis
) -> None:
    agents, _, moderation = stubs
    agent_id = unique("cooled")
    await register(agents, agent_id)
    await age_with_votes(backing, redis, agent_id)
    await eventually(lambda: get_agent(agents, agent_id), lambda a: a.vote_count == 21)
    request = moderation_service_pb2.FlagAgentRequest(agent_id=agent_id, reason="a rule")
    await moderation.FlagAgent(request, metadata=INTERNAL, timeout=5)
    cleared = await agents.UpdateAgent(
        agent_service_pb2.UpdateAgentRequest(agent_id=agent_id, flagged=False), metadata=ADMIN, timeout=5
    )
    assert (cleared.standing, cleared.weight) == ("probation", 0.25)
    assert await weights_of(redis, agent_id) == (0.25, pytest.approx(0.25 * (1 + 4 * cleared.reputation_score / 1000)))


async def test_listing_agents_is_for_the_admin(stubs: tuple) -> None:
    agents, _, _ = stubs
    api_key = await register(agents, unique("lister"))
    for flagged in (True, False, None):
        request = agent_service_pb2.ListAgentsRequest(flagged=flagged)
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await agents.ListAgents(request, timeout=5)
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await agents.ListAgents(request, metadata=(("authorization", f"Bearer {api_key}"),), timeout=5)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_the_moderation_queue_lists_flags_newest_first_with_reasons_in_pages(stubs: tuple) -> None:
    agents, _, moderation = stubs
    first, second = unique("queued"), unique("queued")
    for agent_id in (first, second):
        await register(agents, agent_id)
        request = moderation_service_pb2.FlagAgentRequest(agent_id=agent_id, reason=f"coordinated voting: {agent_id}")
        await moderation.FlagAgent(request, metadata=INTERNAL, timeout=5)
    seen: list[agent_pb2.Agent] = []
    token = ""
    while len(seen) < 200:
        page = await agents.ListAgents(
            agent_service_pb2.ListAgentsRequest(flagged=True, page_size=1, page_token=token), metadata=ADMIN, timeout=5
        )
        seen += page.agents
        token = page.next_page_token
        if not token or {first, second} <= {a.id for a in seen}:
            break
    assert all(a.flagged and a.standing == "flagged" and a.weight == 0.0 for a in seen)
    ours = [(a.id, a.flag_reason) for a in seen if a.id in (first, second)]
    assert ours == [(second, f"coordinated voting: {second}"), (first, f"coordinated voting: {first}")]
    newest = await agents.ListAgents(agent_service_pb2.ListAgentsRequest(page_size=2), metadata=ADMIN, timeout=5)
    assert [a.id for a in newest.agents] == [second, first] and newest.next_page_token
    with pytest.raises(grpc.aio.AioRpcError) as other_list:
        await agents.ListAgents(
            agent_service_pb2.ListAgentsRequest(flagged=False, page_token=newest.next_page_token),
            metadata=ADMIN,
            timeout=5,
        )
    assert other_list.value.code() == grpc.StatusCode.INVALID_ARGUMENT
