"""ShortCache: an answer is kept for its TTL, and while one is computed the
other callers of its key wait for it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from services.ranking.rankings.short_cache import ShortCache


async def test_an_answer_is_kept_per_key_until_it_expires() -> None:
    calls: list[str] = []

    def computing(value: str) -> Callable[[], Awaitable[str]]:
        async def compute() -> str:
            calls.append(value)
            return value

        return compute

    kept: ShortCache[str] = ShortCache(maxsize=8, ttl=60.0)
    assert await kept.get(("k",), computing("first")) == "first"
    assert await kept.get(("k",), computing("second")) == "first"
    assert await kept.get(("other",), computing("third")) == "third"
    assert calls == ["first", "third"]

    brief: ShortCache[str] = ShortCache(maxsize=8, ttl=0.01)
    await brief.get(("k",), computing("old"))
    await asyncio.sleep(0.02)
    assert await brief.get(("k",), computing("new")) == "new"


async def test_callers_arriving_during_a_computation_share_it() -> None:
    cache: ShortCache[int] = ShortCache(maxsize=8, ttl=60.0)
    gate, calls = asyncio.Event(), []

    async def compute() -> int:
        calls.append(1)
        await gate.wait()
        return len(calls)

    waiting = [asyncio.create_task(cache.get(("k",), compute)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiting) == [1, 1, 1, 1, 1]
