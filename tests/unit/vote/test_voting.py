"""The Voting domain against in-memory stores: every rule of casting,
retracting and listing, in milliseconds, without servers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.common.auth import ADMIN, Caller
from services.common.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from services.common.events import decode
from services.vote.model import Counts, VoteRow
from services.vote.ports import VoteStores
from services.vote.rules import Quotas, VotePace, abuse_rules, windows_of
from services.vote.voting import Ballot, OverQuota, TooFast, Voting
from tests.unit.vote.fakes import (
    FakeAgents,
    FakeCatalog,
    FakeCounts,
    FakeModeration,
    FakeQuotas,
    FakeVotes,
    FakeWindows,
)
from tests.unit.vote.test_rules import limits

NOW = datetime(2026, 12, 6, 23, 0, tzinfo=UTC)
ALICE = Caller("alice", tier="free", key_hash=b"alice-key")
BOB = Caller("bob", tier="pro", key_hash=b"bob-key")


class World:
    def __init__(self, *, quota_free: int = 3, burst_max: int = 10) -> None:
        self.votes = FakeVotes()
        self.quotas = FakeQuotas()
        rules = abuse_rules(limits(abuse_burst_max=burst_max))
        self.windows = FakeWindows(windows_of(rules))
        self.catalog = FakeCatalog({("song", f"s{i}") for i in range(20)} | {("tool", "t1")})
        self.moderation = FakeModeration()
        self.now = NOW
        self.voting = Voting(
            VoteStores(self.votes, self.quotas, self.windows, FakeCounts(self.votes)),
            self.catalog,
            FakeAgents({"alice", "bob", "carol"}),
            self.moderation,
            Quotas(free=quota_free, pro=1000),
            rules,
            clock=lambda: self.now,
        )

    async def cast(
        self, caller: Caller = ALICE, item: str = "s1", vote: str = "up", **kw: Any
    ) -> tuple[VoteRow, Counts]:
        item_type = "tool" if item.startswith("t") else "song"
        args: dict[str, Any] = {"comment": "", "rating": None, "agent_id": ""} | kw
        return await self.voting.cast(caller, item_type=item_type, item_id=item, vote=vote, **args)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    w = World()
    yield w
    await w.voting.batcher.close()


async def test_a_vote_is_stored_counted_and_queued_as_one_event(world: World) -> None:
    row, counts = await world.cast(vote="down")
    assert (row.agent_id, row.item_id, row.direction, row.created_at) == ("alice", "s1", -1, NOW)
    assert (counts.up, counts.down, counts.score) == (0, 1, -1)
    (event,) = world.votes.outbox
    decoded = decode(json.dumps(event))
    assert (decoded.type, decoded.agent_id, decoded.item_id, decoded.direction) == ("vote", "alice", "s1", -1)
    assert decoded.voted_at.ToDatetime(tzinfo=UTC) == NOW


async def test_a_second_vote_on_the_same_item_is_already_voted_and_refunded(world: World) -> None:
    await world.cast()
    with pytest.raises(AlreadyExists, match="Already voted"):
        await world.cast(vote="down")
    assert world.quotas.used[("alice", "20261206")] == 1


async def test_the_same_vote_twice_in_one_batch_stores_one(world: World) -> None:
    results = await asyncio.gather(world.cast(), world.cast(), return_exceptions=True)
    assert sum(isinstance(r, AlreadyExists) for r in results) == 1
    assert len(world.votes.rows) == 1
    assert world.quotas.used[("alice", "20261206")] == 1


async def test_the_daily_quota_names_the_tier_and_the_reset(world: World) -> None:
    for item in ("s1", "s2", "s3"):
        await world.cast(item=item)
    with pytest.raises(ResourceExhausted, match=r"quota of 3 for the free tier .* 2026-12-07T00:00:00Z \(in 1h 0m\)"):
        await world.cast(item="s4")
    with pytest.raises(ResourceExhausted) as refused:
        await world.cast(item="s5")
    assert refused.value.retry_after_s == 3601
    assert len(world.votes.rows) == 3


async def test_a_revoked_key_is_refused(world: World) -> None:
    world.quotas.revoked.add(ALICE.key_hash)
    with pytest.raises(Unauthenticated):
        await world.cast()
    assert not world.votes.rows


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"vote": "sideways"}, InvalidArgument, "must be 'up' or 'down'"),
        ({"item": "s1", "rating": 4}, InvalidArgument, "only on tools"),
        ({"item": "t1", "rating": 6}, InvalidArgument, "rating"),
        ({"item": "s99"}, NotFound, "does not exist"),
        ({"agent_id": "bob"}, PermissionDenied, "does not match"),
        ({"comment": "x" * 2001}, InvalidArgument, "comment"),
    ],
)
async def test_bad_votes_are_refused_with_the_reason(
    world: World, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        await world.cast(**kwargs)
    assert not world.votes.rows and not world.quotas.used


async def test_the_admin_key_cannot_vote(world: World) -> None:
    with pytest.raises(PermissionDenied):
        await world.cast(ADMIN)


async def test_a_tool_rating_is_a_review(world: World) -> None:
    row, _ = await world.cast(item="t1", rating=5)
    assert row.rating == 5 and row.has_review
    assert world.votes.outbox[0]["has_review"] is True and world.votes.outbox[0]["rating"] == 5


async def test_breaking_a_rule_flags_the_agent_once_the_vote_is_stored() -> None:
    world = World(quota_free=100, burst_max=2)
    try:
        for item in ("s1", "s2"):
            await world.cast(item=item, vote="up" if item == "s1" else "down")
        assert world.moderation.flags == []
        row, _ = await world.cast(item="s3")
        assert row.item_id == "s3"
        assert world.moderation.flags == [("alice", "more than 2 votes within 10 seconds")]
    finally:
        await world.voting.batcher.close()


async def test_votes_stay_acknowledged_when_the_rule_windows_fail(world: World) -> None:
    world.windows.broken = True
    row, counts = await world.cast()
    assert row.item_id == "s1" and counts.up == 1
    assert world.moderation.flags == []


async def test_a_failed_insert_refunds_the_quota(world: World) -> None:
    world.votes.fail_inserts = True
    with pytest.raises(ConnectionError):
        await world.cast()
    assert world.quotas.used[("alice", "20261206")] == 0


async def test_a_retraction_publishes_the_retracted_vote(world: World) -> None:
    await world.cast(item="t1", vote="down", rating=2)
    world.now = NOW + timedelta(minutes=5)
    removed = await world.voting.retract(ALICE, "tool", "t1")
    assert removed.direction == -1
    event = world.votes.outbox[-1]
    assert (event["type"], event["direction"], event["rating"], event["has_review"]) == ("retract", -1, 2, True)
    assert event["voted_at"] == NOW.isoformat() and event["occurred_at"] == world.now.isoformat()
    with pytest.raises(NotFound, match="you have no vote on tool 't1'"):
        await world.voting.retract(ALICE, "tool", "t1")


async def test_agent_votes_page_newest_first_and_unknown_agents_are_404(world: World) -> None:
    for minute, item in enumerate(("s1", "s2", "s3")):
        world.now = NOW + timedelta(minutes=minute)
        await world.cast(BOB, item=item)
    first, token = await world.voting.agent_votes("bob", 2, "")
    assert [v.item_id for v in first] == ["s3", "s2"] and token
    rest, token = await world.voting.agent_votes("bob", 2, token)
    assert [v.item_id for v in rest] == ["s1"] and token == ""
    assert (await world.voting.agent_votes("carol", 10, ""))[0] == []
    with pytest.raises(NotFound):
        await world.voting.agent_votes("nobody", 10, "")


async def test_reviews_list_only_votes_with_a_comment_or_rating(world: World) -> None:
    await world.cast(ALICE, item="s1", comment="great hook")
    await world.cast(BOB, item="s1")
    reviews, _ = await world.voting.reviews("song", "s1", 10, "")
    assert [(r.agent_id, r.comment) for r in reviews] == [("alice", "great hook")]


async def test_a_batch_gives_each_ballot_the_single_vote_outcome_in_order(world: World) -> None:
    ballots = [
        Ballot("song", "s1", "up"),
        Ballot("song", "s1", "down"),
        Ballot("song", "nope", "up"),
        Ballot("song", "s2", "up", rating=3),
        Ballot("tool", "t1", "up", rating=5),
        Ballot("song", "s3", "up"),
        Ballot("song", "s4", "up"),  # past the free quota of 3
    ]
    results = await world.voting.cast_many(ALICE, ballots, bulk=True)
    assert [(r.item_id, r.status, r.http_status) for r in results] == [
        ("s1", "recorded", 200),
        ("s1", "already_voted", 409),
        ("nope", "not_found", 404),
        ("s2", "invalid", 400),
        ("t1", "recorded", 200),
        ("s3", "recorded", 200),
        ("s4", "quota_exceeded", 429),
    ]
    assert isinstance(results[6].error, OverQuota) and results[6].error.retry_after_s
    assert [v.item_id for v in world.votes.rows.values()] == ["s1", "t1", "s3"]


async def test_a_batch_past_the_agents_pace_is_rate_limited_and_the_pace_refills() -> None:
    world = World()
    world.voting.pace = VotePace(rate_per_s=1000.0, burst=2)
    try:
        results = await world.voting.cast_many(BOB, [Ballot("song", f"s{i}", "up") for i in range(4)], bulk=True)
        assert [r.status for r in results] == ["recorded", "recorded", "rate_limited", "rate_limited"]
        assert isinstance(results[2].error, TooFast) and results[2].error.retry_after_s == 1
        # Single votes are paced at the edge (per address), not here.
        await world.cast(BOB, "s9")
    finally:
        await world.voting.batcher.close()


def test_the_pace_grants_its_burst_then_its_rate_and_forgets_the_least_recent_agent() -> None:
    pace = VotePace(rate_per_s=10.0, burst=5, max_agents=2)
    assert pace.take("a", 8, now=0.0) == 5
    assert pace.take("a", 8, now=0.0) == 0 and pace.retry_after_s("a") == 1
    assert pace.take("a", 8, now=0.35) == 3  # 3.5 tokens refilled
    assert pace.take("a", 8, now=100.0) == 5  # never above the burst
    pace.take("b", 1, now=100.0)
    pace.take("c", 1, now=100.0)  # "a" is forgotten: a full burst again
    assert pace.take("a", 8, now=100.0) == 5


async def test_a_vote_service_at_capacity_refuses_at_once_with_retry_after() -> None:
    world = World()
    world.voting.batcher._max_queued = 1  # the bound AIMUSICSTORE_VOTE_QUEUE_MAX gives
    try:
        with pytest.raises(Unavailable, match="at capacity") as refused:
            await world.voting.cast_many(BOB, [Ballot("song", "s1", "up"), Ballot("song", "s2", "up")], bulk=True)
        assert refused.value.retry_after_s == 1
        assert world.votes.rows == {}  # nothing stored, nothing charged
        await world.cast(BOB, "s3")  # one vote fits
    finally:
        await world.voting.batcher.close()
