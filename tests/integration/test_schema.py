"""Health follows the dependencies (the migrations against the declared
tables: tests/service/test_schema.py)."""

from __future__ import annotations

import pytest

from devstack.stack import Stack

pytestmark = pytest.mark.integration


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
