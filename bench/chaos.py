"""`make chaos`: faults injected under a steady vote load, and what survived them.

Starts its own stack (embedded PostgreSQL and Redis, with our fault proxy
between the services and Redis), seeds agents and songs, then, while a load
generator casts votes at a steady rate through the gateway, takes each part
down in turn: kill -9 and restart, SIGSTOP and SIGCONT, a Redis blackhole,
a consumer down for minutes. After each fault it stops the load and checks:

- every acknowledged vote is in the votes table (lost);
- the vote service's counts, the ranking projection (its votes and item
  counts) and the reputation projection (its votes) equal the table;
- how long after the recovery each consumer group was back within its
  freshness promise (ranking 2 s, reputation 5 s), and how long after the
  load stopped everything equalled the table;
- the vote latency (p50/p99) while the fault lasted, and refusals by status.

It prints one row per fault. `python -m bench.chaos --faults freeze-ranking,blackhole-redis`
runs a subset; `--consumer-down-s` sets how long the "consumer down" fault
lasts (default 120 s). tests/integration/test_chaos.py runs a short subset in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import redis
from redis.asyncio import Redis as AsyncRedis

from devstack.faultproxy import FaultProxy
from devstack.stack import RATE_LIMITS_RAISED, Stack, free_port
from services.common.stream_progress import lag_seconds, read_position

PROMISES_S = {"ranking": 2.0, "reputation": 5.0}

# Limits raised so that the load itself is never refused: this measures faults, not rules.
RAISED_LIMITS = {
    "AIMUSICSTORE_QUOTA_FREE": "10000000",
    "AIMUSICSTORE_SONG_QUOTA_FREE": "10000000",
    "AIMUSICSTORE_ABUSE_MAX_VOTES": "10000000",
    "AIMUSICSTORE_ABUSE_ONE_DIRECTION_MIN": "10000000",
    "AIMUSICSTORE_ABUSE_BURST_MAX": "10000000",
    "AIMUSICSTORE_RECONCILE_INTERVAL_S": "1",
} | RATE_LIMITS_RAISED


@dataclass
class ChaosStack:
    """A Stack whose services reach Redis through a FaultProxy."""

    stack: Stack
    proxy: FaultProxy

    @classmethod
    def start(cls, data_dir: Path, extra_env: dict[str, str] | None = None) -> ChaosStack:
        redis_port = free_port()
        proxy = FaultProxy(upstream_port=redis_port)
        proxy.start()
        env = RAISED_LIMITS | (extra_env or {})
        stack = Stack(data_dir=data_dir, gateway_port=free_port(), env_overrides=env)
        stack.ports["redis"] = redis_port
        stack.redis_url = f"redis://127.0.0.1:{redis_port}/0"
        # The services (and migrations) talk to Redis through the proxy; this
        # harness and its oracles talk to Redis directly.
        stack.env_overrides["REDIS_URL"] = f"redis://127.0.0.1:{proxy.port}/0"
        stack.start()
        return cls(stack, proxy)

    def stop(self) -> None:
        self.stack.stop()
        self.proxy.stop()

    def signal(self, name: str, sig: signal.Signals) -> None:
        self.stack.procs[name].send_signal(sig)

    def kill(self, name: str) -> None:
        proc = self.stack.procs[name]
        proc.kill()
        proc.wait()


@dataclass
class Fault:
    name: str
    inject: Callable[[ChaosStack], None]
    recover: Callable[[ChaosStack], None]
    duration_s: float


def _kill_restart(part: str, down_s: float = 2.0) -> Fault:
    return Fault(f"kill-{part}", lambda c: c.kill(part), lambda c: c.stack.restart(part), down_s)


def _freeze(part: str, frozen_s: float) -> Fault:
    return Fault(
        f"freeze-{part}",
        lambda c: c.signal(part, signal.SIGSTOP),
        lambda c: c.signal(part, signal.SIGCONT),
        frozen_s,
    )


def faults(consumer_down_s: float) -> list[Fault]:
    return [
        _freeze("ranking", 5),
        _freeze("reputation", 5),
        _freeze("redis", 10),
        Fault("blackhole-redis", lambda c: c.proxy.blackhole(True), lambda c: c.proxy.blackhole(False), 10),
        _kill_restart("vote"),
        _kill_restart("ranking"),
        _kill_restart("reputation"),
        _kill_restart("envoy"),
        _kill_restart("redis"),
        _kill_restart("postgres"),
        Fault(
            "consumer-down",
            lambda c: c.stack.stop_process("ranking"),
            lambda c: c.stack.start_service("ranking"),
            consumer_down_s,
        ),
    ]


# -- load ---------------------------------------------------------------------


@dataclass
class Vote:
    agent_id: str
    song_id: str
    direction: int
    sent_at: float
    latency_s: float
    status: int


@dataclass
class Load:
    """Casts votes at `rate` per second from its own thread until stopped."""

    url: str
    keys: dict[str, str]  # agent id -> API key
    pairs: list[tuple[str, str]]
    rate: float
    votes: list[Vote] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=self.url, timeout=10, limits=limits) as api:
            tasks: set[asyncio.Task[None]] = set()
            started, sent = time.monotonic(), 0
            while not self._stop.is_set() and self.pairs:
                due = started + sent / self.rate
                if (wait := due - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                agent_id, song_id = self.pairs.pop()
                task = asyncio.create_task(self._vote(api, agent_id, song_id))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _vote(self, api: httpx.AsyncClient, agent_id: str, song_id: str) -> None:
        direction = random.choice((1, -1))  # noqa: S311 - load, not secrecy
        body = {"item_type": "song", "item_id": song_id, "vote": "up" if direction > 0 else "down"}
        sent_at = time.monotonic()
        try:
            reply = await api.post(
                "/api/v1/vote", json=body, headers={"Authorization": f"Bearer {self.keys[agent_id]}"}
            )
            status = reply.status_code
        except httpx.HTTPError:
            status = 0  # no answer: not acknowledged
        self.votes.append(Vote(agent_id, song_id, direction, sent_at, time.monotonic() - sent_at, status))


def seed(url: str, agents: int, songs: int) -> tuple[dict[str, str], list[str]]:
    keys: dict[str, str] = {}
    with httpx.Client(base_url=url, timeout=30) as api:
        for _ in range(agents):
            reply = api.post("/api/v1/agents", json={}).json()
            keys[reply["agent"]["id"]] = reply["api_key"]
        first = next(iter(keys.values()))
        song_ids = []
        for n in range(songs):
            body = {"title": f"Chaos track {n}", "artist": "Chaos", "platform": "suno_ai"}
            reply = api.post("/api/v1/songs", json=body, headers={"Authorization": f"Bearer {first}"})
            song_ids.append(reply.json()["id"])
    return keys, song_ids


# -- oracles --------------------------------------------------------------------


@dataclass
class Check:
    lost: int
    counts_off: int
    ranking_off: int
    reputation_off: int

    @property
    def ok(self) -> bool:
        return not (self.lost or self.counts_off or self.ranking_off or self.reputation_off)


def check(stack: Stack, api: httpx.Client, acked: set[tuple[str, str, int]], song_ids: list[str]) -> Check:
    def votes_of(conn: psycopg.Connection, schema: str) -> set[tuple[str, str, int]]:
        query = f"SELECT agent_id, item_id, direction FROM {schema}.votes WHERE item_type = 'song'"
        return {(a, i, d) for a, i, d in conn.execute(query)}

    with psycopg.connect(stack.database_url or "") as conn:
        table, ranking, reputation = (votes_of(conn, schema) for schema in ("vote", "ranking", "reputation"))
        catalog = {i: (u, d) for i, u, d in conn.execute("SELECT id, up_votes, down_votes FROM ranking.songs")}
    truth: dict[str, list[int]] = {s: [0, 0] for s in song_ids}
    for _, item, direction in table:
        if item in truth:
            truth[item][0 if direction > 0 else 1] += 1
    counts_off = 0
    for song_id in song_ids:
        reply = api.get(f"/api/v1/votes/song/{song_id}")
        body = reply.json() if reply.status_code == 200 else {}
        counts_off += (body.get("up_votes", 0), body.get("down_votes", 0)) != tuple(truth[song_id]) or not body
    catalog_off = sum(catalog.get(s) != tuple(truth[s]) for s in song_ids)
    return Check(
        lost=len(acked - table),
        counts_off=counts_off,
        ranking_off=len(ranking ^ table) + catalog_off,
        reputation_off=len(reputation ^ table),
    )


async def _lag_after(redis_url: str, recovered: float, watch_s: float) -> dict[str, float]:
    """Watches each group's lag (age of its oldest unapplied event) for
    watch_s after the recovery; returns, per group, the seconds from the
    recovery to the last moment its lag was past its promise (0: never)."""
    client = AsyncRedis.from_url(redis_url, decode_responses=True, socket_timeout=1)
    late_until = dict.fromkeys(PROMISES_S, 0.0)
    try:
        while (since := time.monotonic() - recovered) < watch_s:
            for group, promise in PROMISES_S.items():
                try:
                    position = await read_position(client, group)
                except redis.RedisError:
                    continue
                if position is not None and lag_seconds(position, int(time.time() * 1000)) > promise:
                    late_until[group] = round(since, 1)
            await asyncio.sleep(0.1)
    finally:
        await client.aclose()
    return late_until


# -- one fault --------------------------------------------------------------------


@dataclass
class Row:
    fault: str
    acked: int
    refused: dict[int, int]
    p50_ms: float
    p99_ms: float
    max_ms: float
    lost: int
    counts_off: int
    ranking_off: int
    reputation_off: int
    caught_up_s: dict[str, float]
    converged_s: float


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


def run_fault(chaos: ChaosStack, fault: Fault, load: Load, song_ids: list[str], before_s: float, after_s: float) -> Row:
    stack = chaos.stack
    first_vote = len(load.votes)
    load.start()
    time.sleep(before_s)
    injected = time.monotonic()
    fault.inject(chaos)
    time.sleep(fault.duration_s)
    fault.recover(chaos)
    recovered = time.monotonic()
    caught_up = asyncio.run(_lag_after(stack.redis_url or "", recovered, watch_s=after_s))
    load.stop()
    stopped = time.monotonic()
    votes = load.votes[first_vote:]
    acked = {(v.agent_id, v.song_id, v.direction) for v in votes if v.status == 200}
    during = [v.latency_s * 1000 for v in votes if injected <= v.sent_at <= recovered]
    with httpx.Client(base_url=stack.gateway_url, timeout=10) as api:
        everything = {(v.agent_id, v.song_id, v.direction) for v in load.votes if v.status == 200}
        result = check(stack, api, everything, song_ids)
        while not result.ok and time.monotonic() - stopped < 60:
            time.sleep(0.25)
            result = check(stack, api, everything, song_ids)
    return Row(
        fault=fault.name,
        acked=len(acked),
        refused=dict(Counter(v.status for v in votes if v.status != 200)),
        p50_ms=round(_quantile(during, 0.5), 1),
        p99_ms=round(_quantile(during, 0.99), 1),
        max_ms=round(max(during, default=0.0), 1),
        lost=result.lost,
        counts_off=result.counts_off,
        ranking_off=result.ranking_off,
        reputation_off=result.reputation_off,
        caught_up_s=caught_up,
        converged_s=round(time.monotonic() - stopped, 1) if result.ok else float("inf"),
    )


def print_table(rows: list[Row]) -> None:
    header = (
        "| fault | acked | refused (status: n) | vote p50 / p99 during (ms) | lost | counts off | ranking off "
        "| reputation off | ranking back ≤2 s after (s) | reputation back ≤5 s after (s) | all equal after stop (s) |"
    )
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for r in rows:
        refused = ", ".join(f"{k}: {v}" for k, v in sorted(r.refused.items())) or "-"
        print(
            f"| {r.fault} | {r.acked} | {refused} | {r.p50_ms} / {r.p99_ms} | {r.lost} | {r.counts_off} "
            f"| {r.ranking_off} | {r.reputation_off} | {r.caught_up_s['ranking']} | {r.caught_up_s['reputation']} "
            f"| {r.converged_s} |",
            flush=True,
        )


def run(
    names: list[str] | None = None,
    *,
    rate: float = 50,
    before_s: float = 3,
    after_s: float = 8,
    consumer_down_s: float = 120,
    agents: int = 100,
    songs: int = 200,
    hold_s: float | None = None,
) -> list[Row]:
    """Runs the named faults (all by default) on a fresh stack; hold_s, when
    given, replaces every fault's own duration (CI's short runs)."""
    chosen = [f for f in faults(consumer_down_s) if names is None or f.name in names]
    if hold_s is not None:
        chosen = [Fault(f.name, f.inject, f.recover, hold_s) for f in chosen]
    if names is not None and len(chosen) != len(set(names)):
        unknown = set(names) - {f.name for f in chosen}
        raise SystemExit(f"unknown fault(s): {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory(prefix="aimusicstore-chaos-") as data:
        chaos = ChaosStack.start(Path(data))
        try:
            keys, song_ids = seed(chaos.stack.gateway_url, agents, songs)
            pairs = [(a, s) for a in keys for s in song_ids]
            random.shuffle(pairs)
            load = Load(chaos.stack.gateway_url, keys, pairs, rate)
            rows = []
            for fault in chosen:
                print(f"-- {fault.name} ({fault.duration_s:.0f} s) ...", flush=True)
                rows.append(run_fault(chaos, fault, load, song_ids, before_s, after_s))
                print_table(rows[-1:])
            return rows
        finally:
            chaos.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--faults", help="comma-separated subset (default: all)")
    parser.add_argument("--rate", type=float, default=50, help="votes per second offered (default 50)")
    parser.add_argument("--consumer-down-s", type=float, default=120, help="how long the consumer stays down")
    args = parser.parse_args()
    rows = run(args.faults.split(",") if args.faults else None, rate=args.rate, consumer_down_s=args.consumer_down_s)
    print()
    print_table(rows)


if __name__ == "__main__":
    main()
