"""The vote service's tables (schema `vote`). Only this service writes them.

A vote and its outbox event are written in one transaction, so an
acknowledged vote always has an event even while Redis is down; the relay
moves outbox rows to the Redis stream, and deletes them once Redis is known
to keep them (docs/operations.md, "Vote events").
"""

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

SCHEMA = "vote"
metadata = MetaData(schema=SCHEMA)

votes = Table(
    "votes",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("agent_id", Text, nullable=False),
    Column("item_type", Text, nullable=False),
    Column("item_id", Text, nullable=False),
    # +1 up, -1 down: SUM(direction) is the score.
    Column("direction", SmallInteger, nullable=False),
    Column("comment", Text, nullable=False, server_default=""),
    Column("rating", SmallInteger),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # One vote per agent per item; item_type is part of the key because a
    # song and a tool may share an id.
    UniqueConstraint("agent_id", "item_type", "item_id", name="votes_one_per_agent_item"),
    CheckConstraint("item_type IN ('song', 'tool')", name="votes_item_type_valid"),
    CheckConstraint("direction IN (-1, 1)", name="votes_direction_valid"),
    CheckConstraint("rating IS NULL OR (rating BETWEEN 1 AND 5 AND item_type = 'tool')", name="votes_rating_valid"),
    Index("votes_item_idx", "item_type", "item_id", "direction"),
    Index("votes_agent_recent_idx", "agent_id", text("created_at DESC"), text("id DESC")),
    Index(
        "votes_reviews_idx",
        "item_type",
        "item_id",
        text("created_at DESC"),
        text("id DESC"),
        postgresql_where=text("comment <> '' OR rating IS NOT NULL"),
    ),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("payload", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Set when relayed: the stream entry id Redis gave the event (ms-seq).
    # The row is kept until that entry is known to be durable in Redis.
    Column("relayed_at", DateTime(timezone=True)),
    Column("stream_ms", BigInteger),
    Column("stream_seq", BigInteger),
    Index("outbox_waiting_idx", "id", postgresql_where=text("relayed_at IS NULL")),
    Index("outbox_relayed_idx", "stream_ms", "stream_seq", postgresql_where=text("relayed_at IS NOT NULL")),
)

# Votes each agent cast per UTC day, append-only: a vote adds one in the
# transaction that stores it, and a retraction takes nothing back. The quota
# counts this when Redis cannot answer (and raises Redis's counters to it
# after an outage), so retracting and voting again never buys more votes,
# whether Redis is up or down. Rows older than a week are pruned.
daily_usage = Table(
    "daily_usage",
    metadata,
    Column("agent_id", Text, primary_key=True),
    Column("day", Date, primary_key=True),
    Column("used", Integer, nullable=False),
)
