"""A consumer's record of the vote events it applied, so a redelivered event is skipped.

The stream delivers at least once (services.common.events.consume); each
consumer keeps this table in its own schema and checks every batch against it.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import BigInteger, Column, DateTime, Index, MetaData, PrimaryKeyConstraint, Table, Text, func
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


def vote_tombstones_table(metadata: MetaData, service: str) -> Table:
    """A consumer's tombstones: per agent and item, the retraction it applied
    last while no newer vote is projected, so a vote event older than it
    (applied out of order) is not projected (services/common/vote_order.py).
    Pruned with the processed event ids: redelivery is within minutes."""
    return Table(
        "vote_tombstones",
        metadata,
        Column("agent_id", Text, nullable=False),
        Column("item_type", Text, nullable=False),
        Column("item_id", Text, nullable=False),
        Column("event_id", BigInteger, nullable=False),
        Column("retracted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("agent_id", "item_type", "item_id"),
        Index(f"{service}_vote_tombstones_age_idx", "retracted_at"),
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


async def prune_tombstones(engine: AsyncEngine, tombstones: Table, keep_days: int = PROCESSED_EVENTS_KEEP_DAYS) -> int:
    """Forgets tombstones older than keep_days (a vote event that late is not expected)."""
    async with engine.begin() as conn:
        result = await conn.execute(
            tombstones.delete().where(tombstones.c.retracted_at < func.now() - timedelta(days=keep_days))
        )
    return result.rowcount
