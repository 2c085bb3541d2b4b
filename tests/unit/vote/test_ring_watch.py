"""The coordinated-voting job (services/vote/ring_watch.py) against in-memory
fakes: what it reads, whom it flags and with what reason, and that a ring
seen again on later passes is not reported again."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from services.vote.ring_watch import RingWatch
from services.vote.rings import RecentVote, RingRules
from tests.unit.vote.fakes import FakeModeration
from tests.unit.vote.votegraphs import T0, ring, seeded

T = TypeVar("T")
LOOKBACK_S = 7200.0


@dataclass
class FakeRecentVotes:
    votes: list[RecentVote]
    asked: list[tuple[datetime, int]] = field(default_factory=list)

    async def recent_votes(self, since: datetime, limit: int) -> list[RecentVote]:
        self.asked.append((since, limit))
        return [vote for vote in self.votes if vote.at >= since.timestamp()][-limit:]


@dataclass
class FlakyModeration(FakeModeration):
    """The reputation service unreachable for the first `down` calls."""

    down: int = 0

    async def flag(self, agent_id: str, reason: str) -> bool:
        if self.down > 0:
            self.down -= 1
            return False
        return await super().flag(agent_id, reason)


async def inline(work: Callable[[], T]) -> T:
    return work()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def watch(votes: list[RecentVote], moderation: FakeModeration, clock: Clock) -> tuple[RingWatch, FakeRecentVotes]:
    source = FakeRecentVotes(sorted(votes, key=lambda vote: vote.at))
    # The job's mechanics with small rings: judged at the pre-1e-16 threshold.
    job = RingWatch(
        source,
        moderation,
        RingRules(max_chance=1e-7),
        lookback_s=LOOKBACK_S,
        max_votes=5000,
        clock=clock,
        offload=inline,
    )
    return job, source


async def test_every_member_is_flagged_once_with_the_group_named() -> None:
    moderation, clock = FakeModeration(), Clock(T0 + 100)
    job, source = watch(ring(seeded(1), target="fresh", at=T0, size=30), moderation, clock)
    assert await job.one_pass() == 30
    assert source.asked == [(datetime.fromtimestamp(T0 + 100 - LOOKBACK_S).astimezone(), 5000)]
    assert sorted(agent for agent, _ in moderation.flags) == sorted(f"r{n}" for n in range(30))
    (reason,) = {reason for _, reason in moderation.flags}
    assert reason.startswith("coordinated voting: group ") and reason.endswith(" of 30 agents on 1 item within 3 s")
    clock.now += 15
    assert await job.one_pass() == 0  # the same ring, still recent
    assert len(moderation.flags) == 30


async def test_members_the_reputation_service_did_not_hear_of_are_flagged_on_the_next_pass() -> None:
    moderation, clock = FlakyModeration(down=5), Clock(T0 + 100)
    job, _ = watch(ring(seeded(2), target="fresh", at=T0, size=30), moderation, clock)
    assert await job.one_pass() == 25
    clock.now += 15
    assert await job.one_pass() == 5
    assert len({agent for agent, _ in moderation.flags}) == 30


async def test_a_new_ring_of_the_same_agents_is_reported_again() -> None:
    # An admin may clear a flag; the same votes do not flag the agent again, new ones do.
    moderation, clock = FakeModeration(), Clock(T0 + 100)
    first = ring(seeded(3), target="fresh-a", at=T0, size=30)
    again = ring(seeded(3), target="fresh-b", at=T0 + 600, size=30)
    job, source = watch(first, moderation, clock)
    assert await job.one_pass() == 30
    source.votes += again
    clock.now = T0 + 700
    assert await job.one_pass() == 30
    assert len(moderation.flags) == 60


async def test_the_memory_of_flagged_agents_forgets_rings_past_the_lookback() -> None:
    moderation, clock = FakeModeration(), Clock(T0 + 100)
    job, _ = watch(ring(seeded(4), target="fresh", at=T0, size=30), moderation, clock)
    await job.one_pass()
    assert len(job.flagged) == 30
    clock.now = T0 + LOOKBACK_S + 10
    assert await job.one_pass() == 0
    assert not job.flagged


async def test_no_votes_no_flags() -> None:
    moderation = FakeModeration()
    job, _ = watch([], moderation, Clock(T0))
    assert await job.one_pass() == 0 and not moderation.flags


async def test_a_ring_seen_again_with_more_members_keeps_its_first_name() -> None:
    # A vote at the edge of the burst, left out on the first pass and taken
    # in on a later one (the evidence grows after the last vote): the late
    # member is named in the group its ring was flagged under.
    moderation, clock = FakeModeration(), Clock(T0 + 100)
    votes = ring(seeded(1), target="fresh", at=T0, size=30)
    late, early = votes[:1], votes[1:]
    job, source = watch(early, moderation, clock)
    assert await job.one_pass() == 29
    (first,) = {reason.split()[3] for _, reason in moderation.flags}
    source.votes = sorted(votes, key=lambda vote: vote.at)
    clock.now += 15
    assert await job.one_pass() == 1
    assert {reason.split()[3] for _, reason in moderation.flags} == {first}
    assert moderation.flags[-1] == (late[0].agent_id, moderation.flags[-1][1])
    assert moderation.flags[-1][1].endswith(" of 30 agents on 1 item within 3 s")
