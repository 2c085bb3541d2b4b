"""The live chart windows' day: today's charts are read from them once they
end on today (a background job rolls them over each second; a read that
finds them behind rolls them first, a day's tallies per window); and their
fold, the job that adds the tallies' latest changes to them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

from services.common.singleflight import SingleFlight
from services.ranking.rankings.ports import LiveWindowsPort


class LiveWindows:
    def __init__(self, store: LiveWindowsPort, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.clock = clock or (lambda: datetime.now(UTC))
        self._day: date | None = None  # the windows' day as last seen
        self._flights = SingleFlight()

    async def roll(self) -> bool:
        """Rolls the windows over to today if they end before it (the job);
        returns whether they end on today."""
        return await self.ready(self.clock().date())

    async def ready(self, today: date) -> bool:
        """Whether the live windows end on `today`, rolled over first if they
        end before it. Checked on every read of today: no query once they do."""
        if self._day == today:
            return True

        async def roll() -> date | None:
            self._day = await self.store.roll_live_windows(today)
            return self._day

        return await self._flights.do(("roll", today), roll) == today

    async def fold(self) -> int:
        """Adds the changes of the daily tallies pending since the last fold
        to the live windows (the job, every few hundred ms: today's charts
        are that much behind the votes at most, plus one fold)."""
        return await self.store.fold_live_windows()
