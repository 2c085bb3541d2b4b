"""outbox keeps relayed events until Redis has them for sure

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 03:00:00

A relayed event stays in the outbox, with the stream entry id Redis gave it,
until that entry is known to be durable in Redis. If Redis loses the tail of
the stream (a crash between appendfsync runs), the relay publishes the lost
events again; consumers drop duplicates by event id.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("relayed_at", sa.DateTime(timezone=True), nullable=True), schema="vote")
    op.add_column("outbox", sa.Column("stream_ms", sa.BigInteger(), nullable=True), schema="vote")
    op.add_column("outbox", sa.Column("stream_seq", sa.BigInteger(), nullable=True), schema="vote")
    op.create_index(
        "outbox_waiting_idx", "outbox", ["id"], schema="vote", postgresql_where=sa.text("relayed_at IS NULL")
    )
    op.create_index(
        "outbox_relayed_idx",
        "outbox",
        ["stream_ms", "stream_seq"],
        schema="vote",
        postgresql_where=sa.text("relayed_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("outbox_relayed_idx", table_name="outbox", schema="vote")
    op.drop_index("outbox_waiting_idx", table_name="outbox", schema="vote")
    op.drop_column("outbox", "stream_seq", schema="vote")
    op.drop_column("outbox", "stream_ms", schema="vote")
    op.drop_column("outbox", "relayed_at", schema="vote")
