"""chart weights: each projected vote's chart weight, weighted daily tallies

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 09:00:00

Every agent starts on probation when standing is introduced (the reputation
service's first pass then trusts those that meet the graduation rule and
announces them, and the ranking service re-weighs their votes to 1). So the
votes already projected take the probation weight here, those of agents
flagged at the time (trending weight 0) weigh 0, and the tallies' weighted
sums are built to match.
"""

import dataclasses
import os

import sqlalchemy as sa
from alembic import op

from services.common.config import Settings

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def probation_weight() -> float:
    """AIMUSICSTORE_PROBATION_WEIGHT as the services read it (its default declared in services/common/config.py)."""
    declared = next(f for f in dataclasses.fields(Settings) if f.name == "probation_weight")
    raw = os.environ.get(Settings.env_name(declared), "")
    return float(raw or str(declared.default))


def upgrade() -> None:
    weight = sa.bindparam("p", probation_weight(), type_=sa.Float())
    op.add_column("votes", sa.Column("chart_weight", sa.Float(), server_default="0", nullable=False), schema="ranking")
    op.alter_column("votes", "chart_weight", server_default=None, schema="ranking")
    op.execute(sa.text("UPDATE ranking.votes SET chart_weight = :p WHERE weight <> 0").bindparams(weight))
    for column in ("weighted_up", "weighted_down"):
        op.add_column(
            "daily_tallies", sa.Column(column, sa.Float(), server_default="0", nullable=False), schema="ranking"
        )
    op.execute(
        sa.text(
            "UPDATE ranking.daily_tallies SET weighted_up = :p * up_votes, weighted_down = :p * down_votes"
        ).bindparams(weight)
    )
    # Less the flagged agents' votes, which count 0.
    op.execute(
        sa.text(
            """
            UPDATE ranking.daily_tallies t
            SET weighted_up = t.weighted_up - :p * z.up, weighted_down = t.weighted_down - :p * z.down
            FROM (
                SELECT item_type, item_id, (voted_at AT TIME ZONE 'UTC')::date AS day,
                       count(*) FILTER (WHERE direction > 0) AS up, count(*) FILTER (WHERE direction < 0) AS down
                FROM ranking.votes WHERE chart_weight = 0 GROUP BY 1, 2, 3
            ) z
            WHERE (t.item_type, t.item_id, t.day) = (z.item_type, z.item_id, z.day)
            """
        ).bindparams(weight)
    )


def downgrade() -> None:
    op.drop_column("daily_tallies", "weighted_down", schema="ranking")
    op.drop_column("daily_tallies", "weighted_up", schema="ranking")
    op.drop_column("votes", "chart_weight", schema="ranking")
