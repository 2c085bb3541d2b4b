"""Single flight: concurrent callers asking for the same key share one computation.

A caller that arrives while a computation for its key is running waits for
that result instead of starting its own; nothing is kept afterwards, so the
answer is never older than the request that is already in flight. Under
load, a hot key's reads (many clients polling one song, or every client
missing an expired edge-cache entry at once) cost one round trip between
them instead of one each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar, cast

R = TypeVar("R")


class SingleFlight:
    def __init__(self) -> None:
        self._in_flight: dict[Hashable, asyncio.Future[Any]] = {}

    async def do(self, key: Hashable, compute: Callable[[], Awaitable[R]]) -> R:
        pending = self._in_flight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(compute())
            self._in_flight[key] = pending
            pending.add_done_callback(lambda _: self._in_flight.pop(key, None))
        # shield: one caller's cancellation (its client went away) must not
        # cancel the computation the others are waiting for.
        return cast(R, await asyncio.shield(pending))
