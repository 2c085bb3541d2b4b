"""In-memory fakes of the ranking stores' ports (services/ranking/store/),
keeping the contracts the domain relies on: unique ids never reused after a
delete, newest-first keyset listing, window sums over the daily tallies
joined with the catalog (so filters and deletions apply), frozen snapshots."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.exc import OperationalError

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.common.errors import AlreadyExists, NotFound
from services.ranking import charts, trending
from services.ranking.charts import NO_WEIGHT, HistoryPoint, Tally
from services.ranking.frozen_tops import LOOKBACK_DAYS, FreezeInput, FrozenRow
from services.ranking.items import Item, ItemT, Song, Tool
from services.ranking.submission_quota import Charge
from services.ranking.trending import TrendClock
from services.ranking.vote_batch import ProjectedVote

_COUNTS = {"up_votes": 0, "down_votes": 0, "score": 0, "rating_sum": 0, "rating_count": 0, "review_count": 0}


def song(item_id: str, genre: str = "", platform: str = "udio", **values: Any) -> Song:
    base: dict[str, Any] = {
        "id": item_id,
        "title": f"title {item_id}",
        "artist": f"artist {item_id}",
        "platform": platform,
        "platform_url": "",
        "genre": genre,
        "mood": "",
        "tempo": None,
        "submitted_by": "agent-1",
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        "up_votes": 0,
        "down_votes": 0,
        "score": 0,
    }
    return Song(**(base | values))


def tool(item_id: str, category: str = "", **values: Any) -> Tool:
    base: dict[str, Any] = {
        "id": item_id,
        "name": f"name {item_id}",
        "website": "",
        "affiliate_link": "",
        "commission_rate": 0,
        "category": category,
        "features": [],
        "pricing": {},
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    } | {k: 0 for k in ("up_votes", "down_votes", "score", "rating_sum", "rating_count", "review_count")}
    return Tool(**(base | values))


class FakeCatalogStore:
    """Songs and tools by type and id; created_at advances one second per create.
    Submissions charged to an agent's day are counted as the real store does:
    only when the item is stored."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Item]] = {"song": {}, "tool": {}}
        self.submissions: dict[tuple[str, date], int] = {}
        self.search_text: dict[tuple[str, str], str] = {}
        self.deleted: set[tuple[str, str]] = set()
        self.reads = 0
        self._ticks = itertools.count()

    def put(self, item: Item, search_text: str = "") -> Item:
        self.items[item.item_type][item.id] = item
        self.search_text[(item.item_type, item.id)] = search_text
        return item

    async def create_item(self, kind: type[ItemT], values: dict[str, Any], charge: Charge | None = None) -> ItemT:
        if charge is not None:
            used = self.submissions.get((charge.agent_id, charge.day), 0) + 1
            charge.admit(used)
        key = (kind.item_type, values["id"])
        if key in self.deleted or values["id"] in self.items[kind.item_type]:
            raise AlreadyExists(f"{kind.item_type} {values['id']!r} already exists or was deleted")
        row = dict(values)
        search_text = row.pop("search_text", "")
        names = {f.name for f in fields(kind)}
        row = {k: v for k, v in _COUNTS.items() if k in names} | row
        row["created_at"] = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=next(self._ticks))
        item = kind(**row)
        self.put(item, search_text)
        if charge is not None:
            self.submissions[(charge.agent_id, charge.day)] = used
        return item

    async def get_item(self, kind: type[ItemT], item_id: str) -> ItemT:
        self.reads += 1
        await asyncio.sleep(0)  # a round trip: concurrent readers overlap
        item = self.items[kind.item_type].get(item_id)
        if not isinstance(item, kind):
            raise NotFound(f"{kind.item_type} {item_id!r} does not exist")
        return item

    async def list_items(
        self,
        kind: type[ItemT],
        filters: dict[str, str],
        search: str | None,
        limit: int,
        after: tuple[str, str] | None,
    ) -> list[ItemT]:
        if search == "":
            return []
        found = [i for i in self.items[kind.item_type].values() if isinstance(i, kind)]
        found = [i for i in found if all(not v or getattr(i, k) == v for k, v in filters.items())]
        if search is not None:
            found = [i for i in found if _matches(search, self.search_text[(kind.item_type, i.id)])]
        found.sort(key=lambda i: (i.created_at, i.id), reverse=True)
        if after is not None:
            position = (datetime.fromisoformat(after[0]), after[1])
            found = [i for i in found if (i.created_at, i.id) < position]
        return found[:limit]

    async def items_by_id(self, item_type: str, ids: list[str]) -> dict[str, Item]:
        return {i: self.items[item_type][i] for i in ids if i in self.items[item_type]}

    async def delete_item(self, item_type: str, item_id: str) -> None:
        if self.items[item_type].pop(item_id, None) is None:
            raise NotFound(f"{item_type} {item_id!r} does not exist")
        self.deleted.add((item_type, item_id))


