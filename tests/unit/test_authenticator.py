"""The Authenticator's choice of answer while Redis is away: keys are asked
of the reputation service again (no revocation marker can be read), once a
second per key, and the cached answer serves only when that service is away
too. Plain logic: a fake verifier and a fake call context."""

from __future__ import annotations

from typing import Any

import pytest

from services.common.auth import Authenticator, Caller
from services.common.errors import Unauthenticated, Unavailable

KEY = "ams_" + "k" * 43


class Context:
    def invocation_metadata(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {KEY}")]


class Reputation:
    """What the reputation service answers for KEY, and how often it was asked."""

    def __init__(self) -> None:
        self.answer: Any = Caller(agent_id="a", tier="free")
        self.calls = 0

    async def verify(self, api_key: str) -> Caller | None:
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def _authenticator(reputation: Reputation, away: list[bool]) -> Authenticator:
    return Authenticator("admin-key-0123456789", reputation.verify, cache_ttl_s=60, redis_away=lambda: away[0])


async def test_with_redis_up_a_known_key_is_answered_from_the_cache() -> None:
    reputation, away = Reputation(), [False]
    auth = _authenticator(reputation, away)
    for _ in range(3):
        assert (await auth.caller(Context(), check_revoked=False)).agent_id == "a"  # type: ignore[arg-type]
    assert reputation.calls == 1


async def test_with_redis_away_a_revoked_key_is_refused_though_cached() -> None:
    reputation, away = Reputation(), [False]
    auth = _authenticator(reputation, away)
    await auth.caller(Context(), check_revoked=False)  # type: ignore[arg-type]
    away[0] = True
    reputation.answer = None  # rotated meanwhile
    with pytest.raises(Unauthenticated):
        await auth.caller(Context(), check_revoked=False)  # type: ignore[arg-type]
    assert reputation.calls == 2


async def test_with_redis_away_each_key_is_asked_at_most_once_a_second() -> None:
    reputation, away = Reputation(), [True]
    auth = _authenticator(reputation, away)
    for _ in range(5):
        await auth.caller(Context(), check_revoked=False)  # type: ignore[arg-type]
    assert reputation.calls == 1


async def test_with_the_reputation_service_away_too_the_cached_answer_serves() -> None:
    reputation, away = Reputation(), [False]
    auth = _authenticator(reputation, away)
    await auth.caller(Context(), check_revoked=False)  # type: ignore[arg-type]
    away[0] = True
    reputation.answer = Unavailable("the reputation service is unavailable")
    assert (await auth.caller(Context(), check_revoked=False)).agent_id == "a"  # type: ignore[arg-type]
