"""In-process caches of other services' answers: entries that do not all
expire at once, and a cache that refreshes them without making callers wait."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

from cachetools import TLRUCache, TTLCache

from services.common.singleflight import SingleFlight

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

log = logging.getLogger("caches")


def jittered_ttl_cache(
    maxsize: int, ttl_s: float, jitter: float = 0.2, timer: Callable[[], float] = time.monotonic
) -> TLRUCache[Any, Any]:
    """Like cachetools.TTLCache, but each entry lives ttl_s ± jitter × ttl_s.

    Entries filled together (every agent's key in a service's first seconds
    under load) would otherwise expire together, and their refills would
    arrive at the peer service as one burst: measured under overload, a burst
    of 600 key verifications ran past the internal deadline and refused
    votes with 503s. Spread out, the same refills are a trickle.
    """

    def expires(_key: Any, _value: Any, now: float) -> float:
        return now + ttl_s * random.uniform(1 - jitter, 1 + jitter)  # noqa: S311 - spreading, not secrecy

    return TLRUCache(maxsize=maxsize, ttu=expires, timer=timer)


class RevalidatingCache(Generic[K, V]):
    """A cache of answers from another service that, once an entry is older
    than its TTL, keeps serving it while one background call refreshes it
    (stale-while-revalidate), for up to `grace_s` more.

    So the hot path never waits on the other service for a known key: not
    when the entries used by a burst all expired during a lull (measured:
    600 API keys re-verified at once when votes resumed after a minute of
    reads ran past the internal deadline, and 252 votes were refused with
    503), and not while that service is slow or down, for the grace period.
    A key never seen, or last loaded longer ago than TTL + grace, is loaded
    before answering.

    `load` returns the value, or None when the key has none (an invalid API
    key, a deleted item): that forgets the key and returns None. A failed
    refresh keeps serving the old value and is retried a TTL later, until
    the grace ends; a failed first load raises to the caller.
    """

    def __init__(
        self,
        name: str,
        maxsize: int,
        ttl_s: float,
        grace_s: float,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = name
        self._fresh: TLRUCache[K, V] = jittered_ttl_cache(maxsize=maxsize, ttl_s=ttl_s, timer=timer)
        # Every value loaded in the last TTL + grace: what may be served stale.
        self._known: TTLCache[K, V] = TTLCache(maxsize=maxsize, ttl=ttl_s * 1.2 + grace_s, timer=timer)
        self._loads = SingleFlight()
        self._refreshing: dict[K, asyncio.Task[V | None]] = {}
        # Bumped by every forget: a load that was in flight across one may
        # carry the answer from before it (an item deleted meanwhile), so its
        # value is returned to its callers but not cached.
        self._forgets = 0

    async def get(self, key: K, load: Callable[[], Awaitable[V | None]]) -> V | None:
        value = self._known.get(key)
        if value is None:
            return await self._load(key, load)
        if key not in self._fresh and key not in self._refreshing:
            # A context of its own: the refresh outlives the request that
            # noticed the entry was old, and must not log or forward its id.
            task = asyncio.create_task(self._load(key, load), context=contextvars.Context())
            self._refreshing[key] = task
            task.add_done_callback(lambda done: self._refreshed(key, value, done))
        return value

    async def _load(self, key: K, load: Callable[[], Awaitable[V | None]]) -> V | None:
        forgets = self._forgets
        value = await self._loads.do(key, load)
        if value is None:
            self.forget(key)
        elif self._forgets == forgets:
            self.put(key, value)
        return value

    def _refreshed(self, key: K, stale: V, task: asyncio.Task[V | None]) -> None:
        self._refreshing.pop(key, None)
        if task.cancelled() or task.exception() is None:
            return
        log.warning(
            "could not refresh a cached %s; serving the last answer meanwhile (%s)",
            self._name,
            type(task.exception()).__name__,
        )
        if key in self._known:
            self._fresh[key] = stale  # next attempt a TTL from now, not on every use

    def put(self, key: K, value: V) -> None:
        self._fresh[key] = value
        self._known[key] = value

    def forget(self, key: K) -> None:
        self._forgets += 1
        self._fresh.pop(key, None)
        self._known.pop(key, None)

    def forget_where(self, matches: Callable[[V], bool]) -> None:
        for key, value in list(self._known.items()):
            if matches(value):
                self.forget(key)

    def expire_all(self) -> None:
        """Every entry is refreshed on its next use (changes may have been
        missed), without a burst of loads that callers wait for."""
        self._forgets += 1
        self._fresh.clear()

    def __contains__(self, key: K) -> bool:
        return key in self._known
