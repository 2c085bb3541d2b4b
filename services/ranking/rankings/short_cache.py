"""The ranking reads' short-lived answer caches."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from cachetools import TTLCache

from services.common.singleflight import SingleFlight

CacheKey = tuple[Any, ...]
V = TypeVar("V")


class ShortCache(Generic[V]):
    """A brief cache with single flight: when an entry expires under load
    (the edge cache's entry expires for every client at once), one request
    computes it and the others wait for that answer instead of each
    querying the database."""

    def __init__(self, maxsize: int, ttl: float) -> None:
        self._entries: TTLCache[CacheKey, V] = TTLCache(maxsize=maxsize, ttl=ttl)
        self._flights = SingleFlight()

    async def get(self, key: CacheKey, compute: Callable[[], Awaitable[V]]) -> V:
        if (hit := self._entries.get(key)) is not None:
            return hit

        async def compute_and_keep() -> V:
            self._entries[key] = value = await compute()
            return value

        return await self._flights.do(key, compute_and_keep)
