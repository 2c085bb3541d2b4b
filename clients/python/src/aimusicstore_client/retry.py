"""When a failed call is repeated, and after how long. Pure logic: the
clients feed it the typed errors they got and sleep what it says.

What is repeated depends on what the call does (`Safety`):

- READ: reads change nothing; any transient failure is retried.
- VOTE: a vote is safe to repeat because the service keeps one vote per
  agent and item: if an earlier attempt was recorded but its answer was
  lost (a dropped connection, a deadline), the repeat answers "Already
  voted". After such an ambiguous failure, that answer means the vote is
  recorded, and the client reports success (`RetryState.recorded_earlier`).
  After a failure that certainly did not reach the service (a rate limit),
  "Already voted" is a real earlier vote and raises AlreadyVoted.
- RETRACT: the same, with "no vote" (NotFound) after an ambiguous failure
  meaning that the earlier attempt retracted it.
- NONE: writes whose repeat would do something twice or lose an answer
  (register and key rotation return a key shown once; creates without an
  id would create twice). Retried only when the request certainly did not
  reach the service: the gateway's rate limit, or its overload refusal
  (UNAVAILABLE with retry-after).

Waits are jittered exponential backoff; a `retry_after` the service sent
is a floor. A `retry_after` longer than `max_retry_after_s` (a daily quota)
is not waited out: the error is raised at once.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field

from aimusicstore_client.errors import (
    AimusicstoreError,
    AlreadyVoted,
    DeadlineExceeded,
    NotFound,
    QuotaExceeded,
    RateLimited,
    Unavailable,
)

__all__ = ["RetryPolicy", "RetryState", "Safety"]


class Safety(enum.Enum):
    READ = "read"
    VOTE = "vote"
    RETRACT = "retract"
    NONE = "none"


_RNG = random.Random()  # noqa: S311 - jitter, not a secret


@dataclass(frozen=True)
class RetryPolicy:
    """`max_attempts` counts the first call (1 = never retry). The wait
    before retry n (1, 2...) is `initial_backoff_s * multiplier**(n-1)`,
    capped at `max_backoff_s`, less a random part of up to `jitter` of it
    (so clients that failed together do not come back together), and at
    least the retry_after the service sent (plus up to 10% jitter)."""

    max_attempts: int = 4
    initial_backoff_s: float = 0.25
    max_backoff_s: float = 8.0
    multiplier: float = 2.0
    jitter: float = 0.5
    max_retry_after_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts counts the first call: at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter is a fraction of the wait, 0-1")

    @classmethod
    def never(cls) -> RetryPolicy:
        return cls(max_attempts=1)

    def backoff(self, retry: int, retry_after_s: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number `retry` (1 for the first)."""
        if retry < 1:
            raise ValueError("retry counts from 1")
        rng = rng or _RNG
        base = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (retry - 1))
        wait = base * (1 - self.jitter * rng.random())
        if retry_after_s is not None:
            wait = max(wait, retry_after_s * (1 + 0.1 * rng.random()))
        return wait


def _certainly_not_executed(error: AimusicstoreError) -> bool:
    """Refused by the gateway before any service saw it: past a rate limit,
    or its overload refusal (the only UNAVAILABLE that carries retry-after)."""
    return isinstance(error, RateLimited) or (isinstance(error, Unavailable) and error.retry_after is not None)


def _transient(error: AimusicstoreError) -> bool:
    return isinstance(error, Unavailable | DeadlineExceeded | RateLimited) and not isinstance(error, QuotaExceeded)


@dataclass
class RetryState:
    """One call's attempts so far. `next_wait(error)` says how long to wait
    before the next attempt, or None to raise `error`."""

    policy: RetryPolicy
    safety: Safety
    rng: random.Random | None = None
    attempts: int = 1
    # An earlier attempt failed in a way that leaves open whether it took effect.
    ambiguous: bool = False
    errors: list[AimusicstoreError] = field(default_factory=list)

    def next_wait(self, error: AimusicstoreError) -> float | None:
        self.errors.append(error)
        retryable = _transient(error) if self.safety is not Safety.NONE else _certainly_not_executed(error)
        if not retryable or self.attempts >= self.policy.max_attempts:
            return None
        if error.retry_after is not None and error.retry_after > self.policy.max_retry_after_s:
            return None
        if not _certainly_not_executed(error):
            self.ambiguous = True
        self.attempts += 1
        return self.policy.backoff(self.attempts - 1, error.retry_after, self.rng)

    def recorded_earlier(self, error: AimusicstoreError) -> bool:
        """Whether `error`, answered to a repeat, means that an earlier
        attempt of this call did what was asked."""
        if not self.ambiguous or self.attempts < 2:
            return False
        if self.safety is Safety.VOTE:
            return isinstance(error, AlreadyVoted)
        if self.safety is Safety.RETRACT:
            return isinstance(error, NotFound)
        return False
