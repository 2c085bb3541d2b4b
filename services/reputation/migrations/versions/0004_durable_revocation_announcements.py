"""revocations are announced durably

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 12:20:00

A rotation's revocation marker and announcement used to be tried once: with
Redis away at that moment, other services kept accepting the old key until
their cache entries expired. Each revoked key now records when its
revocation reached Redis, and a job retries those that have not.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "api_keys", sa.Column("revocation_announced_at", sa.DateTime(timezone=True), nullable=True), schema="reputation"
    )
    # Keys revoked before this migration: taken as announced.
    op.execute("UPDATE reputation.api_keys SET revocation_announced_at = revoked_at WHERE revoked_at IS NOT NULL")
    op.create_index(
        "api_keys_revocations_to_announce",
        "api_keys",
        ["revoked_at"],
        schema="reputation",
        postgresql_where=sa.text("revoked_at IS NOT NULL AND revocation_announced_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("api_keys_revocations_to_announce", table_name="api_keys", schema="reputation")
    op.drop_column("api_keys", "revocation_announced_at", schema="reputation")
