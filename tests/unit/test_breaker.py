"""The hot path's circuit breaker: fail fast while a dependency is hung."""

from __future__ import annotations

from services.common.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_closed_lets_every_call_through() -> None:
    breaker = CircuitBreaker("redis", clock=Clock())
    assert all(breaker.allow() for _ in range(3)) and not breaker.is_open


def test_a_failure_opens_it_and_calls_are_skipped() -> None:
    breaker = CircuitBreaker("redis", probe_after_s=5, clock=Clock())
    breaker.failed()
    assert breaker.is_open
    assert not breaker.allow()


def test_one_probe_is_let_through_after_the_probe_interval() -> None:
    clock = Clock()
    breaker = CircuitBreaker("redis", probe_after_s=5, clock=clock)
    breaker.failed()
    clock.now += 5
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # the others keep skipping while it runs
    breaker.failed()  # the probe failed too
    clock.now += 4.9
    assert not breaker.allow()


def test_recovery_closes_it() -> None:
    breaker = CircuitBreaker("redis", clock=Clock())
    breaker.failed()
    breaker.recovered()
    assert breaker.allow() and not breaker.is_open
