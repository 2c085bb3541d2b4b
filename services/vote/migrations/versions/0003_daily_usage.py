"""append-only daily vote usage per agent, for the quota

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 12:10:00

While Redis was down the quota counted the agent's live votes of the day, so
retracting and voting again bought more votes. Usage is now counted in its
own table, in the transaction that stores each vote, and never decremented.
Today's usage is seeded from the votes that exist (a retraction made before
this migration cannot be counted back).
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "daily_usage",
        sa.Column("agent_id", sa.Text(), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("used", sa.Integer(), nullable=False),
        schema="vote",
    )
    op.execute(
        """
        INSERT INTO vote.daily_usage (agent_id, day, used)
        SELECT agent_id, (created_at AT TIME ZONE 'UTC')::date, count(*)
        FROM vote.votes
        WHERE created_at >= (now() AT TIME ZONE 'UTC')::date - 1
        GROUP BY 1, 2
        """
    )


def downgrade() -> None:
    op.drop_table("daily_usage", schema="vote")
