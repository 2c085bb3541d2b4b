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

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("tables", [vote_tables, ranking_tables, reputation_tables], ids=lambda t: t.SCHEMA)
def test_migrations_match_the_declared_tables(stack: Stack, tables) -> None:
    engine = create_engine(to_sqlalchemy_url(stack.database_url or ""))
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


def test_health_goes_not_serving_while_redis_is_down(stack: Stack) -> None:
    import httpx

    from tests.integration.conftest import eventually

    if not stack.embedded_redis:
        pytest.skip("needs the embedded Redis to stop it")
    with httpx.Client(base_url=stack.gateway_url, timeout=5) as api:
        stack.stop_process("redis")
        try:
            # Each service notices within its health interval (1 s).
            every = {"vote", "ranking", "reputation"}
            reply = eventually(
                lambda: (r := api.get("/health")).status_code == 503 and set(r.json()["down"]) == every and r,
                timeout_s=10,
            )
            assert reply.json()["status"] == "unhealthy"
        finally:
            stack.start_redis()
        eventually(lambda: api.get("/health").status_code == 200, timeout_s=30)
