"""Runs the reputation service: `python -m services.reputation`."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import grpc
from prometheus_client import Gauge

from aimusicstore.reputation.v1 import (
    agent_service_pb2,
    agent_service_pb2_grpc,
    api_key_service_pb2,
    api_key_service_pb2_grpc,
    moderation_service_pb2,
    moderation_service_pb2_grpc,
)
from aimusicstore.vote.v1 import vote_ledger_service_pb2_grpc
from services.common import events, stream_progress
from services.common.auth import Authenticator
from services.common.channels import internal_channel
from services.common.config import ReputationSettings
from services.common.credentials import service_credential
from services.common.jobs import every
from services.common.processed_events import prune_processed, prune_tombstones
from services.common.server import Registration, Resources, main
from services.reputation.agents import Agents
from services.reputation.registrations import AddressCounting
from services.reputation.servicer import AgentService, ApiKeyService, ModerationService
from services.reputation.standing import StandingPolicy
from services.reputation.store import AgentStore, Announcements, Standings, VoteProjection, VoteWeights
from services.reputation.store.reconcile import AgentVoteReconciler
from services.reputation.tables import processed_events, vote_tombstones

CONSUMER_GROUP = "reputation"
# How often the flagged-agent gauge is refreshed (one count over the agents table).
FLAGGED_WATCH_INTERVAL_S = 30.0
REVOCATION_RETRY_INTERVAL_S = 1.0
FLAGGED_AGENTS = Gauge("reputation_flagged_agents", "Agents currently flagged (their votes weigh 0 in every ranking)")


async def setup(server: grpc.aio.Server, resources: Resources[ReputationSettings]) -> Registration:
    settings = resources.settings
    agent_store = AgentStore(resources.engine)
    projection = VoteProjection(resources.engine)
    vote = internal_channel(settings, "vote")
    reconciler = AgentVoteReconciler(
        resources.engine,
        vote_ledger_service_pb2_grpc.VoteLedgerServiceStub(vote),
        projection,
        settings.vote_reconcile_page_size,
    )
    announcements = Announcements(resources.engine, resources.redis)
    agents = Agents(
        agent_store,
        projection,
        Standings(resources.engine),
        announcements,
        VoteWeights(resources.redis),
        StandingPolicy.from_settings(settings),
        addresses=AddressCounting.from_settings(settings),
    )
    auth = Authenticator(
        settings.admin_key, agents.verify_key, settings.auth_cache_ttl_s, cache_grace_s=settings.cache_grace_s
    )
    credential = service_credential(settings.admin_key, settings.service_token)
    agent_service_pb2_grpc.add_AgentServiceServicer_to_server(AgentService(agents, auth), server)
    api_key_service_pb2_grpc.add_ApiKeyServiceServicer_to_server(ApiKeyService(agents, credential), server)
    moderation_service_pb2_grpc.add_ModerationServiceServicer_to_server(ModerationService(agents, credential), server)
    return Registration(
        services=[
            agent_service_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name,
            api_key_service_pb2.DESCRIPTOR.services_by_name["ApiKeyService"].full_name,
            moderation_service_pb2.DESCRIPTOR.services_by_name["ModerationService"].full_name,
        ],
        background=background_jobs(resources, agents, agent_store, announcements, auth, reconciler),
        on_close=[vote.close],
    )


def background_jobs(
    resources: Resources[ReputationSettings],
    agents: Agents,
    agent_store: AgentStore,
    announcements: Announcements,
    auth: Authenticator,
    reconciler: AgentVoteReconciler,
) -> list[Callable[[], Coroutine[Any, Any, None]]]:
    settings = resources.settings

    async def apply_vote_events() -> None:
        # Reputation must reflect a vote within 5 s: collect up to 1 s of
        # events per recompute.
        # Never re-sent: see services/ranking/__main__.py.
        await events.consume(
            resources.redis_at_most_once,
            CONSUMER_GROUP,
            settings.consumer_name,
            agents.apply_vote_events,
            batch_size=2000,
            linger_s=1.0,
        )

    async def recompute_reputation() -> None:
        # At start and then periodically: corrects drift, graduates agents
        # from probation, republishes every weight.
        await every(settings.reputation_recompute_interval_s, "reputation recompute", agents.recompute_all)

    async def prune_processed_events() -> None:
        await every(3600, "prune processed events", lambda: prune_processed(resources.engine, processed_events))

    async def prune_vote_tombstones() -> None:
        await every(3600, "prune vote tombstones", lambda: prune_tombstones(resources.engine, vote_tombstones))

    async def watch_consumer_progress() -> None:
        await stream_progress.watch_group(resources.redis, CONSUMER_GROUP, events.dead_letter_stream(CONSUMER_GROUP))

    async def announce_pending_revocations() -> None:
        # A rotation made while Redis was away: its revocation reaches Redis
        # (marker and announcement) as soon as Redis answers again.
        await every(
            REVOCATION_RETRY_INTERVAL_S, "announce pending revocations", announcements.announce_pending_revocations
        )

    async def watch_flagged_agents() -> None:
        async def measure() -> None:
            FLAGGED_AGENTS.set(await agent_store.count_flagged())

        await every(FLAGGED_WATCH_INTERVAL_S, "flagged agents gauge", measure)

    async def reconcile_votes() -> None:
        # Repairs projected votes that drifted from the votes table (events
        # lost for good), a page of agents per pass.
        async def one_pass() -> int:
            repaired, changed = await reconciler.reconcile(agents.clock())
            await agents.reputation_moved(changed)
            return repaired

        await every(settings.vote_reconcile_interval_s, "vote projection reconciliation", one_pass)

    async def follow_auth_changes() -> None:
        await auth.listen(resources.redis)

    return [
        apply_vote_events,
        watch_consumer_progress,
        recompute_reputation,
        announce_pending_revocations,
        watch_flagged_agents,
        follow_auth_changes,
        prune_processed_events,
        prune_vote_tombstones,
        reconcile_votes,
    ]


if __name__ == "__main__":
    main("reputation", setup)