def _matches(prefix_query: str, search_text: str) -> bool:
    """to_tsquery('simple', 'a:* & b:*') against the item's search text."""
    words = re.findall(r"[^\W_]+", search_text)
    wanted = [term.removesuffix(":*") for term in prefix_query.split(" & ")]
    return all(any(w.startswith(prefix) for w in words) for prefix in wanted)


class FakeTrendingSets:
    """Sorted sets by key, scores as stored (scaled by the epoch)."""

    def __init__(self) -> None:
        self.sets: dict[str, dict[str, float]] = defaultdict(dict)
        self.stored_epoch: datetime | None = None
        self.rebuilt_with: list[TrendClock] = []
        self.top_reads = 0

    def add(self, item: Item, stored: float) -> None:
        attributes = {"genre": getattr(item, "genre", ""), "platform": getattr(item, "platform", "")}
        attributes["category"] = getattr(item, "category", "")
        for key in trending.keys_for(item.item_type, attributes):
            self.sets[key][item.id] = self.sets[key].get(item.id, 0.0) + stored

    async def top(self, key: str, limit: int) -> list[tuple[str, float]]:
        self.top_reads += 1
        await asyncio.sleep(0)  # a round trip: concurrent readers overlap
        # ZREVRANGE: highest score first, ties by member, descending.
        return sorted(self.sets.get(key, {}).items(), key=lambda m: (m[1], m[0]), reverse=True)[:limit]

    async def top_in_all(self, keys: list[str], limit: int) -> list[tuple[str, float]]:
        first = self.sets.get(keys[0], {})
        common = {m: s for m, s in first.items() if all(m in self.sets.get(k, {}) for k in keys[1:])}
        return sorted(common.items(), key=lambda m: (m[1], m[0]), reverse=True)[:limit]

    async def scores(self, item_type: str, ids: list[str]) -> dict[str, float]:
        whole = self.sets.get(f"trending:{item_type}", {})
        return {i: whole[i] for i in ids if i in whole}

    async def epoch(self) -> datetime | None:
        return self.stored_epoch

    async def set_epoch(self, epoch: datetime) -> None:
        self.stored_epoch = epoch

    async def rebuild(self, trend: TrendClock) -> int:
        self.rebuilt_with.append(trend)
        return len(self.sets)


