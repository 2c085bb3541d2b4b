"""Micro-batching: many concurrent callers, one round trip.

Callers `submit` an item and await its result; a single worker takes what
has queued (waiting at most `max_wait_s` after the first item, or until
`max_batch`), hands the batch to `handle`, and resolves each caller with its
own result, or every caller of the batch with the exception `handle` raised.
Under light load a batch is one item and waits at most max_wait_s; under
heavy load the per-round-trip cost is shared by the whole batch, and up to
`in_flight` batches are handled at once.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from services.common import tracing

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger("batching")


class Overloaded(Exception):
    """More items are waiting than the batcher takes (`max_queued`): the
    caller should be refused at once rather than wait behind them."""


class MicroBatcher(Generic[T, R]):
    def __init__(
        self,
        handle: Callable[[list[T]], Awaitable[list[R]]],
        *,
        max_batch: int = 256,
        max_wait_s: float = 0.002,
        in_flight: int = 1,
        max_queued: int | None = None,
    ) -> None:
        self._handle = handle
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        # Batches handled at once: with more than one, a batch waiting on its
        # round trips no longer holds up the next (`handle` must then be safe
        # to run concurrently).
        self._in_flight = in_flight
        # Items waiting for a batch at most (None: unbounded). Past it a
        # submit raises Overloaded: under a load beyond what `handle` keeps
        # up with, callers are refused in microseconds instead of all
        # waiting ever longer (and timing out after their work was done).
        self._max_queued = max_queued
        self._slots = asyncio.Semaphore(in_flight)
        self._serving: set[asyncio.Task[None]] = set()
        # Each item with its caller's future and trace (empty unless tracing is on).
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R], str]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            # A context of its own: the worker outlives the call that started
            # it and serves every caller, so it must not log under (or forward
            # to other services) the first caller's request id.
            self._worker = asyncio.create_task(self._run(), name="micro-batcher", context=contextvars.Context())

    def check_room(self, count: int) -> None:
        """Raises Overloaded now if `count` more items would not be taken:
        lets a caller refuse before doing the work that precedes a submit."""
        self._admit(count)

    def _admit(self, count: int) -> None:
        if self._max_queued is not None and self._queue.qsize() + count > self._max_queued:
            raise Overloaded(f"{self._queue.qsize()} items are waiting (at most {self._max_queued})")

    async def submit(self, item: T) -> R:
        self._admit(1)
        self._ensure_worker()
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future, tracing.current_traceparent()))
        return await future

    async def submit_many(self, items: list[T]) -> list[R]:
        """Submits items together (they join the same batch where room is
        left) and returns their results in order."""
        self._admit(len(items))
        self._ensure_worker()
        loop, trace = asyncio.get_running_loop(), tracing.current_traceparent()
        futures: list[asyncio.Future[R]] = []
        for item in items:
            future: asyncio.Future[R] = loop.create_future()
            self._queue.put_nowait((item, future, trace))  # unbounded queue: never waits
            futures.append(future)
        return list(await asyncio.gather(*futures))

    async def _run(self) -> None:
        while True:
            # With every slot busy, callers queue up: the next batch is bigger.
            await self._slots.acquire()
            batch = [await self._queue.get()]
            if self._queue.qsize() < self._max_batch - 1:
                # One short sleep lets concurrent callers join (cheaper than a
                # wait_for per item, which creates a task each time).
                await asyncio.sleep(self._max_wait_s)
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            if self._in_flight == 1:
                await self._serve(batch)
            else:
                task = asyncio.create_task(self._serve(batch), name="micro-batch")
                self._serving.add(task)
                task.add_done_callback(self._serving.discard)

    async def _serve(self, batch: list[tuple[T, asyncio.Future[R], str]]) -> None:
        try:
            live = [(item, future) for item, future, _ in batch if not future.cancelled()]
            if not live:
                return
            try:
                with tracing.serving_batch(
                    "micro-batch", (trace for _, future, trace in batch if not future.cancelled())
                ):
                    results = await self._handle([item for item, _ in live])
            except Exception as exc:  # noqa: BLE001 - every caller of the batch gets it
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                return
            for (_, future), result in zip(live, results, strict=True):
                if not future.done():
                    future.set_result(result)
        finally:
            self._slots.release()

    async def close(self) -> None:
        tasks = [t for t in (self._worker, *self._serving) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
