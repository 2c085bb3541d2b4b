"""The coordinated-voting job: every pass reads the recent votes, finds the
rings (rings.py) and flags their members through the reputation service.

The search is CPU work on up to `max_votes` votes: it runs in a worker
thread, so the event loop (the vote path) keeps answering meanwhile and only
shares the interpreter with it (docs/integrity.md, "Coordinated voting",
for its cost). Its decisions are rings.py's; this class reads, remembers
and reports.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from services.vote import metrics
from services.vote.ports import ModerationPort
from services.vote.rings import RecentVote, Ring, RingRules, find_rings

log = logging.getLogger("vote.rings")

# Agents remembered as flagged for a ring (a bound on memory: past it, the
# oldest are forgotten, and at worst flagged again, which FlagAgent ignores).
REMEMBERED_MAX = 100_000
# FlagAgent calls in flight at once for one pass.
FLAG_CONCURRENCY = 16

T = TypeVar("T")
Offload = Callable[[Callable[[], T]], Awaitable[T]]


class RecentVotesPort(Protocol):
    async def recent_votes(self, since: datetime, limit: int) -> list[RecentVote]: ...


async def _in_thread(work: Callable[[], T]) -> T:
    return await asyncio.to_thread(work)


class RingWatch:
    def __init__(
        self,
        votes: RecentVotesPort,
        moderation: ModerationPort,
        rules: RingRules,
        *,
        lookback_s: float,
        max_votes: int,
        clock: Callable[[], float] = time.time,  # injectable for tests
        offload: Offload[tuple[list[Ring], float]] = _in_thread,
    ) -> None:
        self.votes = votes
        self.moderation = moderation
        self.rules = rules
        self.lookback_s = lookback_s
        self.max_votes = max_votes
        self.clock = clock
        self.offload = offload
        # Agent -> the end of the ring's votes it was flagged for. A ring seen
        # again on the next passes (its votes stay recent) is not reported
        # again; nor is an agent an admin cleared, for the same votes. Votes
        # after those are new evidence.
        self.flagged: OrderedDict[str, float] = OrderedDict()
        # Agent -> the id of the group it was flagged in: a ring seen again
        # with more members (its evidence grows for a while after its last
        # vote) keeps the name its first members were flagged under, so the
        # moderation queue shows one group, not one per pass.
        self.group_of: dict[str, str] = {}

    async def one_pass(self) -> int:
        """Reads, searches, flags; returns how many agents it flagged."""
        now = self.clock()
        votes = await self.votes.recent_votes(datetime.fromtimestamp(now - self.lookback_s, UTC), self.max_votes)
        rings, cpu_s = await self.offload(lambda: self._search(votes, now))
        metrics.RING_PASS_CPU_SECONDS.set(cpu_s)
        self._forget_before(now - self.lookback_s)
        flagged = 0
        for ring in rings:
            flagged += await self._flag(ring)
        return flagged

    def _search(self, votes: list[RecentVote], now: float) -> tuple[list[Ring], float]:
        """The rings, and the CPU seconds the search took (its own thread's)."""
        started = time.thread_time()
        rings = find_rings(votes, now, self.rules)
        return rings, time.thread_time() - started

    async def _flag(self, ring: Ring) -> int:
        due = [agent for agent in ring.members if self.flagged.get(agent, -1.0) < ring.start]
        if not due:
            return 0
        earlier = Counter(self.group_of[agent] for agent in ring.members if agent in self.group_of and agent not in due)
        if earlier:
            name, count = earlier.most_common(1)[0]
            if 2 * count >= len(ring.members):
                ring = replace(ring, group_id=name)
        metrics.RINGS_FOUND.inc()
        log.warning(
            "%s; flagging %d of its members",
            ring.reason,
            len(due),
            extra={"group": ring.group_id, "log10_chance": round(ring.log10_chance, 1)},
        )
        gate = asyncio.Semaphore(FLAG_CONCURRENCY)

        async def flag(agent: str) -> bool:
            async with gate:
                return await self.moderation.flag(agent, ring.reason)

        done = await asyncio.gather(*(flag(agent) for agent in due))
        # Not reached: flagged on a later pass (the ring stays recent).
        self._remember([agent for agent, ok in zip(due, done, strict=True) if ok], ring.end, ring.group_id)
        metrics.RING_MEMBERS_FLAGGED.inc(sum(done))
        return sum(done)

    def _remember(self, agents: Sequence[str], until: float, group: str) -> None:
        for agent in agents:
            self.flagged[agent] = until
            self.flagged.move_to_end(agent)
            self.group_of[agent] = group
        while len(self.flagged) > REMEMBERED_MAX:
            self.group_of.pop(self.flagged.popitem(last=False)[0], None)

    def _forget_before(self, oldest: float) -> None:
        """Rings whose votes left the lookback cannot be seen again."""
        while self.flagged and next(iter(self.flagged.values())) < oldest:
            self.group_of.pop(self.flagged.popitem(last=False)[0], None)
