"""The ranking service's vote projection reconciled with the votes table
(services/ranking/store/vote_reconcile.py), through the vote service's
VoteLedgerService, on a real PostgreSQL and Redis: a vote whose event was
lost, a ghost row (its retraction lost), a vote projected with the wrong
direction (the re-vote lost) and the votes of an agent the projection holds
nothing of (every event lost) are repaired, and the daily tallies (raw and
chart-weighted with the agent's current weight), the live windows after a
fold and the metric follow; an agent with events in flight is left alone;
a late event of a repaired key still applies by the event-id rules; votes
holding a chart weight other than the published one are re-weighed."""

from __future__ import annotations

import inspect
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from aimusicstore.ranking.v1 import catalog_pb2, catalog_service_pb2, catalog_service_pb2_grpc
from aimusicstore.vote.v1 import vote_ledger_service_pb2_grpc
from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from devstack.stack import Stack
from services.common.channels import peer_channel
from services.common.config import to_sqlalchemy_url
from services.common.credentials import SERVICE_CREDENTIAL_KEY, service_credential
from services.common.interceptors import DeadlineClientInterceptor
from services.common.weights import CHART_WEIGHTS_KEY
from services.ranking import __main__ as ranking_main
from services.ranking.rankings.trend_scale import TrendScale
from services.ranking.store import RankingStores
from services.ranking.store.vote_reconcile import AGENTS_REWEIGHED, VOTES_REPAIRED, ProjectionReconciler
from tests.backing import ADMIN_KEY
from tests.service.conftest import ADMIN, channel, in_process, target_env, unique

pytestmark = pytest.mark.service

# The agents here publish no weights: they count at the probation weight of
# the stores applying their votes. Their votes were projected at THEN and
# are repaired at NOW (the agent's weight changed in between).
THEN, NOW = 0.5, 0.25
TODAY = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
YESTERDAY = TODAY - timedelta(days=1)
_event_ids = itertools.count(10**15 + uuid.uuid4().int % 10**9 * 1000)
# The services' own reconciliations stay out of the way of the passes run here.
QUIET = {"AIMUSICSTORE_PROJECTION_RECONCILE_INTERVAL_S": "3600", "AIMUSICSTORE_COUNT_RECONCILE_INTERVAL_S": "3600"}


@dataclass
class World:
    catalog: Any
    ledger: Any
    engine: AsyncEngine
    then: RankingStores
    now: RankingStores


@pytest.fixture(scope="module")
async def world(backing: Stack) -> AsyncIterator[World]:
    async with (
        in_process(backing, "reputation") as reputation,
        in_process(backing, "ranking", **target_env(reputation=reputation), **QUIET) as ranking,
        in_process(backing, "vote", **target_env(reputation=reputation, ranking=ranking)) as vote,
        channel(ranking) as ranking_channel,
    ):
        credential = (SERVICE_CREDENTIAL_KEY, service_credential(ADMIN_KEY))
        target = f"127.0.0.1:{vote.port}"
        async with peer_channel(target, interceptors=[DeadlineClientInterceptor(5, credential)]) as vote_channel:
            engine = create_async_engine(to_sqlalchemy_url(backing.database_url or ""))
            redis = Redis.from_url(backing.redis_url or "", decode_responses=True)
            yield World(
                catalog_service_pb2_grpc.CatalogServiceStub(ranking_channel),
                vote_ledger_service_pb2_grpc.VoteLedgerServiceStub(vote_channel),
                engine,
                RankingStores.open(engine, redis, probation_weight=THEN),
                RankingStores.open(engine, redis, probation_weight=NOW),
            )
            await redis.aclose()
            await engine.dispose()


def scale(stores: RankingStores) -> TrendScale:
    return TrendScale(stores.projection, stores.trending_sets, half_life_s=86400.0)


def reconciler(world: World, page_size: int = 1) -> ProjectionReconciler:
    """Pages of one agent by default: a sweep from just before an agent checks
    it alone (the tables hold other tests' agents and voters, some drifted)."""
    return ProjectionReconciler(world.engine, world.ledger, scale(world.now).repair_votes, page_size)


async def new_song(world: World) -> str:
    song = catalog_pb2.Song(id=unique("recon"), title="Recon", artist="Model R", platform="suno_ai")
    await world.catalog.CreateSong(catalog_service_pb2.CreateSongRequest(song=song), metadata=ADMIN, timeout=5)
    return song.id


