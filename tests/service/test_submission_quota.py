"""The daily song-submission quota per agent, by tier, in the ranking service
run in-process (its peer, the reputation service, too): counted in
PostgreSQL with each stored song, exact under concurrency, refused with
RESOURCE_EXHAUSTED naming the tier, the limit and the reset."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
import psycopg
import pytest

from aimusicstore.ranking.v1 import catalog_pb2, catalog_service_pb2, catalog_service_pb2_grpc
from aimusicstore.reputation.v1 import agent_pb2, agent_service_pb2, agent_service_pb2_grpc
from devstack.stack import Stack
from tests.service.conftest import ADMIN, channel, in_process, target_env, unique

pytestmark = pytest.mark.service

QUOTA_FREE = 2
QUOTA_PRO = 3
Metadata = tuple[tuple[str, str], ...]


@dataclass
class Services:
    catalog: catalog_service_pb2_grpc.CatalogServiceStub
    agents: agent_service_pb2_grpc.AgentServiceStub
    database_url: str

    async def agent(self, tier: str = "free") -> tuple[str, Metadata]:
        agent_id = unique("submitter")
        reply = await self.agents.RegisterAgent(
            agent_service_pb2.RegisterAgentRequest(agent=agent_pb2.Agent(id=agent_id)), timeout=5
        )
        if tier != "free":
            await self.agents.UpdateAgent(
                agent_service_pb2.UpdateAgentRequest(agent_id=agent_id, tier=tier), metadata=ADMIN, timeout=5
            )
        return agent_id, (("authorization", f"Bearer {reply.api_key}"),)

    async def submit(self, key: Metadata, song_id: str | None = None) -> catalog_pb2.Song:
        song = catalog_pb2.Song(id=song_id or unique("song"), title="Paper Moon", artist="Model Q", platform="udio")
        return await self.catalog.CreateSong(catalog_service_pb2.CreateSongRequest(song=song), metadata=key, timeout=5)

    def counted(self, agent_id: str) -> int | None:
        """The agent's count for today in the ranking schema."""
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(
                "SELECT used FROM ranking.daily_submissions WHERE agent_id = %s AND day = %s",
                (agent_id, datetime.now(UTC).date()),
            ).fetchone()
        return None if row is None else int(row[0])


@pytest.fixture(scope="module")
async def services(backing: Stack) -> AsyncIterator[Services]:
    env = {"AIMUSICSTORE_SONG_QUOTA_FREE": str(QUOTA_FREE), "AIMUSICSTORE_SONG_QUOTA_PRO": str(QUOTA_PRO)}
    async with (
        in_process(backing, "reputation") as reputation,
        in_process(backing, "ranking", **target_env(reputation=reputation), **env) as ranking,
        channel(ranking) as catalog,
        channel(reputation) as agents,
    ):
        yield Services(
            catalog_service_pb2_grpc.CatalogServiceStub(catalog),
            agent_service_pb2_grpc.AgentServiceStub(agents),
            backing.database_url or "",
        )


async def test_a_free_agent_past_its_quota_is_refused_with_the_tier_limit_and_reset(services: Services) -> None:
    agent_id, key = await services.agent()
    for _ in range(QUOTA_FREE):
        assert (await services.submit(key)).submitted_by == agent_id
    refused_id = unique("song")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await services.submit(key, refused_id)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = refused.value.details() or ""
    assert details.startswith(f"daily song submission quota of {QUOTA_FREE} for the free tier is used up; ")
    tomorrow = datetime.now(UTC).date().toordinal() + 1
    assert f"it resets at {datetime.fromordinal(tomorrow).strftime('%Y-%m-%d')}T00:00:00Z (in " in details
    # When to come back, as metadata (through the gateway: Retry-After).
    retry_after = dict(refused.value.trailing_metadata() or ())["retry-after"]
    assert 0 < int(retry_after) <= 86400
    # Neither stored nor counted.
    assert services.counted(agent_id) == QUOTA_FREE
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await services.catalog.GetSong(catalog_service_pb2.GetSongRequest(song_id=refused_id), timeout=5)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_the_quota_is_exact_under_concurrency(services: Services) -> None:
    agent_id, key = await services.agent("pro")
    results = await asyncio.gather(*(services.submit(key) for _ in range(12)), return_exceptions=True)
    stored = [r for r in results if isinstance(r, catalog_pb2.Song)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(stored) == QUOTA_PRO and len(refused) == 12 - QUOTA_PRO, results
    assert {r.code() for r in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert "for the pro tier" in (refused[0].details() or "")
    assert services.counted(agent_id) == QUOTA_PRO


async def test_a_submission_that_fails_is_not_counted(services: Services) -> None:
    agent_id, key = await services.agent()
    taken = (await services.submit(key)).id
    with pytest.raises(grpc.aio.AioRpcError) as duplicate:
        await services.submit(key, taken)
    assert duplicate.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert services.counted(agent_id) == 1
    await services.submit(key)  # the second of two


async def test_enterprise_agents_and_the_admin_key_are_unlimited(services: Services) -> None:
    agent_id, key = await services.agent("enterprise")
    for _ in range(QUOTA_PRO + 2):
        await services.submit(key)
        await services.submit(ADMIN)
    assert services.counted(agent_id) == QUOTA_PRO + 2
    assert services.counted("admin") is None
