"""The trending scale and the writes that depend on it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.ranking import trending
from services.ranking.rankings.ports import ProjectionPort, TrendEpochPort
from services.ranking.trending import TrendClock
from services.ranking.vote_batch import ProjectedVote

log = logging.getLogger("rankings")


class TrendScale:
    """The trending scale (half-life and epoch, see services/ranking/trending.py)
    and every write that uses it: vote batches, re-weighing an agent's votes,
    and the rebuild of the trending sets, which moves the epoch."""

    def __init__(
        self,
        projection: ProjectionPort,
        trending_sets: TrendEpochPort,
        half_life_s: float,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.projection = projection
        self.trending_sets = trending_sets
        self.half_life_s = half_life_s
        self.clock = clock or (lambda: datetime.now(UTC))
        # Replaced by the epoch stored in Redis at the first rebuild (at start).
        self.epoch = self.clock().replace(hour=0, minute=0, second=0, microsecond=0)
        # A batch reads the voters' weights before it writes; re-weighing an
        # agent waits for that batch, so none of its votes keeps a stale weight.
        self._weights_lock = asyncio.Lock()

    def trend(self) -> TrendClock:
        return TrendClock(half_life_s=self.half_life_s, epoch=self.epoch, now=self.clock)

    def unscale(self, stored: float, now: datetime) -> float:
        """A stored trending score as reported: the epoch's scale divided out."""
        return round(trending.unscale(stored, now, self.epoch, self.half_life_s), 6)

    async def apply_vote_events(self, events: list[VoteEvent]) -> None:
        async with self._weights_lock:
            await self.projection.apply_events(events, self.trend())

    async def agent_changed(self, agent_id: str, changed_days: set[tuple[str, date]]) -> None:
        """The agent's weights may have changed (flagged, cleared, graduated):
        re-weigh its votes, adding the (item type, day) tallies that changed
        to `changed_days`."""
        async with self._weights_lock:
            await self.projection.reweigh_agent(agent_id, self.trend(), changed_days)

    async def repair_votes(
        self, agent_id: str, plan: Callable[[Any], Awaitable[list[VoteEvent]]]
    ) -> tuple[list[ProjectedVote], list[ProjectedVote]]:
        """A reconciliation's repair of the agent's projected votes
        (services/ranking/store/vote_reconcile.py): applied with the agent's
        weights read under the lock a re-weigh holds, as a batch is."""
        async with self._weights_lock:
            return await self.projection.repair_votes(agent_id, plan, self.trend())

    async def rebuild_trending(self) -> int:
        """Recomputes the trending sets from the vote projection; moves the
        epoch first when the scale would grow too large (or none is stored)."""
        async with self._weights_lock:  # no batch may move trending while the sets are replaced
            return await self._rebuild_trending()

    async def _rebuild_trending(self) -> int:
        now = self.clock()
        stored = await self.trending_sets.epoch()
        if stored is not None:
            self.epoch = stored
        if stored is None or trending.needs_new_epoch(now, self.epoch, self.half_life_s):
            self.epoch = now.replace(minute=0, second=0, microsecond=0)
            await self.trending_sets.set_epoch(self.epoch)
            log.info("trending epoch set to %s", self.epoch.isoformat())
        return await self.trending_sets.rebuild(self.trend())
