"""MicroBatcher: concurrent callers share one handle() call, each gets its own result."""

from __future__ import annotations

import asyncio

import pytest

from services.common.batching import MicroBatcher, Overloaded
from services.common.logs import request_id_var


async def test_concurrent_submits_share_a_batch_and_get_their_own_results() -> None:
    batches: list[list[int]] = []

    async def handle(items: list[int]) -> list[int]:
        batches.append(items)
        return [item * 10 for item in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(handle, max_batch=256, max_wait_s=0.01)
    try:
        assert await asyncio.gather(*(batcher.submit(n) for n in range(5))) == [0, 10, 20, 30, 40]
        assert batches == [[0, 1, 2, 3, 4]]
    finally:
        await batcher.close()


async def test_a_batch_never_exceeds_max_batch() -> None:
    sizes: list[int] = []

    async def handle(items: list[int]) -> list[int]:
        sizes.append(len(items))
        return items

    batcher: MicroBatcher[int, int] = MicroBatcher(handle, max_batch=3, max_wait_s=0.01)
    try:
        assert await asyncio.gather(*(batcher.submit(n) for n in range(7))) == list(range(7))
        assert sizes == [3, 3, 1]
    finally:
        await batcher.close()


async def test_every_caller_of_a_failed_batch_gets_the_error_and_the_next_batch_works() -> None:
    async def handle(items: list[int]) -> list[int]:
        if 13 in items:
            raise RuntimeError("storage said no")
        return items

    batcher: MicroBatcher[int, int] = MicroBatcher(handle, max_wait_s=0.01)
    try:
        results = await asyncio.gather(batcher.submit(13), batcher.submit(1), return_exceptions=True)
        assert all(isinstance(r, RuntimeError) and str(r) == "storage said no" for r in results)
        assert await batcher.submit(2) == 2
    finally:
        await batcher.close()


async def test_the_worker_does_not_run_under_the_first_callers_request_id() -> None:
    # The worker outlives the call that started it and serves every caller: its
    # logs (and any internal call it made) must not carry that caller's id.
    seen: list[str] = []

    async def handle(items: list[str]) -> list[str]:
        seen.append(request_id_var.get())
        return items

    batcher: MicroBatcher[str, str] = MicroBatcher(handle, max_wait_s=0.001)

    async def call_as(request_id: str) -> str:
        request_id_var.set(request_id)
        return await batcher.submit(request_id)

    try:
        assert await asyncio.create_task(call_as("first-caller")) == "first-caller"
        assert await asyncio.create_task(call_as("second-caller")) == "second-caller"
        assert seen == ["", ""]
    finally:
        await batcher.close()


@pytest.mark.parametrize("max_wait_s", [0.0, 0.005])
async def test_a_cancelled_caller_is_left_out_of_its_batch(max_wait_s: float) -> None:
    handled: list[int] = []

    async def handle(items: list[int]) -> list[int]:
        handled.extend(items)
        return items

    batcher: MicroBatcher[int, int] = MicroBatcher(handle, max_wait_s=max_wait_s)
    try:
        gone = asyncio.create_task(batcher.submit(1))
        await asyncio.sleep(0)  # queued, not yet taken
        gone.cancel()
        assert await batcher.submit(2) == 2
        assert handled == [2]
    finally:
        await batcher.close()


async def test_up_to_in_flight_batches_are_handled_at_once_and_the_rest_wait_and_grow() -> None:
    release = asyncio.Event()
    batches: list[list[int]] = []
    running = 0
    most_running = 0

    async def handle(items: list[int]) -> list[int]:
        nonlocal running, most_running
        batches.append(items)
        running += 1
        most_running = max(most_running, running)
        await release.wait()
        running -= 1
        return items

    batcher: MicroBatcher[int, int] = MicroBatcher(handle, max_batch=2, max_wait_s=0.001, in_flight=2)
    try:
        first = asyncio.gather(*(batcher.submit(n) for n in range(4)))
        await asyncio.sleep(0.02)
        assert batches == [[0, 1], [2, 3]] and running == 2  # both slots busy at once
        later = asyncio.ensure_future(batcher.submit_many([4, 5]))
        await asyncio.sleep(0.02)
        assert len(batches) == 2  # waits for a slot
        release.set()
        assert await first == [0, 1, 2, 3] and await later == [4, 5]
        assert most_running == 2
    finally:
        await batcher.close()


async def test_past_max_queued_a_submit_is_refused_at_once_not_queued() -> None:
    release = asyncio.Event()

    async def handle(items: list[int]) -> list[int]:
        await release.wait()
        return items

    batcher: MicroBatcher[int, int] = MicroBatcher(handle, max_batch=2, max_wait_s=0.001, max_queued=3)
    try:
        first = asyncio.ensure_future(batcher.submit_many([0, 1]))  # taken by the worker: not waiting
        await asyncio.sleep(0.01)
        waiting = asyncio.ensure_future(batcher.submit_many([2, 3, 4]))  # three wait: the bound
        await asyncio.sleep(0)
        with pytest.raises(Overloaded, match="3 items are waiting"):
            await batcher.submit(5)
        release.set()
        assert await first == [0, 1] and await waiting == [2, 3, 4]
        assert await batcher.submit(6) == 6  # room again
    finally:
        await batcher.close()
