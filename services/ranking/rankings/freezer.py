"""The freezer job: keeps the frozen tops of past dates' charts
(services/ranking/frozen_tops.py) in step with the tallies. Each pass, per
item type, computes the next run of finished days that are not frozen or
were marked (a late vote, a re-weigh, a repair changed their tallies), the
earliest first, and writes them."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import date

from prometheus_client import Counter

from services.common import validation
from services.ranking.frozen_tops import DEPTH, FreezeInput, FrozenRow, walk
from services.ranking.rankings.ports import FreezerPort

log = logging.getLogger("ranking.freezer")

DAYS_FROZEN = Counter(
    "ranking_chart_days_frozen_total",
    "Finished days whose period charts the freezer (re)computed into the frozen tops past dates are read from",
    ["item_type"],
)
for _item_type in validation.ITEM_TYPES:  # exported at 0 before the first pass (a dashboard panel reads it)
    DAYS_FROZEN.labels(_item_type)
FREEZE_SECONDS = Counter(
    "ranking_chart_freeze_seconds_total", "Time the freezer spent computing and writing frozen tops"
)


class Freezer:
    def __init__(self, store: FreezerPort, days_per_pass: int, depth: int = DEPTH) -> None:
        self.store = store
        self.days_per_pass = days_per_pass
        self.depth = depth

    async def freeze(self) -> int:
        """One pass: returns the days frozen (0 too when another replica's
        pass is running)."""
        async with self.store.freezing() as ours:
            return await self._pass() if ours else 0

    async def _pass(self) -> int:
        frozen_days = 0
        for item_type in validation.ITEM_TYPES:
            work = await self.store.freeze_input(item_type, self.days_per_pass)
            if work is None:
                continue
            started = time.perf_counter()
            # Ranking whole windows is CPU work (a year's backfill at 1 M
            # votes takes minutes): off the event loop, which keeps serving.
            frozen = await asyncio.to_thread(_frozen_run, work, self.depth)
            await self.store.save_tops(work, frozen)
            seconds = time.perf_counter() - started
            FREEZE_SECONDS.inc(seconds)
            DAYS_FROZEN.labels(item_type).inc(len(frozen))
            frozen_days += len(frozen)
            log.info(
                "froze %s charts of %s to %s",
                item_type,
                work.first,
                work.last,
                extra={"days": len(frozen), "seconds": round(seconds, 3)},
            )
        return frozen_days


def _frozen_run(work: FreezeInput, depth: int) -> dict[date, list[FrozenRow]]:
    return dict(walk(work.first, work.last, work.before_first, work.day_tallies, depth))
