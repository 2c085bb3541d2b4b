"""The catalog's rows: songs and tools (create, read, list, delete) and the
markers that keep a deleted item's id from being reused."""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import Table, and_, cast, delete, func, insert, literal, or_, select
from sqlalchemy.dialects.postgresql import insert as upsert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.errors import AlreadyExists, NotFound
from services.common.pubsub import CATALOG_CHANNEL
from services.ranking import trending
from services.ranking.items import ITEM_CLASSES, Item, ItemT
from services.ranking.store.item_cache import ItemCache, item_key
from services.ranking.submission_quota import Charge
from services.ranking.tables import (
    chart_deltas,
    chart_snapshots,
    chart_tops,
    chart_tops_state,
    chart_totals,
    daily_submissions,
    daily_tallies,
    deleted_items,
    songs,
    tools,
    votes,
)

TABLES: dict[str, Table] = {"song": songs, "tool": tools}

SONG_COLUMNS = [c for c in songs.c if c.name not in ("search", "search_text")]
TOOL_COLUMNS = [c for c in tools.c if c.name not in ("search", "search_text")]
COLUMNS = {"song": SONG_COLUMNS, "tool": TOOL_COLUMNS}
# The columns the trending sets are split by (trending.keys_for).
TRENDING_ATTRIBUTES = {"song": ("genre", "platform"), "tool": ("category",)}

log = logging.getLogger("ranking.store")


async def trending_attributes(
    conn: AsyncConnection, items: set[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, str]]:
    """Existing items among `items`, with the attributes trending filters on
    (read on the caller's connection, inside its transaction)."""
    found: dict[tuple[str, str], dict[str, str]] = {}
    for item_type, table in TABLES.items():
        ids = sorted(i for t, i in items if t == item_type)
        if not ids:
            continue
        names = TRENDING_ATTRIBUTES[item_type]
        query = select(table.c.id, *[table.c[n] for n in names]).where(table.c.id.in_(ids))
        for row in await conn.execute(query):
            found[(item_type, row.id)] = {n: row._mapping[n] for n in names}
    return found


