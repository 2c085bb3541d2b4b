"""Periodic background jobs, written once for every service."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("jobs")


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
        except Exception as exc:  # noqa: BLE001 - retried next interval
            log.warning("%s failed (%s); retrying next interval", name, type(exc).__name__)
        await asyncio.sleep(interval_s)