@dataclass
class FakeChartStore:
    """Daily tallies (raw counts and weighted sums) and snapshots; window
    sums see only items still in `catalog`."""

    catalog: FakeCatalogStore
    tallies: dict[tuple[str, str, date], list[float]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0, 0]))
    snapshots: dict[tuple[str, date], list[Tally]] = field(default_factory=dict)
    window_reads: int = 0
    # The live windows' day (None: not rolled yet), and their reads.
    live_day: date | None = None
    live_reads: int = 0
    # The frozen tops of finished days (what save_tops wrote), and their reads.
    tops: dict[tuple[str, str, str, date], list[FrozenRow]] = field(default_factory=dict)
    frozen_days: set[tuple[str, date]] = field(default_factory=set)
    frozen_reads: int = 0

    def vote(self, item: Item, day: date, up: int = 0, down: int = 0, weight: float = 1.0) -> None:
        """`up` and `down` votes of agents whose chart weight is `weight`."""
        tally = self.tallies[(item.item_type, item.id, day)]
        tally[0] += up
        tally[1] += down
        tally[2] += up * weight
        tally[3] += down * weight

    def reweigh(self, item: Item, day: date, weighted_up: float = 0.0, weighted_down: float = 0.0) -> None:
        """What a re-weigh does to a day's tally: its weighted sums move, its counts stay."""
        tally = self.tallies[(item.item_type, item.id, day)]
        tally[2] += weighted_up
        tally[3] += weighted_down

    def _present(self, item_type: str, kind: str, item_id: str) -> Item | None:
        return self.catalog.items[item_type].get(item_id) if kind == item_type else None

    async def window_tallies(
        self, item_type: str, first: date | None, last: date, filters: dict[str, str]
    ) -> list[Tally]:
        self.window_reads += 1
        await asyncio.sleep(0)  # a round trip: concurrent readers overlap
        return self._window_sums(item_type, first, last, filters)

    def _window_sums(self, item_type: str, first: date | None, last: date, filters: dict[str, str]) -> list[Tally]:
        sums: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0, 0])
        for (kind, item_id, day), counts in self.tallies.items():
            item = self._present(item_type, kind, item_id)
            if item is None or day > last or (first is not None and day < first):
                continue
            if any(value and getattr(item, name) != value for name, value in filters.items()):
                continue
            sums[item_id] = [a + b for a, b in zip(sums[item_id], counts, strict=True)]
        return [_tally(i, counts) for i, counts in sums.items() if counts[0] + counts[1] > 0]

    async def roll_live_windows(self, today: date) -> date | None:
        self.live_day = max(self.live_day or today, today)
        return self.live_day

    async def fold_live_windows(self) -> int:
        return 0  # the fake's windows are summed from the tallies on each read

    async def _live_window(self, period: str, item_type: str, sort: str, filters: dict[str, str]) -> list[Tally]:
        """A live window ranked whole (the real store reads an index): the
        window of `period` ending on the windows' day, or the one before it."""
        assert self.live_day is not None, "read of a live window before its roll-over"
        self.live_reads += 1
        await asyncio.sleep(0)  # a round trip
        name, _, previous = period.partition(":")
        day = charts.previous_date(name, self.live_day) if previous else self.live_day
        first, last = charts.window(name, day)
        return charts.rank(charts.counted(self._window_sums(item_type, first, last, filters)), sort)

    async def live_top(
        self, period: str, item_type: str, sort: str, filters: dict[str, str], limit: int
    ) -> list[Tally]:
        return (await self._live_window(period, item_type, sort, filters))[:limit]

    async def live_ranks(
        self, period: str, item_type: str, ids: Iterable[str], sort: str, filters: dict[str, str]
    ) -> dict[str, tuple[int, Tally]]:
        wanted = set(ids)
        ranked = await self._live_window(period, item_type, sort, filters)
        return {t.item_id: (n, t) for n, t in enumerate(ranked, start=1) if t.item_id in wanted}

    async def day_tallies(self, item_type: str, days: list[date]) -> dict[date, list[Tally]]:
        found: dict[date, list[Tally]] = defaultdict(list)
        for (kind, item_id, day), counts in self.tallies.items():
            if self._present(item_type, kind, item_id) and day in days and counts[0] + counts[1] > 0:
                found[day].append(_tally(item_id, counts))
        return found

    async def weighted_scores(self, item_type: str, ids: list[str]) -> dict[str, float]:
        scores: dict[str, float] = {}
        for (kind, item_id, _), counts in self.tallies.items():
            if kind == item_type and item_id in ids:
                scores[item_id] = scores.get(item_id, 0.0) + counts[2] - counts[3]
        return scores

    @contextlib.asynccontextmanager
    async def freezing(self) -> AsyncIterator[bool]:
        yield True

    async def freeze_input(self, item_type: str, max_days: int) -> FreezeInput | None:
        """Every finished day not frozen yet, from the first tallied one
        (the fake marks nothing: tests that change past tallies unfreeze)."""
        assert self.live_day is not None, "the freezer runs after the roll-over"
        days = sorted(day for (kind, _, day) in self.tallies if kind == item_type)
        if not days:
            return None
        frozen = {day for kind, day in self.frozen_days if kind == item_type}
        first = next((d for d in _days(days[0], self.live_day - timedelta(days=1)) if d not in frozen), None)
        if first is None:
            return None
        last = min(self.live_day - timedelta(days=1), first + timedelta(days=max_days - 1))
        lookback = first - timedelta(days=LOOKBACK_DAYS)
        tallies = {d: self._window_sums(item_type, d, d, {}) for d in _days(lookback, last)}
        before = self._window_sums(item_type, None, first - timedelta(days=1), {})
        return FreezeInput(item_type, first, last, before, tallies)

    async def save_tops(self, work: FreezeInput, frozen: Mapping[date, list[FrozenRow]]) -> None:
        for day, rows in frozen.items():
            self.frozen_days.add((work.item_type, day))
            for key in [k for k in self.tops if k[0] == work.item_type and k[3] == day]:
                del self.tops[key]
            for row in rows:
                self.tops.setdefault((work.item_type, row.period, row.sort, day), []).append(row)

    async def frozen_top(
        self, item_type: str, period: str, sort: str, day: date, limit: int
    ) -> list[tuple[Tally, int | None]] | None:
        if (item_type, day) not in self.frozen_days:
            return None
        self.frozen_reads += 1
        rows = sorted(self.tops.get((item_type, period, sort, day), []), key=lambda r: r.rank)[:limit]
        return [(r.tally, r.previous_rank) for r in rows]

    def unfreeze(self) -> None:
        self.frozen_days.clear()
        self.tops.clear()

    async def snapshot_stats(self, item_type: str, ids: list[str], until: date) -> dict[str, tuple[int, int]]:
        stats: dict[str, tuple[int, int]] = {}
        for (kind, day), ranked in self.snapshots.items():
            if kind != item_type or day > until:
                continue
            for rank, tally in enumerate(ranked, start=1):
                if tally.item_id in ids:
                    best, days = stats.get(tally.item_id, (rank, 0))
                    stats[tally.item_id] = (min(best, rank), days + 1)
        return stats

    async def snapshotted_days(self, item_type: str) -> set[date]:
        return {day for kind, day in self.snapshots if kind == item_type}

    async def tally_days(self, item_type: str, before: date) -> set[date]:
        days: dict[date, float] = defaultdict(float)
        for (kind, _, day), counts in self.tallies.items():
            if kind == item_type and day < before:
                days[day] += counts[2] + counts[3]
        return {day for day, weight in days.items() if weight > NO_WEIGHT}

    async def save_snapshots(self, item_type: str, ranked_days: dict[date, list[Tally]]) -> None:
        for day, ranked in ranked_days.items():
            self.snapshots[(item_type, day)] = list(ranked)

    async def history(self, item_type: str, item_id: str, first: date, last: date) -> list[HistoryPoint]:
        points = []
        for (kind, day), ranked in sorted(self.snapshots.items(), key=lambda s: s[0][1]):
            if kind != item_type or not first <= day <= last:
                continue
            for rank, tally in enumerate(ranked, start=1):
                if tally.item_id == item_id:
                    points.append(HistoryPoint(day, rank, tally.score, tally.up, tally.down))
        return points