async def execute(engine: AsyncEngine, statement: str, **params: Any) -> list[tuple[Any, ...]]:
    async with engine.begin() as conn:
        result = await conn.execute(text(statement), params)
        return [tuple(row) for row in result] if result.returns_rows else []


async def in_table(world: World, agent: str, song: str, direction: int, voted_at: datetime) -> None:
    """A vote stored by the vote service (its event is not published: lost)."""
    await execute(
        world.engine,
        "INSERT INTO vote.votes (agent_id, item_type, item_id, direction, created_at) VALUES (:a, 'song', :s, :d, :t)",
        a=agent,
        s=song,
        d=direction,
        t=voted_at,
    )


def event(kind: str, agent: str, song: str, direction: int, voted_at: datetime, event_id: int = 0) -> VoteEvent:
    e = VoteEvent(
        event_id=event_id or next(_event_ids),
        type=kind,
        agent_id=agent,
        item_type="song",
        item_id=song,
        direction=direction,
    )
    e.voted_at.FromDatetime(voted_at)
    return e


async def projected(stores: RankingStores, *events: VoteEvent) -> None:
    """Events the ranking projection applied (with the stores' weight)."""
    await stores.projection.apply_events(list(events), scale(stores).trend())


async def rows(world: World, agent: str) -> list[tuple[Any, ...]]:
    return await execute(
        world.engine,
        "SELECT item_id, direction, chart_weight, weight FROM ranking.votes WHERE agent_id = :a ORDER BY item_id",
        a=agent,
    )


async def tallies(world: World, songs: list[str]) -> dict[tuple[str, date], tuple[int, int, float, float]]:
    found = await execute(
        world.engine,
        "SELECT item_id, day, up_votes, down_votes, weighted_up, weighted_down FROM ranking.daily_tallies"
        " WHERE item_type = 'song' AND item_id = ANY(:s)",
        s=songs,
    )
    return {
        (i, day): (up, down, round(wup, 9), round(wdown, 9))
        for i, day, up, down, wup, wdown in found
        if (up, down, round(wup, 9), round(wdown, 9)) != (0, 0, 0, 0)
    }


async def all_time_windows(world: World, songs: list[str]) -> dict[str, tuple[int, int, float, float]]:
    await world.now.charts.fold_live_windows()
    found = await execute(
        world.engine,
        "SELECT item_id, up_votes, down_votes, weighted_up, weighted_down FROM ranking.chart_totals"
        " WHERE period = 'all_time' AND item_type = 'song' AND item_id = ANY(:s)",
        s=songs,
    )
    return {
        i: (up, down, round(wup, 9), round(wdown, 9))
        for i, up, down, wup, wdown in found
        if (up, down, round(wup, 9), round(wdown, 9)) != (0, 0, 0, 0)
    }


async def sweep_past(rec: ProjectionReconciler, agent: str) -> int:
    """Runs passes from just before `agent` until one has checked it; returns
    the repairs made."""
    rec.after = agent[:-1]
    repaired = 0
    for _ in range(1000):
        result = await rec.reconcile()
        repaired += result.repaired
        if not rec.after or rec.after >= agent:
            return repaired
    raise AssertionError("the sweep never reached the agent")


def repaired_counts() -> dict[str, float]:
    return {kind: VOTES_REPAIRED.labels(kind)._value.get() for kind in ("ghost", "direction", "missing")}


