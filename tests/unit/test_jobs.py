"""services.common.jobs.every: failures are retried, a stop is a stop."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from services.common import jobs
from services.common.jobs import every


async def test_a_failing_job_is_retried_next_interval() -> None:
    runs = 0

    async def job() -> None:
        nonlocal runs
        runs += 1
        raise RuntimeError("the database is away")

    task = asyncio.create_task(every(0.01, "failing", job))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert runs >= 3


async def test_a_job_whose_library_turns_the_cancel_into_its_own_error_still_stops() -> None:
    # As grpc.aio does when the channel closes under a call: the cancel of
    # the task arrives as an error of the library's. `every` retried it
    # forever, and stopping services waited 5 s for it.
    started = asyncio.Event()
    converted = 0

    async def job() -> None:
        nonlocal converted
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if converted:  # once: so that a failing run of this test can still end its task
                raise
            converted += 1
            raise RuntimeError("call cancelled: channel closed") from None

    task = asyncio.create_task(every(0.01, "rpc", job))
    await started.wait()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=1.0)
    if task not in done:
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    assert task in done
    assert task.cancelled()


def test_a_grpc_failure_is_described_by_its_status() -> None:
    class FakeRpcError(Exception):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.DEADLINE_EXCEEDED

        def details(self) -> str:
            return "Deadline Exceeded"

    assert jobs.describe(FakeRpcError()) == "FakeRpcError DEADLINE_EXCEEDED: Deadline Exceeded"
    assert jobs.describe(ValueError("x")) == "ValueError"
