"""ids of deleted items, never reused

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 08:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deleted_items",
        sa.Column("item_type", sa.Text(), nullable=False),
        sa.Column("item_id", sa.Text(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("item_type", "item_id"),
        schema="ranking",
    )


def downgrade() -> None:
    op.drop_table("deleted_items", schema="ranking")