class CatalogStore:
    def __init__(self, engine: AsyncEngine, redis: Redis, item_cache: ItemCache) -> None:
        self.engine = engine
        # Reads run in autocommit: no BEGIN/ROLLBACK round trips around a
        # single SELECT (writes use engine.begin() and real transactions).
        self.reads = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.redis = redis
        self.item_cache = item_cache

    async def create_item(self, kind: type[ItemT], values: dict[str, Any], charge: Charge | None = None) -> ItemT:
        """Stores the item; with a charge, counts it against the agent's day
        first and lets the charge refuse it (then nothing is stored or counted)."""
        item_type = kind.item_type
        try:
            async with self.engine.begin() as conn:
                if charge is not None:
                    charge.admit(await self._count_submission(conn, charge))
                row = (
                    await conn.execute(insert(TABLES[item_type]).values(**values).returning(*COLUMNS[item_type]))
                ).one()
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
        return kind(**row._mapping)

    async def _count_submission(self, conn: AsyncConnection, charge: Charge) -> int:
        """Adds one to the agent's day and returns its count. The row stays
        locked until the transaction ends: the agent's concurrent submissions
        are counted one after the other, and a refused or failed one
        (rolled back) is not counted at all."""
        statement = (
            upsert(daily_submissions)
            .values(agent_id=charge.agent_id, day=charge.day, used=1)
            .on_conflict_do_update(
                index_elements=[daily_submissions.c.agent_id, daily_submissions.c.day],
                set_={"used": daily_submissions.c.used + 1},
            )
            .returning(daily_submissions.c.used)
        )
        return int((await conn.execute(statement)).scalar_one())

    async def prune_submission_counts(self, keep_days: int = 7) -> int:
        """Drops the daily counts older than a week (the quota reads today's)."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(daily_submissions).where(daily_submissions.c.day < func.current_date() - keep_days)
            )
        return int(result.rowcount)

    async def _was_deleted(self, conn: AsyncConnection, item_type: str, item_id: str) -> bool:
        found = await conn.execute(
            select(deleted_items.c.item_id).where(
                deleted_items.c.item_type == item_type, deleted_items.c.item_id == item_id
            )
        )
        return found.first() is not None

    async def get_item(self, kind: type[ItemT], item_id: str) -> ItemT:
        """An item with its counts: from the Redis copy when present, else from
        PostgreSQL (and then copied to Redis)."""
        cached = await self.item_cache.read(kind, item_id)
        if cached is not None:
            return cached
        table = TABLES[kind.item_type]
        async with self.reads.connect() as conn:
            row = (await conn.execute(select(*COLUMNS[kind.item_type]).where(table.c.id == item_id))).one_or_none()
        if row is None:
            raise NotFound(f"{kind.item_type} {item_id!r} does not exist")
        item = kind(**row._mapping)
        await self.item_cache.fill(item)
        return item

    async def items_by_id(self, item_type: str, ids: list[str]) -> dict[str, Item]:
        if not ids:
            return {}
        table, kind = TABLES[item_type], ITEM_CLASSES[item_type]
        async with self.reads.connect() as conn:
            rows = await conn.execute(select(*COLUMNS[item_type]).where(table.c.id.in_(ids)))
            return {row.id: kind(**row._mapping) for row in rows}

    async def list_items(
        self,
        kind: type[ItemT],
        filters: dict[str, str],
        search: str | None,
        limit: int,
        after: tuple[str, str] | None,
    ) -> list[ItemT]:
        table = TABLES[kind.item_type]
        statement = select(*COLUMNS[kind.item_type]).order_by(table.c.created_at.desc(), table.c.id.desc()).limit(limit)
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
            return [kind(**row._mapping) for row in await conn.execute(statement)]

    async def delete_item(self, item_type: str, item_id: str) -> None:
        """Removes the item and everything counted for it: tallies (so every
        chart), snapshots (history), frozen tops (past charts, frozen again
        without it), the vote projection and trending."""
        table = TABLES[item_type]
        # The Redis copy goes first too: if Redis fails after the commit, no
        # stale copy may keep serving the deleted item.
        await self.item_cache.forget(item_type, item_id)
        async with self.engine.begin() as conn:
            attributes = await trending_attributes(conn, {(item_type, item_id)})
            result = await conn.execute(delete(table).where(table.c.id == item_id))
            if result.rowcount == 0:
                raise NotFound(f"{item_type} {item_id!r} does not exist")
            await conn.execute(insert(deleted_items).values(item_type=item_type, item_id=item_id))
            first_day = await conn.scalar(
                select(func.min(daily_tallies.c.day)).where(
                    daily_tallies.c.item_type == item_type, daily_tallies.c.item_id == item_id
                )
            )
            # Its pending window changes before its window rows: a fold
            # holding them is waited for, and its rows then deleted. The
            # frozen tops' state last: the fold locks it after the windows,
            # the freezer after the frozen rows.
            for derived in (chart_deltas, daily_tallies, chart_totals, chart_snapshots, chart_tops, votes):
                await _delete_item_rows(conn, derived, item_type, item_id)
            if first_day is not None:
                # The past charts it was on are frozen again without it, from
                # its first day with votes (its frozen rows went at once: the
                # rows after it move up a place, and a chart of 100 shows 99,
                # until then).
                state = chart_tops_state.c
                await conn.execute(
                    chart_tops_state.update()
                    .where(state.item_type == item_type)
                    .values(pending_from=func.least(state.pending_from, first_day))
                )
        # One round trip: out of every trending set, the copy dropped again,
        # and the vote service told (it caches which items exist).
        try:
            keys = trending.keys_for(item_type, attributes.get((item_type, item_id), {}))
            pipe = self.redis.pipeline(transaction=False)
            for key in keys:
                pipe.zrem(key, item_id)
            pipe.delete(item_key(item_type, item_id))
            pipe.publish(CATALOG_CHANNEL, f"{item_type}:{item_id}")
            await pipe.execute()
        except RedisError:
            log.warning("could not remove %s %s from trending; the next rebuild will", item_type, item_id)


async def _delete_item_rows(conn: AsyncConnection, derived: Table, item_type: str, item_id: str) -> None:
    await conn.execute(delete(derived).where(derived.c.item_type == item_type, derived.c.item_id == item_id))