async def test_lost_ghost_and_flipped_votes_are_repaired_with_tallies_and_windows(world: World) -> None:
    agent = unique("recon-agent")
    lost, ghost, flipped, kept = [await new_song(world) for _ in range(4)]
    songs = [lost, ghost, flipped, kept]
    # The table: a vote whose event was lost (yesterday), a vote whose
    # direction changed (a re-vote lost), and one projected right.
    await in_table(world, agent, lost, 1, YESTERDAY)
    await in_table(world, agent, flipped, -1, TODAY)
    await in_table(world, agent, kept, 1, TODAY)
    # The projection: a ghost (its retraction lost), the first direction of
    # the flipped vote, and the kept vote; at the weight of then.
    await projected(
        world.then,
        event("vote", agent, ghost, 1, TODAY),
        event("vote", agent, flipped, 1, TODAY),
        event("vote", agent, kept, 1, TODAY),
    )
    before = repaired_counts()

    rec = reconciler(world)
    assert await sweep_past(rec, agent) == 3
    assert await rows(world, agent) == sorted([(lost, 1, NOW, NOW), (flipped, -1, NOW, NOW), (kept, 1, THEN, THEN)])
    # Tallies: on the day each vote was cast, raw and weighted with the
    # weight each is held with (the ghost's taken back at the weight it added).
    expected = {
        (lost, YESTERDAY.date()): (1, 0, NOW, 0),
        (flipped, TODAY.date()): (0, 1, 0, NOW),
        (kept, TODAY.date()): (1, 0, THEN, 0),
    }
    assert await tallies(world, songs) == expected
    assert await all_time_windows(world, songs) == {
        lost: (1, 0, NOW, 0),
        flipped: (0, 1, 0, NOW),
        kept: (1, 0, THEN, 0),
    }
    after = repaired_counts()
    assert {kind: after[kind] - before[kind] for kind in after} == {"ghost": 1, "direction": 1, "missing": 1}

    # Idempotent: the next sweep finds nothing to do, and changes nothing.
    assert await sweep_past(rec, agent) == 0
    assert await tallies(world, songs) == expected

    # Order-safe: the lost vote's own retraction, arriving now (a replayed
    # dead letter), still takes the repaired vote out, with its tallies.
    await projected(world.now, event("retract", agent, lost, 1, YESTERDAY))
    assert (lost, YESTERDAY.date()) not in await tallies(world, songs)
    assert [r[0] for r in await rows(world, agent)] == sorted([flipped, kept])


async def test_an_agent_the_projection_holds_nothing_of_is_visited_and_repaired(world: World) -> None:
    """Every event of the agent was lost: no projected vote, no tombstone. The
    sweep still reaches it, through the vote service's list of voters."""
    agent = unique("recon-unseen")
    songs = sorted([await new_song(world), await new_song(world)])
    await in_table(world, agent, songs[0], 1, YESTERDAY)
    await in_table(world, agent, songs[1], -1, TODAY)
    assert await rows(world, agent) == []
    before = repaired_counts()

    rec = reconciler(world)
    assert await sweep_past(rec, agent) == 2
    assert await rows(world, agent) == [(songs[0], 1, NOW, NOW), (songs[1], -1, NOW, NOW)]
    expected = {(songs[0], YESTERDAY.date()): (1, 0, NOW, 0), (songs[1], TODAY.date()): (0, 1, 0, NOW)}
    assert await tallies(world, songs) == expected
    assert await all_time_windows(world, songs) == {songs[0]: (1, 0, NOW, 0), songs[1]: (0, 1, 0, NOW)}
    after = repaired_counts()
    assert {kind: after[kind] - before[kind] for kind in after} == {"ghost": 0, "direction": 0, "missing": 2}
    assert await sweep_past(rec, agent) == 0, "repaired once"


async def test_an_agent_with_events_in_flight_is_left_alone(world: World) -> None:
    agent = unique("recon-busy")
    song = await new_song(world)
    await in_table(world, agent, song, 1, TODAY)
    await projected(world.then, event("vote", agent, song, -1, TODAY))
    # An event of the agent still in the outbox: the ranking group may not
    # have applied it yet.
    payload = json.dumps({"type": "vote", "agent_id": agent, "item_type": "song", "item_id": song, "direction": 1})
    ((outbox_id,),) = await execute(
        world.engine,
        "INSERT INTO vote.outbox (payload, relayed_at, stream_ms, stream_seq)"
        " VALUES (CAST(:p AS jsonb), now(), 1, 0) RETURNING id",
        p=payload,
    )
    rec = reconciler(world)
    try:
        assert await sweep_past(rec, agent) == 0
        assert await rows(world, agent) == [(song, -1, THEN, THEN)]
    finally:
        await execute(world.engine, "DELETE FROM vote.outbox WHERE id = :id", id=outbox_id)
    assert await sweep_past(rec, agent) == 1, "repaired once settled"
    assert await rows(world, agent) == [(song, 1, NOW, NOW)]
    assert await tallies(world, [song]) == {(song, TODAY.date()): (1, 0, NOW, 0)}


