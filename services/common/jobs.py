"""Periodic background jobs, written once for every service."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("jobs")


def stopping() -> bool:
    """Whether the current task has been asked to stop (cancelled). A retry
    loop checks it after a failure: a library may turn the cancellation of
    the call it was in into an error of its own (grpc.aio ends a call with
    AioRpcError CANCELLED when its channel closes under it), and a loop
    that logged it and slept would run on, cancelled, forever. Stopping
    services waited 5 s for such jobs, and a test run's next tests met
    their sleeps."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def every(interval_s: float, name: str, job: Callable[[], Awaitable[object]], *, run_first: bool = True) -> None:
    """Runs `job` every interval (first at once, unless run_first is False),
    forever, logging and surviving its failures: the next run retries."""
    if not run_first:
        await asyncio.sleep(interval_s)
    while True:
        started = time.perf_counter()
        try:
            result = await job()
            log.debug(
                "%s done", name, extra={"result": str(result), "seconds": round(time.perf_counter() - started, 3)}
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # retried next interval
            if stopping():
                raise asyncio.CancelledError from exc
            log.warning("%s failed (%s); retrying next interval", name, describe(exc))
        await asyncio.sleep(interval_s)


def describe(exc: BaseException) -> str:
    """An exception's type, and for a gRPC error its status and details (an
    AioRpcError's type alone does not say whether the peer was away, slow
    or refused the call)."""
    code = getattr(exc, "code", None)
    details = getattr(exc, "details", None)
    if callable(code) and callable(details):
        status = getattr(code(), "name", code())
        return f"{type(exc).__name__} {status}: {str(details() or '')[:200]}"
    return type(exc).__name__
