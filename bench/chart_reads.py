"""Times the period charts and history at about 1 M votes of tallies, through
the ranking service's own classes, and prints EXPLAIN (ANALYZE, BUFFERS) of
every statement a read runs.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python -m bench.chart_reads
    python -m bench.chart_reads --songs 2000 --tools 200 --days 60   # a quick look

Uses DATABASE_URL when given (in a fresh database it creates and drops),
otherwise an embedded PostgreSQL; Redis embedded (trending scores and
weights). The ranking schema is migrated to 0007, filled in SQL (songs,
tools, a year of daily tallies with trusted and probation weights, every
finished day frozen), then migrated to 0008, which builds the live windows
and running peaks (timed). Then each read runs as the service runs it,
without its 1 s answer cache:

- live: today's charts from the live windows (what the service serves);
- frozen: the same reads for a date 10 days back, from the frozen tops
  the freezer keeps (after its backfill of every finished day, timed);
  the filtered ones are summed on demand;
- on demand: the same reads with the windows reported behind today, so
  they take the path charts of past dates not frozen take (the window's
  tallies summed and ranked, as main did for every date).

Last, the consumer's cost: batches of 500 vote events through
VoteProjection.apply_events, in rounds, each round each way (so the
neighbour's load falls on all three alike):

- main: the tallies-only statement (main's consumer);
- windows in the batch: the statement that added each change to every
  window in the batch's transaction (this branch before the fold);
- appended: the tallies and the appended changes (the service now), with
  the fold timed on its own, once every four batches (about every 0.5 s at
  3,800 votes/s).

    python -m bench.chart_reads --consumer-only   # the fill and the consumer's cost, no reads
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import os
import pstats
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from redis.asyncio import Redis
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from devstack.stack import Stack
from services.common.config import to_sqlalchemy_url
from services.common.migrate import SERVICE_SCHEMAS, alembic_config
from services.ranking.rankings import Rankings
from services.ranking.store import RankingStores, live_charts
from services.ranking.store import projection as projection_module

GENERATE = """
INSERT INTO ranking.songs (id, title, artist, platform, genre, submitted_by, search_text)
SELECT 'song-' || g, 'title ' || g, 'artist ' || g,
       (ARRAY['suno_ai', 'udio', 'mubert', 'soundraw'])[1 + g % 4], 'genre-' || (g % 25), 'admin', ''
FROM generate_series(1, {songs}) g;
INSERT INTO ranking.tools (id, name, category) SELECT 'tool-' || g, 'tool ' || g, 'cat-' || (g % 10)
FROM generate_series(1, {tools}) g;

-- Each day about {per_day} items get votes, popular ones more often; 1 to 3
-- up votes and 0 or 1 down vote each (2.5 on average); a fifth of the
-- tallies were cast by agents on probation (weight 0.25).
INSERT INTO ranking.daily_tallies (item_type, item_id, day, up_votes, down_votes, weighted_up, weighted_down)
SELECT item_type, item_id, day, up, down, up * w, down * w
FROM (
    SELECT CASE WHEN k % 10 = 0 THEN 'tool' ELSE 'song' END AS item_type,
           CASE WHEN k % 10 = 0 THEN 'tool-' || (1 + (h % {tools})) ELSE 'song-' || (1 + (h % {songs})) END AS item_id,
           day, 1 + (h / 7) % 3 AS up, (h / 11) % 2 AS down, CASE WHEN h % 5 = 0 THEN 0.25 ELSE 1.0 END AS w
    FROM (
        SELECT k, (current_date - d)::date AS day,
               abs(hashint4(k * 1000 + d)) % (1 + (k * {songs}) / {per_day}) AS h
        FROM generate_series(1, {days}) d, generate_series(1, {per_day}) k
    ) picks
) t
ON CONFLICT DO NOTHING;

-- Every finished day frozen (sort=score, no filter), as the snapshot job does.
INSERT INTO ranking.chart_snapshots (day, item_type, item_id, rank, score, up_votes, down_votes)
SELECT day, item_type, item_id,
       row_number() OVER (
           PARTITION BY day, item_type ORDER BY weighted_up - weighted_down DESC, weighted_up DESC, item_id),
       up_votes - down_votes, up_votes, down_votes
