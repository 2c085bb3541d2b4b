"""registrations counted per client address

Revision ID: 0007
Revises: 0006
Create Date: 2027-01-20 10:00:00

Each agent keeps a keyed hash of the address it registered from and how many
agents that address had registered within the window, itself included
(services/reputation/registrations.py). Agents registered before this were
not counted: crowd 1, no address.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("agents", sa.Column("registration_address", sa.LargeBinary(), nullable=True), schema="reputation")
    op.add_column(
        "agents",
        sa.Column("registration_crowd", sa.Integer(), server_default="1", nullable=False),
        schema="reputation",
    )
    op.create_index(
        "agents_registration_address_idx",
        "agents",
        ["registration_address", "created_at"],
        unique=False,
        schema="reputation",
        postgresql_where=sa.text("registration_address IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("agents_registration_address_idx", table_name="agents", schema="reputation")
    op.drop_column("agents", "registration_crowd", schema="reputation")
    op.drop_column("agents", "registration_address", schema="reputation")