async def test_a_missing_vote_retracted_since_the_check_is_left_for_the_next_sweep(world: World) -> None:
    agent = unique("recon-late")
    song, other = await new_song(world), await new_song(world)
    await in_table(world, agent, other, 1, TODAY)
    await projected(world.then, event("vote", agent, other, 1, TODAY))
    # The table holds a vote on `song` the projection lacks, and the
    # projection holds a tombstone of the key written after the agent was
    # read (perhaps this very vote's retraction): not repaired now.
    await in_table(world, agent, song, 1, TODAY)
    rec = reconciler(world)
    rec.after = agent[:-1]
    future = datetime.now(UTC) + timedelta(hours=1)
    await execute(
        world.engine,
        "INSERT INTO ranking.vote_tombstones (agent_id, item_type, item_id, event_id, retracted_at)"
        " VALUES (:a, 'song', :s, :e, :t)",
        a=agent,
        s=song,
        e=next(_event_ids),
        t=future,
    )
    assert await sweep_past(rec, agent) == 0
    assert await tallies(world, [song]) == {}
    # Once the tombstone is older than the check, the vote (newer than it:
    # cast after that retraction) is applied.
    await execute(
        world.engine,
        "UPDATE ranking.vote_tombstones SET retracted_at = now() - interval '1 minute' WHERE agent_id = :a",
        a=agent,
    )
    assert await sweep_past(rec, agent) == 1
    assert await tallies(world, [song]) == {(song, TODAY.date()): (1, 0, NOW, 0)}


async def test_votes_holding_a_chart_weight_other_than_the_published_one_are_reweighed(world: World) -> None:
    """A flag, clearing or graduation announced while no ranking replica
    listened: the weight is published, the re-weigh never happened. The pass
    re-weighs the agent's votes and tallies, and freezes the days again once;
    an agent published right, or one with nothing published (never, or the
    hash flushed), is left alone."""
    agent, other, unpublished = unique("recon-weight"), unique("recon-weight"), unique("recon-weight")
    songs = sorted([await new_song(world), await new_song(world)])
    for voter in (agent, other, unpublished):
        for song in songs:
            await in_table(world, voter, song, 1, YESTERDAY)
            await projected(world.then, event("vote", voter, song, 1, YESTERDAY))
    redis = world.now.projection.weights.redis
    # Published without an announcement: the agent now weighs 0.125 in the
    # charts; the other is published at what its votes hold; the third has
    # nothing published (its votes hold THEN, the stores' default is NOW).
    await redis.hset(CHART_WEIGHTS_KEY, mapping={agent: 0.125, other: THEN})
    reweighed: list[str] = []
    refrozen: list[set[tuple[str, date]]] = []

    async def reweigh(agent_id: str, days: set[tuple[str, date]]) -> None:
        reweighed.append(agent_id)
        await scale(world.now).agent_changed(agent_id, days)

    async def refreeze(days: Iterable[tuple[str, date]]) -> None:
        refrozen.append(set(days))

    async def lost(agent_ids: set[str]) -> dict[str, float]:
        return {}  # the hash flushed: nothing published for anyone

    blind = ProjectionReconciler(world.engine, world.ledger, scale(world.now).repair_votes, 1, weights=(lost, reweigh))
    await sweep_past(blind, agent)
    assert reweighed == [] and {r[2] for r in await rows(world, agent)} == {THEN}

    # A page of exactly these three (their ids sort together): other tests'
    # agents in it would bring repairs and refreezes of their own.
    rec = ProjectionReconciler(
        world.engine,
        world.ledger,
        scale(world.now).repair_votes,
        3,
        refreeze=refreeze,
        weights=(world.now.projection.weights.published_chart, reweigh),
    )
    before = AGENTS_REWEIGHED._value.get()
    rec.after = min(agent, other, unpublished)[:-1]
    result = await rec.reconcile()
    assert result.checked == 3 and reweighed == [agent]
    assert AGENTS_REWEIGHED._value.get() - before == result.reweighed == 1
    assert len(refrozen) == 1 and ("song", YESTERDAY.date()) in refrozen[0]
    # The trending weight follows too (none published: the probation weight now).
    assert await rows(world, agent) == [(song, 1, 0.125, NOW) for song in songs]
    assert await rows(world, other) == [(song, 1, THEN, THEN) for song in songs]
    assert await rows(world, unpublished) == [(song, 1, THEN, THEN) for song in songs]
    day = YESTERDAY.date()
    assert await tallies(world, songs) == {(song, day): (3, 0, 0.125 + 2 * THEN, 0) for song in songs}
    # Done once: the next pass finds the agent's votes at its weight.
    reweighed.clear()
    rec.after = min(agent, other, unpublished)[:-1]
    assert (await rec.reconcile()).checked == 3
    assert reweighed == []


def test_the_ranking_service_wires_the_weight_check() -> None:
    source = inspect.getsource(ranking_main.background_jobs)
    assert "weights=(stores.projection.weights.published_chart, rankings.scale.agent_changed)" in source
