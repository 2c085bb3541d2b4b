"""search by case-folded text (Unicode), for prefix queries

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 08:30:00

The search vectors were built from the raw title/artist/name, lowered by the
database's locale (ASCII only under C). They are now built from
`search_text`, which the service case-folds; existing rows are folded here.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SOURCES = {"songs": ("title", "artist"), "tools": ("name",)}


def upgrade() -> None:
    conn = op.get_bind()
    for table, sources in SOURCES.items():
        op.drop_index(f"{table}_search_idx", table_name=table, schema="ranking")
        op.drop_column(table, "search", schema="ranking")
        op.add_column(table, sa.Column("search_text", sa.Text(), server_default="", nullable=False), schema="ranking")
        rows = conn.execute(sa.text(f"SELECT id, {', '.join(sources)} FROM ranking.{table}")).all()
        if rows:
            conn.execute(
                sa.text(f"UPDATE ranking.{table} SET search_text = :text WHERE id = :id"),
                [{"id": row[0], "text": " ".join(row[1:]).casefold()} for row in rows],
            )
        op.add_column(
            table,
            sa.Column(
                "search",
                postgresql.TSVECTOR(),
                sa.Computed("to_tsvector('simple', search_text)", persisted=True),
                nullable=True,
            ),
            schema="ranking",
        )
        op.create_index(
            f"{table}_search_idx", table, ["search"], unique=False, schema="ranking", postgresql_using="gin"
        )


def downgrade() -> None:
    for table, sources in SOURCES.items():
        op.drop_index(f"{table}_search_idx", table_name=table, schema="ranking")
        op.drop_column(table, "search", schema="ranking")
        op.drop_column(table, "search_text", schema="ranking")
        expression = " || ' ' || ".join(sources)
        op.add_column(
            table,
            sa.Column(
                "search",
                postgresql.TSVECTOR(),
                sa.Computed(f"to_tsvector('simple', {expression})", persisted=True),
                nullable=True,
            ),
            schema="ranking",
        )
        op.create_index(
            f"{table}_search_idx", table, ["search"], unique=False, schema="ranking", postgresql_using="gin"
        )
