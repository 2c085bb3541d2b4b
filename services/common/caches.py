"""In-process caches whose entries do not all expire at once."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from cachetools import TLRUCache


def jittered_ttl_cache(
    maxsize: int, ttl_s: float, jitter: float = 0.2, timer: Callable[[], float] = time.monotonic
) -> TLRUCache:
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
