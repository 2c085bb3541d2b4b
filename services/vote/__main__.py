"""Runs the vote service: `python -m services.vote`."""

from __future__ import annotations

import grpc

from aimusicstore.vote.v1 import vote_service_pb2, vote_service_pb2_grpc
from services.common import stream_progress
from services.common.auth import Authenticator, remote_key_verifier
from services.common.channels import internal_channel
from services.common.config import VoteSettings
from services.common.jobs import every
from services.common.server import Registration, Resources, main
from services.vote import metrics
from services.vote.clients import AgentClient, CatalogClient, ModerationClient
from services.vote.jobs import relay_forever
from services.vote.live import VoteFeed
from services.vote.rules import Quotas, abuse_rules, windows_of
from services.vote.servicer import VoteService
from services.vote.store.admission import QuotaCounters, RuleWindows
from services.vote.store.counts import CountsCache
from services.vote.store.outbox import OutboxRelay
from services.vote.store.votes import VotesTable
from services.vote.voting import VoteStores, Voting

OUTBOX_WATCH_INTERVAL_S = 5.0
RETENTION_INTERVAL_S = 10.0


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
    voting = Voting(
        VoteStores(votes_table, QuotaCounters(votes_table, hot_path, resources.redis_at_most_once), windows, counts),
        catalog,
        AgentClient(reputation),
        ModerationClient(reputation),
        Quotas(free=settings.quota_free, pro=settings.quota_pro),
        rules,
    )
    auth = Authenticator(
        settings.admin_key,
        remote_key_verifier(reputation),
        settings.auth_cache_ttl_s,
        # Retractions check a cached key's revocation marker; votes check it
        # in their admission script instead (check_revoked=False).
        revocations=resources.redis,
        cache_grace_s=settings.cache_grace_s,
        # While Redis is away votes cannot read revocation markers: keys are
        # then re-verified with the reputation service, once a second per key.
        redis_away=lambda: resources.redis_breaker.is_open,
    )
    feed = VoteFeed(resources.redis, votes_table)
    vote_service_pb2_grpc.add_VoteServiceServicer_to_server(VoteService(voting, auth, feed), server)

    async def relay_outbox() -> None:
        await relay_forever(relay)

    async def retain_by_progress() -> None:
        # The stream is trimmed, and relayed outbox rows forgotten, only
        # below what every consumer group has applied.
        async def one_pass() -> int:
            needed = await stream_progress.trim_consumed(resources.redis, settings.stream_max_len)
            return await relay.forget_durable_events(needed)

        await every(RETENTION_INTERVAL_S, "stream and outbox retention", one_pass, run_first=False)

    async def prune_daily_usage() -> None:
        await every(3600, "prune daily usage", votes_table.prune_daily_usage)

    async def watch_outbox() -> None:
        # The outbox backlog is what an operator sees first when Redis is
        # away: votes are durable, their events wait here.
        async def measure() -> None:
            waiting, oldest_s = await relay.outbox_backlog()
            metrics.OUTBOX_UNRELAYED.set(waiting)
            metrics.OUTBOX_OLDEST_UNRELAYED_SECONDS.set(oldest_s)

        await every(OUTBOX_WATCH_INTERVAL_S, "outbox backlog", measure)

    async def reconcile_counts() -> None:
        # Rewrites cached counts that drifted from the votes table (a vote
        # acknowledged while Redis was away, a Redis restart...).
        # Each pass costs about one page, whatever the number of cached items.
        async def one_pass() -> int:
            return await counts.reconcile(settings.reconcile_page_size)

        await every(settings.reconcile_interval_s, "count reconciliation", one_pass, run_first=False)

    async def follow_auth_changes() -> None:
        # An admin clearing a flag forgives the votes that broke a rule: their
        # windows are forgotten, or the agent's next vote would flag it again.
        await auth.listen(resources.redis, on_flag_cleared=windows.forget)

    async def follow_catalog_deletions() -> None:
        await catalog.follow_deletions(resources.redis)

    return Registration(
        services=[vote_service_pb2.DESCRIPTOR.services_by_name["VoteService"].full_name],
        background=[
            relay_outbox,
            retain_by_progress,
            watch_outbox,
            prune_daily_usage,
            reconcile_counts,
            follow_auth_changes,
            follow_catalog_deletions,
            feed.run,
        ],
        on_close=[voting.batcher.close, reputation.close, ranking.close],
    )


if __name__ == "__main__":
    main("vote", setup)
