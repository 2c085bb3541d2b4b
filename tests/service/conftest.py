"""Service-level tests: one service at a time, run in this process
(`RunningService` on port 0, grpc.aio in the test's event loop) against a
real PostgreSQL and Redis, called over real gRPC sockets. Peers a service
calls are the real services, started the same way. No gateway, no Envoy: the
full stack (tests/integration) is for what crosses services or the gateway.

PostgreSQL and Redis are embedded, or the ones DATABASE_URL / REDIS_URL name
(a fresh database, and Redis database 2)."""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from devstack.stack import Stack
from services.common.config import SERVICE_SETTINGS
from services.common.server import RunningService, Setup
from services.ranking.__main__ import setup as ranking_setup
from services.reputation.__main__ import setup as reputation_setup
from services.vote.__main__ import setup as vote_setup
from tests.backing import ADMIN_KEY, fresh_database

pytestmark = pytest.mark.service

SETUPS: dict[str, Setup] = {"vote": vote_setup, "ranking": ranking_setup, "reputation": reputation_setup}
ADMIN = (("authorization", f"Bearer {ADMIN_KEY}"),)


@pytest.fixture(scope="session")
def backing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """PostgreSQL and Redis with the schemas migrated; no service runs."""
    database_url = os.environ.get("DATABASE_URL") or None
    drop = None
    if database_url:
        database_url, drop = fresh_database(database_url)
    redis_url = os.environ.get("REDIS_URL") or None
    if redis_url:
        redis_url = re.sub(r"(/\d+)?$", "/2", redis_url, count=1)
    stack = Stack(
        data_dir=tmp_path_factory.mktemp("backing"),
        database_url=database_url,
        redis_url=redis_url,
        admin_key=ADMIN_KEY,
    )
    try:
        stack.start_postgres()
        stack.start_redis()
        stack.migrate()
        yield stack
    finally:
        stack.stop()
        if drop is not None:
            drop()


@contextlib.asynccontextmanager
async def in_process(backing: Stack, name: str, **env: str) -> AsyncIterator[RunningService]:
    """Runs one service in this process until the block ends."""
    settings = SERVICE_SETTINGS[name].from_env(
        backing.env()
        | {
            f"AIMUSICSTORE_{name.upper()}_METRICS_PORT": "0",
            "AIMUSICSTORE_CONSUMER_NAME": f"service-test-{uuid.uuid4().hex[:6]}",
            "AIMUSICSTORE_SHUTDOWN_GRACE_S": "0.5",
            "AIMUSICSTORE_HEALTH_INTERVAL_S": "0.2",
        }
        | env
    )
    service = RunningService(name, SETUPS[name], settings)
    await service.start(port=0)
    try:
        yield service
    finally:
        await service.stop()


def target_env(**services: RunningService) -> dict[str, str]:
    """The environment that points a service at in-process peers."""
    return {f"AIMUSICSTORE_{name.upper()}_TARGET": f"127.0.0.1:{s.port}" for name, s in services.items()}


def channel(service: RunningService) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(f"127.0.0.1:{service.port}")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
