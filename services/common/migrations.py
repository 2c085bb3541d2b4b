"""Alembic plumbing shared by the per-service migration trees.

Each service owns one PostgreSQL schema and one migration tree
(services/<name>/migrations) whose version table lives in that schema, so
the three trees never see each other's revisions. `python -m
services.common.migrate` applies them all before the services start.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import MetaData, create_engine, text

# Serialises concurrent migrate runs (two deploys at once) across the cluster.
_ADVISORY_LOCK_ID = 0x41494D53  # "AIMS"


def run_env(metadata: MetaData, schema: str) -> None:
    """Body of every service's migrations/env.py."""
    config = context.config
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("alembic: sqlalchemy.url is not set")
    engine = create_engine(url)

    def include_name(name: str | None, type_: Any, parent_names: Any) -> bool:
        if type_ == "schema":
            return name == schema
        return True

    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _ADVISORY_LOCK_ID})
        try:
            connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            connection.commit()
            context.configure(
                connection=connection,
                target_metadata=metadata,
                version_table="alembic_version",
                version_table_schema=schema,
                include_schemas=True,
                include_name=include_name,
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _ADVISORY_LOCK_ID})
            connection.commit()
    engine.dispose()
