"""Runs the ranking service: `python -m services.ranking`."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import grpc

from aimusicstore.ranking.v1 import (
    catalog_service_pb2,
    catalog_service_pb2_grpc,
    ranking_service_pb2,
    ranking_service_pb2_grpc,
)
from aimusicstore.vote.v1 import vote_ledger_service_pb2_grpc
from services.common import events, stream_progress
from services.common.auth import Authenticator, remote_key_verifier
from services.common.channels import internal_channel
from services.common.config import RankingSettings
from services.common.jobs import every
from services.common.processed_events import prune_processed, prune_tombstones
from services.common.server import Registration, Resources, main
from services.ranking.catalog import Catalog
from services.ranking.rankings import Rankings
from services.ranking.servicer import CatalogService, RankingService
from services.ranking.store import RankingStores
from services.ranking.store.reconcile import CountReconciler
from services.ranking.store.vote_reconcile import ProjectionReconciler
from services.ranking.submission_quota import SubmissionQuotas
from services.ranking.tables import processed_events, vote_tombstones

CONSUMER_GROUP = "ranking"


async def setup(server: grpc.aio.Server, resources: Resources[RankingSettings]) -> Registration:
    settings = resources.settings
    stores = RankingStores.open(
        resources.engine,
        resources.redis,
        resources.redis_at_most_once,
        resources.redis_hot_path,
        probation_weight=settings.probation_weight,
    )
    rankings = Rankings.over(
        stores.projection,
        stores.trending_sets,
        stores.catalog,
        stores.charts,
        half_life_s=settings.trending_half_life_h * 3600,
        freeze_days_per_pass=settings.chart_freeze_days_per_pass,
        on_demand_charts=settings.chart_on_demand_concurrency,
    )
    reputation = internal_channel(settings, "reputation")
    vote = internal_channel(settings, "vote")
    auth = Authenticator(
        settings.admin_key,
        remote_key_verifier(reputation),
        settings.auth_cache_ttl_s,
        revocations=resources.redis,
        cache_grace_s=settings.cache_grace_s,
    )
    quotas = SubmissionQuotas(free=settings.song_quota_free, pro=settings.song_quota_pro)
    catalog = Catalog(stores.catalog, quotas)
    catalog_service_pb2_grpc.add_CatalogServiceServicer_to_server(CatalogService(catalog, auth), server)
    ranking_service_pb2_grpc.add_RankingServiceServicer_to_server(
        RankingService(rankings.trending, rankings.charts, rankings.history), server
    )
    return Registration(
        services=[
            catalog_service_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name,
            ranking_service_pb2.DESCRIPTOR.services_by_name["RankingService"].full_name,
        ],
        background=background_jobs(
            resources, rankings, auth, stores, vote_ledger_service_pb2_grpc.VoteLedgerServiceStub(vote)
        ),
        on_close=[reputation.close, vote.close],
    )


def background_jobs(
    resources: Resources[RankingSettings],
    rankings: Rankings,
    auth: Authenticator,
    stores: RankingStores,
    vote_ledger: vote_ledger_service_pb2_grpc.VoteLedgerServiceStub,
) -> list[Callable[[], Coroutine[Any, Any, None]]]:
    settings = resources.settings
    reconciler = CountReconciler(resources.engine, vote_ledger, stores.item_cache, settings.count_reconcile_page_size)
    projection_reconciler = ProjectionReconciler(
        resources.engine,
        vote_ledger,
        rankings.scale.repair_votes,
        settings.projection_reconcile_page_size,
        refreeze=rankings.snapshots.refreeze,
        weights=(stores.projection.weights.published_chart, rankings.scale.agent_changed),
    )

    async def apply_vote_events() -> None:
        # Counts must show a vote within 1 s and trending within 2 s: collect
        # up to 200 ms of events per transaction.
        # Through the client that never re-sends: a re-sent XREADGROUP after a
        # timeout (a frozen process) left the first read's batch pending until
        # the 30 s claim (docs/chaos.md).
        await events.consume(
            resources.redis_at_most_once,
            CONSUMER_GROUP,
            settings.consumer_name,
            rankings.scale.apply_vote_events,
            linger_s=0.2,
        )

    async def watch_consumer_progress() -> None:
        await stream_progress.watch_group(resources.redis, CONSUMER_GROUP, events.dead_letter_stream(CONSUMER_GROUP))

    async def follow_agent_changes() -> None:
        # Key revocations for the cache, and changes of an agent's weights
        # (flagged, cleared, graduated): its past votes are re-weighed.
        await auth.listen(resources.redis, on_agent_changed=rankings.agent_changed)

    async def rebuild_trending() -> None:
        await every(settings.trending_rebuild_interval_s, "trending rebuild", rankings.scale.rebuild_trending)

    async def roll_chart_windows() -> None:
        # Today's charts read the live windows once they end on today: a
        # second after midnight at most (a read arriving first rolls them).
        await every(1.0, "chart windows roll-over", rankings.live.roll)

    async def fold_chart_windows() -> None:
        # The votes' changes reach today's charts in folds: the consumer's
        # transaction only appends them (services/ranking/store/live_charts.py).
        await every(settings.chart_fold_interval_s, "chart windows fold", rankings.live.fold)

    async def freeze_past_charts() -> None:
        # Charts of past dates: finished days frozen, changed ones again.
        await every(settings.chart_freeze_interval_s, "past charts freezer", rankings.freezer.freeze)

    async def snapshot_days() -> None:
        await every(settings.snapshot_interval_s, "daily snapshots", rankings.snapshots.snapshot_finished_days)

    async def prune_processed_events() -> None:
        await every(3600, "prune processed events", lambda: prune_processed(resources.engine, processed_events))

    async def prune_vote_tombstones() -> None:
        await every(3600, "prune vote tombstones", lambda: prune_tombstones(resources.engine, vote_tombstones))

    async def reconcile_counts() -> None:
        # Repairs counts that drifted from the votes table (events lost for
        # good), a page of items per pass.
        await every(settings.count_reconcile_interval_s, "count reconciliation", reconciler.reconcile)

    async def reconcile_projection() -> None:
        # Repairs projected votes that drifted from the votes table, with
        # their tallies, live windows and trending, a page of agents per pass.
        await every(
            settings.projection_reconcile_interval_s, "projection reconciliation", projection_reconciler.reconcile
        )

    async def prune_submission_counts() -> None:
        await every(3600, "prune daily submission counts", stores.catalog.prune_submission_counts)

    return [
        apply_vote_events,
        watch_consumer_progress,
        follow_agent_changes,
        rebuild_trending,
        roll_chart_windows,
        fold_chart_windows,
        freeze_past_charts,
        snapshot_days,
        prune_processed_events,
        prune_vote_tombstones,
        prune_submission_counts,
        reconcile_counts,
        reconcile_projection,
    ]


if __name__ == "__main__":
    main("ranking", setup)
