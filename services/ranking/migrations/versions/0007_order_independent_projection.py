"""order-independent vote projection: event ids, what each vote added, tombstones

Revision ID: 0007
Revises: 0006
Create Date: 2027-01-10 10:00:00

Each projected vote keeps the id of the event that projected it, and the
rating and review it added to its item's counts; retractions leave a
tombstone. So an event applied out of order (older than what is held for its
agent and item) changes nothing (services/common/vote_order.py). Votes
projected before this get event id 0 (any event is newer) and has_review
NULL (unknown: a retraction takes back what its event carries, as before).
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("votes", sa.Column("event_id", sa.BigInteger(), server_default="0", nullable=False), schema="ranking")
    op.add_column("votes", sa.Column("rating", sa.SmallInteger(), nullable=True), schema="ranking")
    op.add_column("votes", sa.Column("has_review", sa.Boolean(), nullable=True), schema="ranking")
    op.create_table(
        "vote_tombstones",
        sa.Column("agent_id", sa.Text(), nullable=False),
        sa.Column("item_type", sa.Text(), nullable=False),
        sa.Column("item_id", sa.Text(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("retracted_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("agent_id", "item_type", "item_id"),
        schema="ranking",
    )
    op.create_index(
        "ranking_vote_tombstones_age_idx", "vote_tombstones", ["retracted_at"], unique=False, schema="ranking"
    )


def downgrade() -> None:
    op.drop_index("ranking_vote_tombstones_age_idx", table_name="vote_tombstones", schema="ranking")
    op.drop_table("vote_tombstones", schema="ranking")
    op.drop_column("votes", "has_review", schema="ranking")
    op.drop_column("votes", "rating", schema="ranking")
    op.drop_column("votes", "event_id", schema="ranking")
