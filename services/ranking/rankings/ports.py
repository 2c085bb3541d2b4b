"""What the ranking reads and jobs need of the stores (services/ranking/store/),
one narrow protocol per need, so tests/unit/ranking/ runs each class against
in-memory fakes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import date, datetime
from typing import Any, Protocol

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.ranking.charts import HistoryPoint, Tally
from services.ranking.frozen_tops import FreezeInput, FrozenRow
from services.ranking.items import Item
from services.ranking.trending import TrendClock
from services.ranking.vote_batch import ProjectedVote


class ProjectionPort(Protocol):
    async def apply_events(self, events: Iterable[VoteEvent], trend: TrendClock) -> int: ...

    async def reweigh_agent(self, agent_id: str, trend: TrendClock, changed_days: set[tuple[str, date]]) -> int:
        """Re-weighs the agent's live votes; adds the (item type, day) tallies
        it changed to `changed_days` as they commit; returns the votes changed."""
        ...

    async def repair_votes(
        self, agent_id: str, plan: Callable[[Any], Awaitable[list[VoteEvent]]], trend: TrendClock
    ) -> tuple[list[ProjectedVote], list[ProjectedVote]]:
        """Applies the events `plan` returns (run in the repair's transaction)
        to the agent's projected votes, tallies and trending; returns the
        votes given up and taken in."""
        ...


class TrendEpochPort(Protocol):
    async def epoch(self) -> datetime | None: ...

    async def set_epoch(self, epoch: datetime) -> None: ...

    async def rebuild(self, trend: TrendClock) -> int: ...


class TrendingTopPort(Protocol):
    async def top(self, key: str, limit: int) -> list[tuple[str, float]]: ...

    async def top_in_all(self, keys: list[str], limit: int) -> list[tuple[str, float]]: ...


class TrendScoresPort(Protocol):
    async def scores(self, item_type: str, ids: list[str]) -> dict[str, float]: ...


class ItemsPort(Protocol):
    async def items_by_id(self, item_type: str, ids: list[str]) -> Mapping[str, Item]: ...


class WindowTalliesPort(Protocol):
    async def window_tallies(
        self, item_type: str, first: date | None, last: date, filters: dict[str, str]
    ) -> list[Tally]: ...


class LiveWindowsPort(Protocol):
    async def roll_live_windows(self, today: date) -> date | None:
        """Moves the live windows to end on `today` (never back); returns their day after."""
        ...

    async def fold_live_windows(self) -> int:
        """Adds the changes of the daily tallies not in the live windows yet; returns the rows changed."""
        ...


class LiveRanksPort(Protocol):
    async def live_ranks(
        self, period: str, item_type: str, ids: Iterable[str], sort: str, filters: dict[str, str]
    ) -> dict[str, tuple[int, Tally]]:
        """Each item's rank and votes in a live window ("weekly",
        "weekly:previous"...), for those of `ids` on it."""
        ...


class LiveChartsPort(LiveWindowsPort, LiveRanksPort, Protocol):
    async def live_top(
        self, period: str, item_type: str, sort: str, filters: dict[str, str], limit: int
    ) -> list[Tally]:
        """The first `limit` items of a live window in the sort's order."""
        ...


class FrozenTopPort(Protocol):
    async def frozen_top(
        self, item_type: str, period: str, sort: str, day: date, limit: int
    ) -> list[tuple[Tally, int | None]] | None:
        """A finished day's frozen chart (no filters), each row with its rank
        one period earlier; None when the day is not frozen yet."""
        ...


class FreezerPort(Protocol):
    def freezing(self) -> AbstractAsyncContextManager[bool]:
        """Whether this replica's pass may run (one replica at a time)."""
        ...

    async def freeze_input(self, item_type: str, max_days: int) -> FreezeInput | None:
        """The next run of finished days to freeze, read in one snapshot."""
        ...

    async def save_tops(self, work: FreezeInput, frozen: Mapping[date, list[FrozenRow]]) -> None:
        """Replaces the run's days with their frozen rows, marked frozen."""
        ...


class ChartStatsPort(WindowTalliesPort, LiveChartsPort, FrozenTopPort, Protocol):
    async def snapshot_stats(self, item_type: str, ids: list[str], until: date) -> dict[str, tuple[int, int]]: ...


class WeightedScoresPort(Protocol):
    async def weighted_scores(self, item_type: str, ids: list[str]) -> dict[str, float]:
        """All-time weighted score of each item (those with votes)."""
        ...


class SnapshotsPort(Protocol):
    async def snapshotted_days(self, item_type: str) -> set[date]: ...

    async def tally_days(self, item_type: str, before: date) -> set[date]: ...

    async def day_tallies(self, item_type: str, days: list[date]) -> dict[date, list[Tally]]:
        """Each day's per-item tallies (the days' daily charts, unranked)."""
        ...

    async def save_snapshots(self, item_type: str, ranked_days: dict[date, list[Tally]]) -> None:
        """Replaces each day's frozen chart with its ranking (rank 1 first)."""
        ...


class HistoryPort(WindowTalliesPort, LiveWindowsPort, LiveRanksPort, Protocol):
    async def history(self, item_type: str, item_id: str, first: date, last: date) -> list[HistoryPoint]: ...
