"""frozen chart tops: the first rows of every finished day's period charts

Revision ID: 0009
Revises: 0008
Create Date: 2027-01-30 10:00:00

Charts of past dates are read from ranking.chart_tops (each period, each
sort, no filters, the first 100 rows of each finished day, with the rank one
period earlier). Empty here: the service's freezer job fills the finished
days from the first tallied one in the background (oldest first); a past
date not frozen yet is computed on demand as before.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chart_tops",
        sa.Column("item_type", sa.Text(), nullable=False),
        sa.Column("period", sa.Text(), nullable=False),
        sa.Column("sort", sa.Text(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Text(), nullable=False),
        sa.Column("up_votes", sa.Integer(), nullable=False),
        sa.Column("down_votes", sa.Integer(), nullable=False),
        sa.Column("weighted_up", sa.Float(), nullable=False),
        sa.Column("weighted_down", sa.Float(), nullable=False),
        sa.Column("previous_rank", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("item_type", "period", "sort", "day", "rank"),
        schema="ranking",
    )
    op.create_table(
        "chart_tops_state",
        sa.Column("item_type", sa.Text(), nullable=False),
        sa.Column("frozen_from", sa.Date(), nullable=True),
        sa.Column("frozen_through", sa.Date(), nullable=True),
        sa.Column("dirty_from", sa.Date(), nullable=True),
        sa.Column("pending_from", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("item_type"),
        schema="ranking",
    )
    op.execute("INSERT INTO ranking.chart_tops_state (item_type) VALUES ('song'), ('tool')")


def downgrade() -> None:
    op.drop_table("chart_tops_state", schema="ranking")
    op.drop_table("chart_tops", schema="ranking")
