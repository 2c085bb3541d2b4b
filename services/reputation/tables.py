"""The reputation service's tables (schema `reputation`). Only this service writes them."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    func,
    text,
)

from services.common import vocabulary
from services.common.processed_events import processed_events_table, vote_tombstones_table

SCHEMA = "reputation"
metadata = MetaData(schema=SCHEMA)

TIERS = vocabulary.TIERS

agents = Table(
    "agents",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("tier", Text, nullable=False, server_default="free"),
    Column("reputation_score", Integer, nullable=False, server_default="0"),
    Column("vote_count", Integer, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("first_vote_at", DateTime(timezone=True)),
    Column("last_vote_at", DateTime(timezone=True)),
    Column("flagged", Boolean, nullable=False, server_default=text("false")),
    Column("flag_reason", Text, nullable=False, server_default=""),
    Column("flagged_at", DateTime(timezone=True)),
    # Standing (services/reputation/standing.py): trusted since trusted_at
    # (NULL: on probation, or flagged, which ends trust); flag_cleared_at is
    # when an admin last cleared a flag, which starts the flag cooldown.
    Column("trusted_at", DateTime(timezone=True)),
    Column("flag_cleared_at", DateTime(timezone=True)),
    # Registrations from one client address (services/reputation/registrations.py):
    # a keyed hash of the address (NULL: not counted), and how many agents it
    # had registered within the window, this one included.
    Column("registration_address", LargeBinary),
    Column("registration_crowd", Integer, nullable=False, server_default="1"),
    CheckConstraint("tier IN ('free', 'pro', 'enterprise')", name="agents_tier_valid"),
    CheckConstraint("reputation_score BETWEEN 0 AND 1000", name="agents_reputation_range"),
    # The moderation queue is ordered by flagged_at.
    CheckConstraint("NOT flagged OR flagged_at IS NOT NULL", name="agents_flag_has_time"),
    # The leaderboard walks this index: highest reputation first, id breaks ties.
    Index("agents_leaderboard_idx", text("reputation_score DESC"), "id"),
    # ListAgents: newest agent first, and the moderation queue, newest flag first.
    Index("agents_newest_idx", text("created_at DESC"), "id"),
    Index("agents_flag_queue_idx", text("flagged_at DESC"), "id", postgresql_where=text("flagged")),
    # The graduation pass looks only at agents on probation, oldest first.
    Index("agents_probation_idx", "created_at", postgresql_where=text("trusted_at IS NULL AND NOT flagged")),
    # A registration counts the recent ones from its address.
    Index(
        "agents_registration_address_idx",
        "registration_address",
        "created_at",
        postgresql_where=text("registration_address IS NOT NULL"),
    ),
)

# Only SHA-256 hashes of keys are stored. A rotated key gets revoked_at and
# stops verifying at once; at most one live key per agent.
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_hash", LargeBinary, primary_key=True),
    Column("agent_id", Text, ForeignKey("reputation.agents.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True)),
    # Set once the revocation reached Redis (marker and announcement): until
    # then a background job keeps trying, so a rotation made while Redis was
    # away still stops the old key everywhere once Redis is back.
    Column("revocation_announced_at", DateTime(timezone=True)),
    Index("api_keys_one_live_per_agent", "agent_id", unique=True, postgresql_where=text("revoked_at IS NULL")),
    Index(
        "api_keys_revocations_to_announce",
        "revoked_at",
        postgresql_where=text("revoked_at IS NOT NULL AND revocation_announced_at IS NULL"),
    ),
)

# Vote events already applied, so a redelivered event is not counted twice.
processed_events = processed_events_table(metadata)

# The reputation engine's own projection of the votes, built from vote
# events (this service never reads the vote service's tables). `earns` is
# false for votes cast while the agent was flagged: they never earn reputation.
votes = Table(
    "votes",
    metadata,
    Column("agent_id", Text, nullable=False),
    Column("item_type", Text, nullable=False),
    Column("item_id", Text, nullable=False),
    Column("direction", SmallInteger, nullable=False),
    Column("cast_at", DateTime(timezone=True), nullable=False),
    Column("earns", Boolean, nullable=False, server_default=text("true")),
    # The event that projected it (services/common/vote_order.py): an older
    # event of the same agent and item changes nothing. 0 for votes projected
    # before the ids were kept (any event is newer).
    Column("event_id", BigInteger, nullable=False, server_default="0"),
    PrimaryKeyConstraint("agent_id", "item_type", "item_id"),
    Index("reputation_votes_item_idx", "item_type", "item_id"),
)

# The retractions applied last per agent and item (while no newer vote is
# projected): a vote event older than its tombstone (applied out of order)
# is not projected.
vote_tombstones = vote_tombstones_table(metadata, "reputation")

# Each item's current score (up - down over all votes, flagged agents'
# included), whose sign decides agreements.
item_scores = Table(
    "item_scores",
    metadata,
    Column("item_type", Text, nullable=False),
    Column("item_id", Text, nullable=False),
    Column("score", Integer, nullable=False, server_default="0"),
    PrimaryKeyConstraint("item_type", "item_id"),
)
