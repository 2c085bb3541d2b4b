"""A circuit breaker for a dependency on the hot path: fail fast while it is hung.

A dead Redis refuses connections at once, and the vote path falls back to
PostgreSQL at no cost. A hung or blackholed one answers nothing: every
call waits for its timeout, and a batch of votes made several calls, so a
10 s Redis freeze held votes for up to 8 s. With the breaker, the first
call that fails opens it, and while it is open the callers skip Redis and
take their fallback at once. It closes when the health watcher (which pings
every health interval, with its own timeout) sees the dependency answer
again, or, failing that, after `probe_after_s`, when one call is let
through to try.

Plain logic with an injected clock; no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import Counter, Gauge

BREAKER_OPEN = Gauge("dependency_breaker_open", "1 while calls to the dependency are skipped", ["dependency"])
BREAKER_TRIPS = Counter("dependency_breaker_trips_total", "Times the breaker opened", ["dependency"])


class CircuitBreaker:
    def __init__(self, name: str, probe_after_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.probe_after_s = probe_after_s
        self.clock = clock
        self._opened_at: float | None = None
        BREAKER_OPEN.labels(name).set(0)

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def allow(self) -> bool:
        """May a call be made now? While open: no, except one probe every probe_after_s."""
        if self._opened_at is None:
            return True
        now = self.clock()
        if now - self._opened_at >= self.probe_after_s:
            self._opened_at = now  # this caller probes; the others keep skipping
            return True
        return False

    def failed(self) -> None:
        """A call timed out or could not connect: skip the dependency from now on."""
        if self._opened_at is None:
            BREAKER_TRIPS.labels(self.name).inc()
            BREAKER_OPEN.labels(self.name).set(1)
        self._opened_at = self.clock()

    def recovered(self) -> None:
        """The dependency answered (a health check or a successful call)."""
        if self._opened_at is not None:
            BREAKER_OPEN.labels(self.name).set(0)
        self._opened_at = None
