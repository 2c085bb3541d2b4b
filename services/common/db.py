"""The SQLAlchemy 2 async engine every service uses (psycopg 3 driver)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.common.config import Settings


def create_engine(settings: Settings) -> AsyncEngine:
    return create_async_engine(
        settings.sqlalchemy_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_timeout=5,
        # A connection that died with a PostgreSQL restart is replaced at
        # checkout instead of failing a request. It costs a round trip per
        # checkout; the hot paths check out once per batch or read Redis.
        pool_pre_ping=True,
        pool_recycle=3600,
        connect_args={"connect_timeout": 5},
    )
