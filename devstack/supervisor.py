"""`make run` keeps the stack up: a child that dies is restarted with backoff.

A crash loop (a service that cannot start because its database is gone)
waits longer after each failure, up to `max_delay_s`, so it neither spins
the CPU nor floods its log; a child that then stays up for `stable_after_s`
starts again from the shortest delay.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("devstack")


@dataclass
class Backoff:
    """The restart delays of one child (pure: the caller gives the time)."""

    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    stable_after_s: float = 60.0
    failures: int = 0
    started_at: float = 0.0

    def delay_after_exit(self, now: float) -> float:
        if self.started_at and now - self.started_at >= self.stable_after_s:
            self.failures = 0  # it ran long enough: this exit is not part of a crash loop
        delay = min(self.max_delay_s, self.first_delay_s * 2**self.failures)
        self.failures += 1
        return delay

    def started(self, now: float) -> None:
        self.started_at = now


@dataclass
class Supervisor:
    """Watches the children of a running Stack: `poll()` once a second or so."""

    exited: Callable[[], dict[str, int]]
    restart: Callable[[str], None]
    say: Callable[[str], None] = print
    clock: Callable[[], float] = time.monotonic
    backoffs: dict[str, Backoff] = field(default_factory=dict)
    due: dict[str, float] = field(default_factory=dict)

    def poll(self) -> None:
        now = self.clock()
        for name, code in self.exited().items():
            if name in self.due:
                continue
            delay = self.backoffs.setdefault(name, Backoff(started_at=now)).delay_after_exit(now)
            self.due[name] = now + delay
            self.say(f"{name} exited with code {code}; restarting it in {delay:.0f}s")
        for name, at in list(self.due.items()):
            if now < at:
                continue
            del self.due[name]
            try:
                self.restart(name)
            except (RuntimeError, OSError) as exc:
                delay = self.backoffs[name].delay_after_exit(self.clock())
                self.due[name] = self.clock() + delay
                self.say(f"{name} did not start ({str(exc).splitlines()[0]}); trying again in {delay:.0f}s")
                continue
            self.backoffs[name].started(self.clock())
            self.say(f"{name} restarted")
