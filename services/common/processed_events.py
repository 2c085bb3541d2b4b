"""A consumer's record of the vote events it applied, so a redelivered event is skipped.

The stream delivers at least once (services.common.events.consume); each
consumer keeps this table in its own schema and checks every batch against it.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import BigInteger, Column, DateTime, MetaData, Table, func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent


def processed_events_table(metadata: MetaData) -> Table:
    """A consumer's record of the event ids it applied (in its own schema)."""
    return Table(
        "processed_events",
        metadata,
        Column("event_id", BigInteger, primary_key=True),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


async def only_new(conn: AsyncConnection, processed: Table, events: list[VoteEvent]) -> list[VoteEvent]:
    """Records the batch's event ids and returns the events not applied before.

    Call it inside the transaction that applies them: a rollback forgets the
    ids too, so a redelivered batch is applied then. Duplicates inside the
    batch (a relay retry) are applied once.
    """
    unique = list({event.event_id: event for event in events}.values())
    if not unique:
        return []
    # executemany form (a list of parameter sets): the statement compiles
    # once and is cached; `.values([...])` would recompile for every batch.
    inserted = await conn.execute(
        pg_insert(processed).on_conflict_do_nothing().returning(processed.c.event_id),
        [{"event_id": event.event_id} for event in unique],
    )
    fresh = set(inserted.scalars())
    return [event for event in unique if event.event_id in fresh]


# Redelivery happens within minutes (claims after 30 s); a week is ample.
PROCESSED_EVENTS_KEEP_DAYS = 7


async def prune_processed(engine: AsyncEngine, processed: Table, keep_days: int = PROCESSED_EVENTS_KEEP_DAYS) -> int:
    """Forgets applied event ids older than keep_days (the table would grow forever)."""
    async with engine.begin() as conn:
        result = await conn.execute(
            processed.delete().where(processed.c.processed_at < func.now() - timedelta(days=keep_days))
        )
    return result.rowcount
