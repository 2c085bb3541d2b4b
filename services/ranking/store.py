"""All SQL of the ranking service."""

from __future__ import annotations

import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.typing import EncodableT
from sqlalchemy import and_, cast, delete, func, insert, literal, or_, select, text, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.common.errors import AlreadyExists, NotFound
from services.common.events import only_new
from services.common.pubsub import CATALOG_CHANNEL
from services.common.weights import DEFAULT_WEIGHT, WEIGHTS_KEY
from services.ranking import trending
from services.ranking.charts import Tally
from services.ranking.tables import (
    chart_snapshots,
    daily_tallies,
    deleted_items,
    processed_events,
    songs,
    tools,
    votes,
)

TABLES = {"song": songs, "tool": tools}

SONG_COLUMNS = [c for c in songs.c if c.name not in ("search", "search_text")]
TOOL_COLUMNS = [c for c in tools.c if c.name not in ("search", "search_text")]
COLUMNS = {"song": SONG_COLUMNS, "tool": TOOL_COLUMNS}


log = logging.getLogger("ranking.store")


# The Redis copy of catalog items for reads: field "row" holds the item's
# fixed fields as JSON, the count fields hold absolute values written by the
# event consumer after each commit (a refill from PostgreSQL never overwrites
# them: HSETNX), so the copy cannot go backwards.
ITEM_KEY = "ranking:item:{item_type}:{item_id}"
ITEM_TTL_S = 86_400
COUNT_FIELDS = {
    "song": ("up_votes", "down_votes"),
    "tool": ("up_votes", "down_votes", "rating_sum", "rating_count", "review_count"),
}
_FILL_IF_ABSENT = """
redis.call('HSETNX', KEYS[1], 'row', ARGV[2])
for i = 3, #ARGV, 2 do redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""

# A consumer batch's changes go to PostgreSQL as one JSON document per
# statement: one statement for PostgreSQL to plan and run, where an
# executemany ran one execution per row (measured: the consumers' largest
# cost, in Python and in PostgreSQL). One consumer applies the events; if
# two ever overlap (a rolling restart) and lock the same rows in another
# order, PostgreSQL aborts one batch as a deadlock and it is retried whole.
_ADD_COUNTS = {
    "song": text(
        """
        UPDATE ranking.songs AS t SET up_votes = t.up_votes + b.up, down_votes = t.down_votes + b.down
        FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS b(id text, up int, down int)
        WHERE t.id = b.id
        RETURNING t.id, t.up_votes, t.down_votes
        """
    ),
    "tool": text(
        """
        UPDATE ranking.tools AS t SET
            up_votes = t.up_votes + b.up, down_votes = t.down_votes + b.down,
            rating_sum = t.rating_sum + b.rsum, rating_count = t.rating_count + b.rcount,
            review_count = t.review_count + b.reviews
        FROM jsonb_to_recordset(CAST(:rows AS jsonb))
            AS b(id text, up int, down int, rsum int, rcount int, reviews int)
        WHERE t.id = b.id
        RETURNING t.id, t.up_votes, t.down_votes, t.rating_sum, t.rating_count, t.review_count
        """
    ),
}
_ADD_DAILY_TALLIES = text(
    """
    INSERT INTO ranking.daily_tallies AS t (item_type, item_id, day, up_votes, down_votes)
    SELECT item_type, item_id, day, up, down
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS b(item_type text, item_id text, day date, up int, down int)
    ON CONFLICT (item_type, item_id, day)
    DO UPDATE SET up_votes = t.up_votes + EXCLUDED.up_votes, down_votes = t.down_votes + EXCLUDED.down_votes
    """
)
_PROJECT_VOTES = text(
    """
    INSERT INTO ranking.votes (agent_id, item_type, item_id, direction, voted_at, weight)
    SELECT agent_id, item_type, item_id, direction, voted_at, weight
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
        AS b(agent_id text, item_type text, item_id text, direction smallint, voted_at timestamptz, weight float8)
    ON CONFLICT DO NOTHING
    """
)


def _scored(members: Any) -> list[tuple[str, float]]:
    """A ZRANGE ... WITHSCORES reply as (member, score) pairs."""
    return [(str(member), float(score)) for member, score in members]


# The time origin of the stored trending scores (see trending.py).
TRENDING_EPOCH_KEY = "ranking:trending-epoch"


class RankingStore:
    def __init__(
        self,
        engine: AsyncEngine,
        redis: Redis,
        redis_at_most_once: Redis | None = None,
        redis_hot_path: Redis | None = None,
    ) -> None:
        self.engine = engine
        # Item reads are on the vote path (the vote service asks whether an
        # item exists): through the client with a short timeout and the
        # circuit breaker, so a hung Redis sends them to PostgreSQL at once
        # instead of holding them past the caller's deadline.
        self._hot = redis_hot_path or redis
        self._fill = self._hot.register_script(_FILL_IF_ABSENT)
        # Reads run in autocommit: no BEGIN/ROLLBACK round trips around a
        # single SELECT (writes use engine.begin() and real transactions).
        self.reads = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.redis = redis
        # Trending moves by ZINCRBY, which must not run twice (redis_client.py).
        self._once = redis_at_most_once or redis

    # -- catalog -------------------------------------------------------------

    async def create_item(self, item_type: str, values: dict[str, Any]) -> dict[str, Any]:
        table = TABLES[item_type]
        try:
            async with self.engine.begin() as conn:
                row = (await conn.execute(insert(table).values(**values).returning(*COLUMNS[item_type]))).one()
                # Checked after the insert, in its transaction: a delete of
                # the same id committing meanwhile made the insert wait for
                # it, so its tombstone is visible here.
                if await self._was_deleted(conn, item_type, values["id"]):
                    raise AlreadyExists(
                        f"{item_type} {values['id']!r} was deleted, and the ids of deleted items are not reused "
                        "(the votes cast on it are kept); choose another id"
                    )
        except IntegrityError:
            raise AlreadyExists(f"{item_type} {values['id']!r} already exists; choose another id") from None
        return dict(row._mapping)

    async def _was_deleted(self, conn: AsyncConnection, item_type: str, item_id: str) -> bool:
        found = await conn.execute(
            select(deleted_items.c.item_id).where(
                deleted_items.c.item_type == item_type, deleted_items.c.item_id == item_id
            )
        )
        return found.first() is not None

    async def get_item(self, item_type: str, item_id: str) -> dict[str, Any]:
        """An item with its counts: from the Redis copy when present, else from
        PostgreSQL (and then copied to Redis)."""
        key = ITEM_KEY.format(item_type=item_type, item_id=item_id)
        try:
            cached = await self._hot.hgetall(key)
        except RedisError:
            cached = {}
        if "row" in cached and all(field in cached for field in COUNT_FIELDS[item_type]):
            item = json.loads(cached["row"])
            item["created_at"] = datetime.fromisoformat(item["created_at"])
            for field in COUNT_FIELDS[item_type]:
                item[field] = int(cached[field])
            item["score"] = item["up_votes"] - item["down_votes"]
            return item
        table = TABLES[item_type]
        async with self.reads.connect() as conn:
            row = (await conn.execute(select(*COLUMNS[item_type]).where(table.c.id == item_id))).one_or_none()
        if row is None:
            raise NotFound(f"{item_type} {item_id!r} does not exist")
        item = dict(row._mapping)
        await self._fill_item_copy(key, item_type, item)
        return item

    async def _fill_item_copy(self, key: str, item_type: str, item: dict[str, Any]) -> None:
        static = {k: v for k, v in item.items() if k not in COUNT_FIELDS[item_type] and k != "score"}
        static["created_at"] = static["created_at"].isoformat()
        args: list[Any] = [ITEM_TTL_S, json.dumps(static)]
        for field in COUNT_FIELDS[item_type]:
            args += [field, item[field]]
        try:
            await self._fill(keys=[key], args=args)
        except RedisError:
            pass  # reads fall back to PostgreSQL

    async def _copy_counts(self, counts: dict[tuple[str, str], dict[str, int]]) -> None:
        """Writes items' absolute counts to their Redis copies after a commit."""
        if not counts:
            return
        try:
            pipe = self.redis.pipeline(transaction=False)
            for (item_type, item_id), values in counts.items():
                key = ITEM_KEY.format(item_type=item_type, item_id=item_id)
                fields: dict[EncodableT, EncodableT] = {name: value for name, value in values.items()}
                pipe.hset(key, mapping=fields)
                pipe.expire(key, ITEM_TTL_S)
            await pipe.execute()
        except RedisError:
            # A stale copy must not outlive this: drop them (reads refill from PostgreSQL).
            try:
                await self.redis.delete(*[ITEM_KEY.format(item_type=t, item_id=i) for t, i in counts])
            except RedisError:
                log.warning("could not update the Redis copy of %d items' counts", len(counts))

    async def list_items(
        self,
        item_type: str,
        filters: dict[str, str],
        search: str | None,
        limit: int,
        after: tuple[str, str] | None,
    ) -> list[dict[str, Any]]:
        table = TABLES[item_type]
        statement = select(*COLUMNS[item_type]).order_by(table.c.created_at.desc(), table.c.id.desc()).limit(limit)
        for column, value in filters.items():
            if value:
                statement = statement.where(table.c[column] == value)
        if search is not None:
            # `search`: a prefix query from services.ranking.search ("" when
            # the client's q had no words: nothing matches).
            if not search:
                return []
            statement = statement.where(table.c.search.op("@@")(func.to_tsquery("simple", search)))
        if after is not None:
            created_at, last_id = after
            at = cast(literal(created_at), table.c.created_at.type)
            statement = statement.where(
                or_(table.c.created_at < at, and_(table.c.created_at == at, table.c.id < last_id))
            )
        async with self.reads.connect() as conn:
            return [dict(row._mapping) for row in await conn.execute(statement)]

    async def delete_item(self, item_type: str, item_id: str) -> None:
        """Removes the item and everything counted for it: tallies (so every
        chart), snapshots (history), the vote projection and trending."""
        table = TABLES[item_type]
        # The Redis copy goes first too: if Redis fails after the commit, no
        # stale copy may keep serving the deleted item.
        await self.redis.delete(ITEM_KEY.format(item_type=item_type, item_id=item_id))
        async with self.engine.begin() as conn:
            attributes = await self._attributes(conn, {(item_type, item_id)})
            result = await conn.execute(delete(table).where(table.c.id == item_id))
            if result.rowcount == 0:
                raise NotFound(f"{item_type} {item_id!r} does not exist")
            await conn.execute(insert(deleted_items).values(item_type=item_type, item_id=item_id))
            for derived in (daily_tallies, chart_snapshots, votes):
                await conn.execute(
                    delete(derived).where(derived.c.item_type == item_type, derived.c.item_id == item_id)
                )
        try:
            keys = trending.keys_for(item_type, attributes.get((item_type, item_id), {}))
            pipe = self.redis.pipeline(transaction=False)
            for key in keys:
                pipe.zrem(key, item_id)
            pipe.delete(ITEM_KEY.format(item_type=item_type, item_id=item_id))
            pipe.publish(CATALOG_CHANNEL, f"{item_type}:{item_id}")
            await pipe.execute()
        except RedisError:
            log.warning("could not remove %s %s from trending; the next rebuild will", item_type, item_id)

    # -- vote events ---------------------------------------------------------

    async def apply_events(self, events: Iterable[VoteEvent], trend: TrendClock) -> int:
        """Applies a batch of vote events exactly once; returns how many were new.

        One transaction: record the event ids (skipping ones seen before),
        drop events of deleted items, then one UPDATE per table, one upsert
        of daily tallies and one change of the vote projection for the whole
        batch, so a hot item costs one row update per batch, not per vote.
        The trending sets are moved after the commit (a failure there is
        repaired by the periodic rebuild from the projection).
        """
        events = list(events)
        if not events:
            return 0
        weights = await self._weights({e.agent_id for e in events if e.type == "vote"})
        async with self.engine.begin() as conn:
            fresh = await only_new(conn, processed_events, events)
            attributes = await self._attributes(conn, {(e.item_type, e.item_id) for e in fresh})
            fresh = [e for e in fresh if (e.item_type, e.item_id) in attributes]
            if not fresh:
                return 0
            counts = await self._apply_counts(conn, fresh)
            trend_deltas = await self._apply_projection(conn, fresh, weights, trend)
        await self._copy_counts(counts)
        await self._move_trending(trend_deltas, attributes)
        return len(fresh)

    async def _weights(self, agent_ids: set[str]) -> dict[str, float]:
        if not agent_ids:
            return {}
        ordered = sorted(agent_ids)
        try:
            values = await self.redis.hmget(WEIGHTS_KEY, ordered)
        except RedisError:
            values = [None] * len(ordered)
        return {agent: DEFAULT_WEIGHT if v is None else float(v) for agent, v in zip(ordered, values, strict=True)}

    async def _attributes(self, conn: AsyncConnection, items: set[tuple[str, str]]) -> dict[tuple[str, str], dict]:
        """Existing items among `items`, with the attributes trending filters on."""
        found: dict[tuple[str, str], dict] = {}
        for item_type, table in TABLES.items():
            ids = sorted(i for t, i in items if t == item_type)
            if not ids:
                continue
            names = ["genre", "platform"] if item_type == "song" else ["category"]
            query = select(table.c.id, *[table.c[n] for n in names]).where(table.c.id.in_(ids))
            for row in await conn.execute(query):
                found[(item_type, row.id)] = {n: row._mapping[n] for n in names}
        return found

    async def _apply_counts(
        self, conn: AsyncConnection, fresh: list[VoteEvent]
    ) -> dict[tuple[str, str], dict[str, int]]:
        """Applies the batch to the counters and daily tallies; returns the new
        absolute counts of every item it changed."""
        new_counts: dict[tuple[str, str], dict[str, int]] = {}
        totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
        days: dict[tuple[str, str, Any], list[int]] = defaultdict(lambda: [0, 0])
        for event in fresh:
            sign = 1 if event.type == "vote" else -1
            up, down = (sign, 0) if event.direction > 0 else (0, sign)
            t = totals[(event.item_type, event.item_id)]
            t[0] += up
            t[1] += down
            if event.HasField("rating"):
                t[2] += sign * event.rating
                t[3] += sign
            if event.has_review:
                t[4] += sign
            d = days[(event.item_type, event.item_id, event.voted_at.ToDatetime().date())]
            d[0] += up
            d[1] += down

        for item_type, statement in _ADD_COUNTS.items():
            rows = [
                {"id": item_id, "up": t[0], "down": t[1], "rsum": t[2], "rcount": t[3], "reviews": t[4]}
                for (kind, item_id), t in sorted(totals.items())
                if kind == item_type
            ]
            if not rows:
                continue
            fields = COUNT_FIELDS[item_type]
            for row in await conn.execute(statement, {"rows": json.dumps(rows)}):
                new_counts[(item_type, row.id)] = {f: int(row._mapping[f]) for f in fields}
        tally_rows = [
            {"item_type": k[0], "item_id": k[1], "day": k[2].isoformat(), "up": v[0], "down": v[1]}
            for k, v in sorted(days.items())
        ]
        await conn.execute(_ADD_DAILY_TALLIES, {"rows": json.dumps(tally_rows)})
        return new_counts

    async def _apply_projection(
        self, conn: AsyncConnection, fresh: list[VoteEvent], weights: dict[str, float], trend: TrendClock
    ) -> dict[tuple[str, str], float]:
        """Keeps ranking.votes equal to the live votes; returns the scaled
        trending change per item (what was added minus what was removed)."""
        final: dict[tuple[str, str, str], VoteEvent] = {}
        retracted: set[tuple[str, str, str]] = set()
        for event in fresh:
            key = (event.agent_id, event.item_type, event.item_id)
            final[key] = event
            if event.type != "vote":
                retracted.add(key)
        deltas: dict[tuple[str, str], float] = defaultdict(float)
        if retracted:
            removed = await conn.execute(
                delete(votes)
                .where(tuple_(votes.c.agent_id, votes.c.item_type, votes.c.item_id).in_(sorted(retracted)))
                .returning(votes.c.item_type, votes.c.item_id, votes.c.direction, votes.c.voted_at, votes.c.weight)
            )
            for row in removed:
                deltas[(row.item_type, row.item_id)] -= trend.scaled(row.weight, row.direction, row.voted_at)
        cast = []
        for (agent_id, item_type, item_id), event in sorted(final.items()):
            if event.type != "vote":
                continue
            voted_at = event.voted_at.ToDatetime(tzinfo=UTC)
            weight = weights.get(agent_id, DEFAULT_WEIGHT)
            cast.append(
                {
                    "agent_id": agent_id,
                    "item_type": item_type,
                    "item_id": item_id,
                    "direction": event.direction,
                    "voted_at": voted_at.isoformat(),
                    "weight": weight,
                }
            )
            deltas[(item_type, item_id)] += trend.scaled(weight, event.direction, voted_at)
        if cast:
            await conn.execute(_PROJECT_VOTES, {"rows": json.dumps(cast)})
        return deltas

    async def _move_trending(self, deltas: dict[tuple[str, str], float], attributes: dict) -> None:
        if not deltas:
            return
        try:
            pipe = self._once.pipeline(transaction=False)
            # A zero change still lists the item (a weightless vote is a vote).
            for (item_type, item_id), delta in sorted(deltas.items()):
                for key in trending.keys_for(item_type, attributes.get((item_type, item_id), {})):
                    pipe.zincrby(key, delta, item_id)
            await pipe.execute()
        except RedisError:
            log.warning("could not move trending for %d items; the next rebuild will", len(deltas))

    async def reweigh_agent(self, agent_id: str, trend: TrendClock) -> int:
        """Re-applies an agent's live votes with its current weight (0 while
        flagged), moving trending by the difference; returns votes changed."""
        weight = (await self._weights({agent_id}))[agent_id]
        async with self.engine.begin() as conn:
            rows = (
                await conn.execute(
                    text(
                        """
                        UPDATE ranking.votes v SET weight = :w
                        FROM (SELECT agent_id, item_type, item_id, weight AS old_weight
                              FROM ranking.votes WHERE agent_id = :a AND weight <> :w FOR UPDATE) old
                        WHERE v.agent_id = old.agent_id AND v.item_type = old.item_type AND v.item_id = old.item_id
                        RETURNING v.item_type, v.item_id, v.direction, v.voted_at, old.old_weight
                        """
                    ),
                    {"a": agent_id, "w": weight},
                )
            ).all()
            attributes = await self._attributes(conn, {(r.item_type, r.item_id) for r in rows})
        deltas: dict[tuple[str, str], float] = defaultdict(float)
        for row in rows:
            deltas[(row.item_type, row.item_id)] += trend.scaled(weight - row.old_weight, row.direction, row.voted_at)
        await self._move_trending(deltas, attributes)
        return len(rows)

    async def rebuild_trending(self, trend: TrendClock, horizon_half_lives: float = 20.0) -> int:
        """Recomputes every trending set from the projection (drift repair and
        epoch moves). Votes older than the horizon weigh < 2**-20 and are left out."""
        since = trend.now() - timedelta(seconds=trend.half_life_s * horizon_half_lives)
        query = text(
            """
            SELECT v.item_type, v.item_id, v.direction, v.voted_at, v.weight,
                   s.genre, s.platform, t.category
            FROM ranking.votes v
            LEFT JOIN ranking.songs s ON v.item_type = 'song' AND s.id = v.item_id
            LEFT JOIN ranking.tools t ON v.item_type = 'tool' AND t.id = v.item_id
            WHERE v.voted_at >= :since
            """
        )
        sets: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        async with self.reads.connect() as conn:
            for row in await conn.execute(query, {"since": since}):
                attributes = {"genre": row.genre, "platform": row.platform, "category": row.category}
                value = trend.scaled(row.weight, row.direction, row.voted_at)
                for key in trending.keys_for(row.item_type, attributes):
                    sets[key][row.item_id] += value
        stale = [key async for key in self.redis.scan_iter(match="trending:*", count=1000) if key not in sets]
        pipe = self.redis.pipeline(transaction=True)
        for key, members in sets.items():
            temporary = f"{key}:rebuild"
            pipe.delete(temporary)
            for start in range(0, len(members), 5000):
                chunk = dict(list(members.items())[start : start + 5000])
                pipe.zadd(temporary, chunk)
            pipe.rename(temporary, key)
        if stale:
            pipe.delete(*stale)
        await pipe.execute()
        return len(sets)

    async def trending_ids(self, key: str, limit: int) -> list[tuple[str, float]]:
        return _scored(await self.redis.zrevrange(key, 0, limit - 1, withscores=True))

    async def trending_intersection(self, keys: list[str], limit: int) -> list[tuple[str, float]]:
        """Top members present in every key (genre and platform together)."""
        temporary = f"trending:tmp:{uuid.uuid4().hex}"
        pipe = self.redis.pipeline(transaction=True)
        pipe.zinterstore(temporary, {keys[0]: 1.0, **{k: 0.0 for k in keys[1:]}})
        pipe.zrevrange(temporary, 0, limit - 1, withscores=True)
        pipe.delete(temporary)
        _, members, _ = await pipe.execute()
        return _scored(members)

    async def trending_epoch(self) -> datetime | None:
        raw = await self.redis.get(TRENDING_EPOCH_KEY)
        return datetime.fromisoformat(str(raw)) if raw else None

    async def set_trending_epoch(self, epoch: datetime) -> None:
        await self.redis.set(TRENDING_EPOCH_KEY, epoch.isoformat())

    async def trending_scores(self, item_type: str, ids: list[str]) -> dict[str, float]:
        if not ids:
            return {}
        try:
            scores = await self.redis.zmscore(f"trending:{item_type}", ids)
        except RedisError:
            return {}
        return {i: s for i, s in zip(ids, scores, strict=True) if s is not None}

    async def items_by_id(self, item_type: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        table = TABLES[item_type]
        async with self.reads.connect() as conn:
            rows = await conn.execute(select(*COLUMNS[item_type]).where(table.c.id.in_(ids)))
            return {row.id: dict(row._mapping) for row in rows}

    # -- charts ----------------------------------------------------------------

    async def window_tallies(
        self, item_type: str, first: date | None, last: date, filters: dict[str, str]
    ) -> list[Tally]:
        """Per-item up/down of the votes cast in [first, last] (items with votes only)."""
        table = TABLES[item_type]
        query = (
            select(
                daily_tallies.c.item_id,
                func.sum(daily_tallies.c.up_votes).label("up"),
                func.sum(daily_tallies.c.down_votes).label("down"),
            )
            .join(table, table.c.id == daily_tallies.c.item_id)
            .where(daily_tallies.c.item_type == item_type, daily_tallies.c.day <= last)
            .group_by(daily_tallies.c.item_id)
            .having(func.sum(daily_tallies.c.up_votes) + func.sum(daily_tallies.c.down_votes) > 0)
        )
        if first is not None:
            query = query.where(daily_tallies.c.day >= first)
        for name, value in filters.items():
            if value:
                query = query.where(table.c[name] == value)
        async with self.reads.connect() as conn:
            return [Tally(row.item_id, int(row.up), int(row.down)) for row in await conn.execute(query)]

    async def snapshot_stats(self, item_type: str, ids: list[str], until: date) -> dict[str, tuple[int, int]]:
        """(best rank, days on chart) from the daily snapshots up to `until`."""
        if not ids:
            return {}
        query = (
            select(chart_snapshots.c.item_id, func.min(chart_snapshots.c.rank), func.count())
            .where(
                chart_snapshots.c.item_type == item_type,
                chart_snapshots.c.item_id.in_(ids),
                chart_snapshots.c.day <= until,
            )
            .group_by(chart_snapshots.c.item_id)
        )
        async with self.reads.connect() as conn:
            return {row[0]: (int(row[1]), int(row[2])) for row in await conn.execute(query)}

    async def snapshotted_days(self, item_type: str) -> set[date]:
        async with self.reads.connect() as conn:
            rows = await conn.execute(
                select(chart_snapshots.c.day).where(chart_snapshots.c.item_type == item_type).distinct()
            )
            return {row[0] for row in rows}

    async def tally_days(self, item_type: str, before: date) -> set[date]:
        """Days before `before` with at least one counted vote (a day whose
        votes were all retracted has an empty chart: nothing to freeze)."""
        async with self.reads.connect() as conn:
            rows = await conn.execute(
                select(daily_tallies.c.day)
                .where(daily_tallies.c.item_type == item_type, daily_tallies.c.day < before)
                .group_by(daily_tallies.c.day)
                .having(func.sum(daily_tallies.c.up_votes + daily_tallies.c.down_votes) > 0)
            )
            return {row[0] for row in rows}

    async def save_snapshot(self, item_type: str, day: date, ranked: list[Tally]) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(chart_snapshots).where(chart_snapshots.c.item_type == item_type, chart_snapshots.c.day == day)
            )
            if ranked:
                await conn.execute(
                    insert(chart_snapshots),
                    [
                        {
                            "day": day,
                            "item_type": item_type,
                            "item_id": t.item_id,
                            "rank": n,
                            "score": t.score,
                            "up_votes": t.up,
                            "down_votes": t.down,
                        }
                        for n, t in enumerate(ranked, start=1)
                    ],
                )

    async def history(self, item_type: str, item_id: str, first: date, last: date) -> list[dict[str, Any]]:
        query = (
            select(chart_snapshots)
            .where(
                chart_snapshots.c.item_type == item_type,
                chart_snapshots.c.item_id == item_id,
                chart_snapshots.c.day.between(first, last),
            )
            .order_by(chart_snapshots.c.day)
        )
        async with self.reads.connect() as conn:
            return [dict(row._mapping) for row in await conn.execute(query)]


@dataclass(frozen=True)
class TrendClock:
    """The trending scale: half-life, epoch and the clock (injectable in tests)."""

    half_life_s: float
    epoch: datetime
    now: Callable[[], datetime]

    def scaled(self, weight: float, direction: int, voted_at: datetime) -> float:
        return trending.scaled_contribution(weight, direction, voted_at, self.epoch, self.half_life_s)