def _tally(item_id: str, counts: list[float]) -> Tally:
    up, down, weighted_up, weighted_down = counts
    return Tally(item_id, int(up), int(down), weighted_up, weighted_down)


class FakeProjection:
    """Records what Rankings hands to the projection."""

    def __init__(self) -> None:
        self.applied: list[tuple[list[VoteEvent], TrendClock]] = []
        self.reweighed: list[tuple[str, TrendClock]] = []
        # What a re-weigh reports as changed (item type, day), per agent.
        self.changed_days: dict[str, set[tuple[str, date]]] = {}
        self.failures = 0  # re-weighs to fail before one succeeds

    async def apply_events(self, events: Iterable[VoteEvent], trend: TrendClock) -> int:
        events = list(events)
        self.applied.append((events, trend))
        return len(events)

    async def reweigh_agent(self, agent_id: str, trend: TrendClock, changed_days: set[tuple[str, date]]) -> int:
        self.reweighed.append((agent_id, trend))
        if self.failures:
            self.failures -= 1
            changed_days.add(("song", date(2000, 1, 1)))  # a first chunk committed, then it failed
            raise OperationalError("deadlock detected", None, Exception())
        changed_days.update(self.changed_days.get(agent_id, set()))
        return len(changed_days)

    async def repair_votes(
        self, agent_id: str, plan: Callable[[Any], Awaitable[list[VoteEvent]]], trend: TrendClock
    ) -> tuple[list[ProjectedVote], list[ProjectedVote]]:
        self.applied.append((await plan(None), trend))
        return [], []


def _days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)
