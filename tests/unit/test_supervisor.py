"""`make run` restarts a dead child with backoff and keeps the rest running."""

from __future__ import annotations

from devstack.supervisor import Backoff, Supervisor


def test_backoff_doubles_up_to_the_cap_and_resets_once_the_child_was_stable() -> None:
    backoff = Backoff(first_delay_s=1, max_delay_s=8, stable_after_s=60, started_at=0)
    assert [backoff.delay_after_exit(now=1) for _ in range(5)] == [1, 2, 4, 8, 8]
    backoff.started(now=100)
    assert backoff.delay_after_exit(now=200) == 1


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_dead_child_is_restarted_after_its_delay_and_a_failed_start_is_retried_later() -> None:
    clock, dead = Clock(), {"vote": 1}
    restarted: list[str] = []
    lines: list[str] = []
    attempts = iter([RuntimeError("port in use"), None])

    def restart(name: str) -> None:
        outcome = next(attempts)
        if outcome is not None:
            raise outcome
        restarted.append(name)
        dead.clear()

    supervisor = Supervisor(lambda: dict(dead), restart, say=lines.append, clock=clock)
    supervisor.poll()
    assert restarted == [] and "restarting it in 1s" in lines[-1]
    clock.now = 1.0
    supervisor.poll()  # the first try fails: the next waits longer
    assert restarted == [] and "trying again in 2s" in lines[-1]
    clock.now = 2.0
    supervisor.poll()
    assert restarted == []
    clock.now = 3.0
    supervisor.poll()
    assert restarted == ["vote"] and lines[-1] == "vote restarted"
