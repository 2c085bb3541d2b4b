"""The migrations produce exactly the tables the code declares, one schema per service."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from devstack.stack import Stack
from services.common.config import to_sqlalchemy_url
from services.ranking import tables as ranking_tables
from services.reputation import tables as reputation_tables
from services.vote import tables as vote_tables

pytestmark = pytest.mark.service


@pytest.mark.parametrize("tables", [vote_tables, ranking_tables, reputation_tables], ids=lambda t: t.SCHEMA)
def test_migrations_match_the_declared_tables(backing: Stack, tables) -> None:
    engine = create_engine(to_sqlalchemy_url(backing.database_url or ""))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "include_schemas": True,
                    "compare_type": True,
                    "include_name": lambda name, type_, _: type_ != "schema" or name == tables.SCHEMA,
                },
            )
            diff = [d for d in compare_metadata(context, tables.metadata) if "alembic_version" not in str(d)]
            assert diff == []
            assert "alembic_version" in inspect(conn).get_table_names(schema=tables.SCHEMA)
    finally:
        engine.dispose()
