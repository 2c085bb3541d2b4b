"""What counting registrations per client address costs the registration path.

`python -m bench.registrations` starts its own stack (embedded PostgreSQL
and Redis, rate limits raised, one trusted X-Forwarded-For hop) and
registers agents through the gateway, 16 at a time, in rounds that
alternate three kinds of client address:

- `distinct`: every registration from an address of its own (counted, n = 1);
- `one`: every registration from one address (counted; each one waits for
  the one before, and the crowded ones publish their weights to Redis);
- `exempt`: from loopback, which is not counted (the path before counting).

It prints registrations per second and the p50/p99 latency of each kind,
per round and as the median of the rounds (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from devstack.stack import RATE_LIMITS_RAISED, Stack, free_port

_addresses = (f"10.{a}.{b}.{c}" for a, b, c in itertools.product(range(1, 250), range(256), range(1, 255)))


async def round_of(api: httpx.AsyncClient, kind: str, count: int, concurrency: int) -> tuple[float, float, float]:
    """(registrations a second, p50 ms, p99 ms) of `count` registrations."""
    one = next(_addresses)
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def register() -> None:
        headers = {} if kind == "exempt" else {"X-Forwarded-For": one if kind == "one" else next(_addresses)}
        async with gate:
            started = time.perf_counter()
            reply = await api.post("/api/v1/agents", json={}, headers=headers)
            latencies.append((time.perf_counter() - started) * 1000)
        reply.raise_for_status()

    started = time.perf_counter()
    await asyncio.gather(*(register() for _ in range(count)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return count / elapsed, latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99) - 1]


async def run(url: str, rounds: int, count: int, concurrency: int) -> None:
    kinds = ["distinct", "one", "exempt"]
    results: dict[str, list[tuple[float, float, float]]] = {k: [] for k in kinds}
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=64)) as api:
        await round_of(api, "distinct", 200, concurrency)  # warm-up
        for n in range(rounds):
            for kind in kinds[n % 3 :] + kinds[: n % 3]:  # each kind first in turn
                result = await round_of(api, kind, count, concurrency)
                results[kind].append(result)
                print(f"round {n + 1} {kind:8}: {result[0]:6.0f}/s  p50 {result[1]:5.1f} ms  p99 {result[2]:5.1f} ms")
    print("\n| client address | registrations/s | p50 ms | p99 ms |\n|---|---|---|---|")
    for kind in kinds:
        rates, p50s, p99s = zip(*results[kind], strict=True)
        median = statistics.median
        print(f"| {kind} | {median(rates):.0f} | {median(p50s):.1f} | {median(p99s):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--count", type=int, default=500, help="registrations per round")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    env = RATE_LIMITS_RAISED | {"AIMUSICSTORE_XFF_TRUSTED_HOPS": "1"}
    with tempfile.TemporaryDirectory(prefix="aimusicstore-registrations-") as tmp:
        stack = Stack(data_dir=Path(tmp) / "stack", gateway_port=free_port(), env_overrides=env)
        stack.start()
        try:
            asyncio.run(run(stack.gateway_url, args.rounds, args.count, args.concurrency))
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