FROM ranking.daily_tallies WHERE day < current_date;
ANALYZE;
"""

# The statement the consumer ran before the live windows (tallies only).
TALLIES_ONLY = text(
    """
    INSERT INTO ranking.daily_tallies AS t (item_type, item_id, day, up_votes, down_votes, weighted_up, weighted_down)
    SELECT item_type, item_id, day, up, down, wup, wdown
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
        AS b(item_type text, item_id text, day date, up int, down int, wup float8, wdown float8)
    ON CONFLICT (item_type, item_id, day)
    DO UPDATE SET up_votes = t.up_votes + EXCLUDED.up_votes, down_votes = t.down_votes + EXCLUDED.down_votes,
        weighted_up = t.weighted_up + EXCLUDED.weighted_up, weighted_down = t.weighted_down + EXCLUDED.weighted_down
    """
)


# The statement the consumer ran on this branch before the fold: each
# change added to every live window holding its day, in the batch.
WINDOWS_IN_BATCH = text(
    f"""
    WITH b AS (
        SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb))
            AS b(item_type text, item_id text, day date, up int, down int, wup float8, wdown float8)
    ), tallied AS (
        INSERT INTO ranking.daily_tallies AS t
            (item_type, item_id, day, up_votes, down_votes, weighted_up, weighted_down)
        SELECT item_type, item_id, day, up, down, wup, wdown FROM b
        ON CONFLICT (item_type, item_id, day)
        DO UPDATE SET up_votes = t.up_votes + EXCLUDED.up_votes, down_votes = t.down_votes + EXCLUDED.down_votes,
            weighted_up = t.weighted_up + EXCLUDED.weighted_up,
            weighted_down = t.weighted_down + EXCLUDED.weighted_down
    ), anchor AS (
        SELECT day FROM ranking.chart_anchor FOR SHARE
    )
    INSERT INTO ranking.chart_totals AS c
        (period, item_type, item_id, genre, platform, up_votes, down_votes, weighted_up, weighted_down)
    SELECT w.period, b.item_type, b.item_id, coalesce(s.genre, ''), coalesce(s.platform, ''),
        sum(b.up), sum(b.down), sum(b.wup), sum(b.wdown)
    FROM b CROSS JOIN anchor a CROSS JOIN {live_charts._WINDOW_VALUES}
    LEFT JOIN ranking.songs s ON b.item_type = 'song' AND s.id = b.item_id
    WHERE b.day <= a.day - w.last_back AND (w.first_back IS NULL OR b.day >= a.day - w.first_back)
    GROUP BY w.period, b.item_type, b.item_id, s.genre, s.platform
    ORDER BY w.period, b.item_type, b.item_id
    ON CONFLICT (period, item_type, item_id) DO UPDATE SET {live_charts._TOTALS_SET}
    """
)


class Statements:
    """Captures the statements a read runs, to EXPLAIN them afterwards."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.seen: list[tuple[str, Any]] = []
        self.on = False
        event.listen(engine.sync_engine, "before_cursor_execute", self._record)

    def _record(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if self.on and not statement.lstrip().upper().startswith("EXPLAIN"):
            self.seen.append((statement, parameters))

    async def explain(self) -> list[str]:
        plans = []
        async with self.engine.connect() as conn:
            for statement, parameters in self.seen:
                rows = await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
                plans.append("\n".join(r[0] for r in rows))
        return plans


async def timed(label: str, read: Callable[[], Awaitable[Any]], statements: Statements, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await read()
        times.append((time.perf_counter() - started) * 1000)
    statements.seen, statements.on = [], True
    await read()
    statements.on = False
    median = statistics.median(times)
    print(f"\n### {label}: median {median:.1f} ms of {runs} (min {min(times):.1f}, max {max(times):.1f})")
    for n, plan in enumerate(await statements.explain(), start=1):
        print(f"-- statement {n}: {statements.seen[n - 1][0].strip().splitlines()[0][:100]} ...")
        print(plan)
    return median


async def measure(database_url: str, redis_url: str, runs: int, explain: bool, consumer_only: bool = False) -> None:
    engine = create_async_engine(to_sqlalchemy_url(database_url), pool_size=4)
    redis = Redis.from_url(redis_url, decode_responses=True)
    stores = RankingStores.open(engine, redis, probation_weight=0.25)
    rankings = Rankings.over(stores.projection, stores.trending_sets, stores.catalog, stores.charts, 86400.0)
    await rankings.scale.rebuild_trending()
    statements = Statements(engine)
    now = datetime.now(UTC)
    today = now.date()
    charts = rankings.charts
    results: dict[str, dict[str, float]] = {}
    past = today - timedelta(days=10)

    def chart_reads(day: date) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
        reads: list[tuple[str, Callable[[], Awaitable[Any]]]] = []
        for period in ("daily", "weekly", "monthly", "all_time"):
            for sort in ("score", "best", "controversial"):
                reads.append(
                    (f"{period} {sort}", functools.partial(charts._chart, period, day, "song", 50, sort, {}, now))
                )
        reads.append(
            (
                "all_time score genre",
                lambda: charts._chart("all_time", day, "song", 50, "score", {"genre": "genre-7"}, now),
            )
        )
        reads.append(
            (
                "monthly best platform",
                lambda: charts._chart("monthly", day, "song", 100, "best", {"platform": "udio"}, now),
            )
        )
        histories = iter(range(1, 10**6))
        reads.append(
            (
                "history 365 days",
                lambda: rankings.history.item_history("songs", f"song-{next(histories) * 37 % 20000 + 1}", 365),
            )
        )
        return reads

    reads = chart_reads(today)
    if reads and not consumer_only:
        # Charts of past dates: the freezer's backfill of every finished
        # day (as after migration 0009), timed; then reads of a past date.
        started, days = time.perf_counter(), 0
        while frozen := await rankings.freezer.freeze():
            days += frozen
        async with engine.connect() as conn:
            rows, size = (
                await conn.execute(
                    text("SELECT count(*), pg_total_relation_size('ranking.chart_tops') FROM ranking.chart_tops")
                )
            ).one()
        print(
            f"freezer backfill: {days} days (songs and tools) in {time.perf_counter() - started:.1f}s,"
            f" {rows:,} frozen rows, {size / 2**20:.0f} MiB with the index"
        )

    async def behind(day: date) -> date | None:
        return day - timedelta(days=1)

    if consumer_only:  # the fill and the consumer's cost only
        reads = []
    if os.environ.get("BENCH_PROFILE"):  # where a read's time goes, in Python
        profile = cProfile.Profile()
        for _ in range(5):
            profile.enable()
            await charts._chart("weekly", today, "song", 50, "score", {}, now)
            profile.disable()
        pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
    for mode in ("live", "frozen", "on demand") if reads else ():
        rankings.live._day = None
        if mode == "on demand":
            stores.charts.roll_live_windows = behind  # type: ignore[method-assign,assignment]
        print(f"\n## {mode}" + (f" (charts of {past}; filtered ones are on demand)" if mode == "frozen" else ""))
        for label, read in chart_reads(past) if mode == "frozen" else reads:
            if not explain:
                statements.explain = _no_plans  # type: ignore[method-assign]
            rankings.history._histories._entries.clear()
            rankings.history._today_ranks._entries.clear()
            results.setdefault(label, {})[mode] = await timed(f"{label} ({mode})", read, statements, runs)

    if reads:
        print(
            "\n## Summary (median ms)\n\n| read | live windows (today) | frozen (a past date) | on demand |"
            "\n|---|---|---|---|"
        )
    for label, by_mode in results.items():
        print(f"| {label} | {by_mode['live']:.1f} | {by_mode['frozen']:.1f} | {by_mode['on demand']:.1f} |")

    await consumer_cost(rankings, stores, now)
    await redis.aclose()
    await engine.dispose()


async def _no_plans() -> list[str]:
    return []


async def consumer_cost(rankings: Rankings, stores: RankingStores, now: datetime, rounds: int = 6) -> None:
    """Batches of 500 vote events (300 songs, today) through apply_events,
    each of the three ways in every round (6 batches a way a round); the
    appended way's fold once every four batches, and at the round's end."""
    print("\n## Consumer: batches of 500 vote events on 300 songs\n")
    ids = iter(range(10**12, 10**13))
    kept = projection_module._ADD_DAILY_TALLIES
    ways = (
        ("main: tallies only", TALLIES_ONLY),
        ("windows in the batch (before)", WINDOWS_IN_BATCH),
        ("appended, folded apart (now)", kept),
    )
    times: dict[str, list[float]] = {label: [] for label, _ in ways}
    folds: list[tuple[float, int]] = []
    batch_no = 0

    def next_batch() -> list[VoteEvent]:
        nonlocal batch_no
        batch_no += 1
        batch = []
        for n in range(500):
            e = VoteEvent(
                event_id=next(ids),
                type="vote",
                agent_id=f"bench-{uuid.uuid4().hex[:8]}",
                item_type="song",
                item_id=f"song-{(batch_no * 7919 + n * 31) % 20000 % 300 * 61 + 1}",
                direction=1 if n % 4 else -1,
            )
            e.voted_at.FromDatetime(now)
            batch.append(e)
        return batch

    async def fold() -> None:
        started = time.perf_counter()
        rows = await stores.charts.fold_live_windows()
        folds.append(((time.perf_counter() - started) * 1000, rows))

    for round_no in range(rounds + 1):  # the first round warms up and is not counted
        for label, statement in ways:
            projection_module._ADD_DAILY_TALLIES = statement
            for n in range(6):
                batch = next_batch()
                started = time.perf_counter()
                await rankings.scale.apply_vote_events(batch)
                if round_no:
                    times[label].append((time.perf_counter() - started) * 1000)
                if statement is kept and n % 4 == 3:
                    await fold()
            if statement is kept:
                await fold()
    projection_module._ADD_DAILY_TALLIES = kept
    main_median = statistics.median(times[ways[0][0]])
    for label, taken in times.items():
        median = statistics.median(taken)
        p90 = statistics.quantiles(taken, n=10)[-1]
        print(
            f"- {label}: median {median:.1f} ms per batch (p90 {p90:.1f}, {len(taken)} batches),"
            f" {median / main_median:.2f}x main"
        )
    fold_ms = [ms for ms, _ in folds]
    print(
        f"- fold: median {statistics.median(fold_ms):.1f} ms (p90 {statistics.quantiles(fold_ms, n=10)[-1]:.1f},"
        f" {len(folds)} folds of 2 to 4 batches, median {statistics.median(r for _, r in folds):.0f} window rows)"
    )


def fill(database_url: str, songs: int, tools: int, days: int, per_day: int) -> None:
    for service in SERVICE_SCHEMAS:
        command.upgrade(alembic_config(service, database_url), "0007" if service == "ranking" else "head")
    started = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(GENERATE.format(songs=songs, tools=tools, days=days, per_day=per_day))
        tallies, votes = conn.execute(
            "SELECT count(*), sum(up_votes + down_votes) FROM ranking.daily_tallies"
        ).fetchone() or (0, 0)
        frozen = (conn.execute("SELECT count(*) FROM ranking.chart_snapshots").fetchone() or (0,))[0]
    print(
        f"generated {songs:,} songs, {tools:,} tools, {days} days: {tallies:,} daily tallies,"
        f" {votes:,} votes, {frozen:,} frozen chart rows in {time.perf_counter() - started:.1f}s"
    )
    started = time.perf_counter()
    command.upgrade(alembic_config("ranking", database_url), "0008")
    command.upgrade(alembic_config("ranking", database_url), "head")  # the frozen tops: filled by the freezer
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE ranking.chart_totals")
        rows = (conn.execute("SELECT count(*) FROM ranking.chart_totals").fetchone() or (0,))[0]
    seconds = time.perf_counter() - started
    print(f"migration 0008 (live windows and running peaks built): {seconds:.1f}s, {rows:,} window rows")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, default=20_000)
    parser.add_argument("--tools", type=int, default=2_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--per-day", type=int, default=1_100, help="tallies a day (before collisions)")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--no-explain", action="store_true")
    parser.add_argument("--consumer-only", action="store_true", help="the fill and the consumer's cost, no reads")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-charts-") as tmp:
        base_url = os.environ.get("DATABASE_URL")
        stack = Stack(data_dir=Path(tmp), gateway_port=0, database_url=None, redis_url=os.environ.get("REDIS_URL"))
        name = f"bench_charts_{uuid.uuid4().hex[:8]}"
        if base_url:
            with psycopg.connect(base_url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            stack.database_url = base_url.rsplit("/", 1)[0] + "/" + name
        else:
            stack.start_postgres()
        stack.start_redis()
        try:
            fill(stack.database_url or "", args.songs, args.tools, args.days, args.per_day)
            asyncio.run(
                measure(
                    stack.database_url or "", stack.redis_url or "", args.runs, not args.no_explain, args.consumer_only
                )
            )
        finally:
            stack.stop()
            if base_url:
                with psycopg.connect(base_url, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
