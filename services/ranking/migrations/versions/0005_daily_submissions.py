"""songs submitted per agent per UTC day, for the submission quota

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 14:00:00

Song submissions have a daily quota per agent by tier. Each accepted song
adds one to its agent's day in the transaction that stores it. Today's
count is seeded from the songs already submitted today.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "daily_submissions",
        sa.Column("agent_id", sa.Text(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("agent_id", "day"),
        schema="ranking",
    )
    op.execute(
        """
        INSERT INTO ranking.daily_submissions (agent_id, day, used)
        SELECT submitted_by, (created_at AT TIME ZONE 'UTC')::date, count(*)
        FROM ranking.songs
        WHERE (created_at AT TIME ZONE 'UTC')::date = (now() AT TIME ZONE 'UTC')::date
        GROUP BY 1, 2
        """
    )


def downgrade() -> None:
    op.drop_table("daily_submissions", schema="ranking")
