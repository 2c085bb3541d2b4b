"""Runs the vote service: `python -m services.vote`."""

from __future__ import annotations

from functools import partial

import grpc

from aimusicstore.vote.v1 import (
    vote_ledger_service_pb2,
    vote_ledger_service_pb2_grpc,
    vote_service_pb2,
    vote_service_pb2_grpc,
)
from services.common.auth import Authenticator, remote_key_verifier
from services.common.channels import internal_channel
from services.common.config import VoteSettings
from services.common.credentials import service_credential
from services.common.server import Registration, Resources, main
from services.vote import jobs
from services.vote.clients import AgentClient, CatalogClient, ModerationClient
from services.vote.ledger import VoteLedger, VoteLedgerService
from services.vote.live import VoteFeed
from services.vote.ports import VoteStores
from services.vote.ring_watch import RingWatch
from services.vote.rings import RingRules
from services.vote.rules import Quotas, VotePace, abuse_rules, windows_of
from services.vote.servicer import StreamLimits, VoteService
from services.vote.store.admission import QuotaCounters, RuleWindows
from services.vote.store.counts import CountsCache
from services.vote.store.outbox import OutboxRelay
from services.vote.store.votes import VotesTable
from services.vote.voting import Voting


async def setup(server: grpc.aio.Server, resources: Resources[VoteSettings]) -> Registration:
    settings = resources.settings
    reputation = internal_channel(settings, "reputation")
    ranking = internal_channel(settings, "ranking")
    redis, hot_path = resources.redis, resources.redis_hot_path or resources.redis_at_most_once
    rules = abuse_rules(settings)
    votes_table = VotesTable(resources.engine)
    counts = CountsCache(votes_table, redis, hot_path)
    windows = RuleWindows(redis, hot_path, windows_of(rules))
    relay = OutboxRelay(resources.engine, resources.redis_at_most_once)
    catalog = CatalogClient(ranking, settings.item_cache_ttl_s, settings.cache_grace_s)
    moderation = ModerationClient(reputation)
    voting = Voting(
        VoteStores(votes_table, QuotaCounters(votes_table, hot_path, resources.redis_at_most_once), windows, counts),
        catalog,
        AgentClient(reputation),
        moderation,
        Quotas(free=settings.quota_free, pro=settings.quota_pro),
        rules,
        pace=VotePace(settings.bulk_votes_per_s, settings.bulk_votes_burst),
        batches_in_flight=settings.vote_batches_in_flight,
        max_queued_votes=settings.vote_queue_max,
    )
    auth = Authenticator(
        settings.admin_key,
        remote_key_verifier(reputation),
        settings.auth_cache_ttl_s,
        # Retractions check a cached key's revocation marker; votes check it
        # in their admission script instead (check_revoked=False).
        revocations=redis,
        cache_grace_s=settings.cache_grace_s,
        # While Redis is away votes cannot read revocation markers: keys are
        # then re-verified with the reputation service, once a second per key.
        redis_away=lambda: resources.redis_breaker.is_open,
    )
    rings = RingWatch(
        votes_table,
        moderation,
        RingRules.from_settings(settings),
        lookback_s=settings.ring_lookback_s,
        max_votes=settings.ring_max_votes,
    )
    feed = VoteFeed(redis, votes_table, settings.watch_resume_max_events)
    service = VoteService(
        voting,
        auth,
        feed,
        batch_max_votes=settings.batch_max_votes,
        stream=StreamLimits(in_flight=settings.stream_votes_in_flight, idle_s=settings.stream_idle_s),
    )
    vote_service_pb2_grpc.add_VoteServiceServicer_to_server(service, server)
    # Internal: the consumers' reconciliation reads the votes table's truth here.
    vote_ledger_service_pb2_grpc.add_VoteLedgerServiceServicer_to_server(
        VoteLedgerService(VoteLedger(resources.engine), service_credential(settings.admin_key, settings.service_token)),
        server,
    )

    async def follow_auth_changes() -> None:
        # An admin clearing a flag forgives the votes that broke a rule: their
        # windows are forgotten, or the agent's next vote would flag it again.
        await auth.listen(redis, on_flag_cleared=windows.forget)

    return Registration(
        services=[
            vote_service_pb2.DESCRIPTOR.services_by_name["VoteService"].full_name,
            vote_ledger_service_pb2.DESCRIPTOR.services_by_name["VoteLedgerService"].full_name,
        ],
        background=[
            partial(jobs.relay_forever, relay),
            partial(jobs.retain_by_progress, redis, relay, settings.stream_max_len, settings.feed_resume_window_s),
            partial(jobs.watch_outbox, relay),
            partial(jobs.prune_daily_usage, votes_table),
            partial(jobs.reconcile_counts, counts, settings.reconcile_interval_s, settings.reconcile_page_size),
            partial(jobs.watch_rings, rings, settings.ring_interval_s),
            follow_auth_changes,
            partial(catalog.follow_deletions, redis),
            feed.run,
        ],
        on_close=[voting.batcher.close, reputation.close, ranking.close],
    )


if __name__ == "__main__":
    main("vote", setup)
