"""order-independent vote projection: event ids and tombstones

Revision ID: 0006
Revises: 0005
Create Date: 2027-01-10 10:00:00

Each projected vote keeps the id of the event that projected it, and
retractions leave a tombstone, so an event applied out of order (older than
what is held for its agent and item) changes nothing
(services/common/vote_order.py). Votes projected before this get event id 0
(any event is newer).
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "votes", sa.Column("event_id", sa.BigInteger(), server_default="0", nullable=False), schema="reputation"
    )
    op.create_table(
        "vote_tombstones",
        sa.Column("agent_id", sa.Text(), nullable=False),
        sa.Column("item_type", sa.Text(), nullable=False),
        sa.Column("item_id", sa.Text(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("retracted_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("agent_id", "item_type", "item_id"),
        schema="reputation",
    )
    op.create_index(
        "reputation_vote_tombstones_age_idx", "vote_tombstones", ["retracted_at"], unique=False, schema="reputation"
    )


def downgrade() -> None:
    op.drop_index("reputation_vote_tombstones_age_idx", table_name="vote_tombstones", schema="reputation")
    op.drop_table("vote_tombstones", schema="reputation")
    op.drop_column("votes", "event_id", schema="reputation")
