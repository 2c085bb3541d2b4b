"""standing: trust, flag clearing, the agent lists

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-20 10:00:00

Agents gain a standing (issue 13): trusted_at records graduation from
probation (NULL for every agent until the graduation pass finds it meets the
rule: existing agents are judged by the same rule as new ones), and
flag_cleared_at the last clearing of a flag (the flag cooldown). ListAgents
pages newest agent first and, for the moderation queue, newest flag first;
a flag always has its time, so the queue's keyset has no NULLs.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("agents", sa.Column("trusted_at", sa.DateTime(timezone=True), nullable=True), schema="reputation")
    op.add_column(
        "agents", sa.Column("flag_cleared_at", sa.DateTime(timezone=True), nullable=True), schema="reputation"
    )
    op.execute("UPDATE reputation.agents SET flagged_at = created_at WHERE flagged AND flagged_at IS NULL")
    op.create_check_constraint(
        "agents_flag_has_time", "agents", "NOT flagged OR flagged_at IS NOT NULL", schema="reputation"
    )
    op.create_index("agents_newest_idx", "agents", [sa.text("created_at DESC"), "id"], schema="reputation")
    op.create_index(
        "agents_flag_queue_idx",
        "agents",
        [sa.text("flagged_at DESC"), "id"],
        schema="reputation",
        postgresql_where=sa.text("flagged"),
    )
    op.create_index(
        "agents_probation_idx",
        "agents",
        ["created_at"],
        schema="reputation",
        postgresql_where=sa.text("trusted_at IS NULL AND NOT flagged"),
    )


def downgrade() -> None:
    op.drop_index("agents_probation_idx", table_name="agents", schema="reputation")
    op.drop_index("agents_flag_queue_idx", table_name="agents", schema="reputation")
    op.drop_index("agents_newest_idx", table_name="agents", schema="reputation")
    op.drop_constraint("agents_flag_has_time", "agents", schema="reputation", type_="check")
    op.drop_column("agents", "flag_cleared_at", schema="reputation")
    op.drop_column("agents", "trusted_at", schema="reputation")
