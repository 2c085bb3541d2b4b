"""SingleFlight: concurrent callers of one key share a computation, and only while it runs."""

from __future__ import annotations

import asyncio

import pytest

from services.common.singleflight import SingleFlight


async def test_concurrent_callers_share_one_computation_and_nothing_is_kept() -> None:
    flights, calls = SingleFlight(), []
    gate, two_started = asyncio.Event(), asyncio.Event()

    async def compute() -> int:
        calls.append(1)
        if len(calls) == 2:
            two_started.set()
        await gate.wait()
        return len(calls)

    waiting = [asyncio.create_task(flights.do("k", compute)) for _ in range(5)]
    other = asyncio.create_task(flights.do("other", compute))
    await asyncio.wait_for(two_started.wait(), timeout=5)  # "k" and "other" have both started
    gate.set()
    assert await asyncio.gather(*waiting) == [2, 2, 2, 2, 2]  # "k" and "other": two computations
    assert await other == 2
    assert await flights.do("k", compute) == 3  # a later call computes afresh


async def test_a_cancelled_caller_does_not_cancel_the_others() -> None:
    flights = SingleFlight()
    gate = asyncio.Event()

    async def compute() -> str:
        await gate.wait()
        return "done"

    first = asyncio.create_task(flights.do("k", compute))
    second = asyncio.create_task(flights.do("k", compute))
    await asyncio.sleep(0)
    first.cancel()
    gate.set()
    assert await second == "done"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_an_error_reaches_every_caller_and_is_not_kept() -> None:
    flights, calls = SingleFlight(), []

    async def compute() -> None:
        calls.append(1)
        await asyncio.sleep(0)
        raise LookupError("missing")

    results = await asyncio.gather(*(flights.do("k", compute) for _ in range(3)), return_exceptions=True)
    assert [type(r) for r in results] == [LookupError] * 3 and len(calls) == 1
    with pytest.raises(LookupError):
        await flights.do("k", compute)
    assert len(calls) == 2
