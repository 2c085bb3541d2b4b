"""Times the reputation service's full set-based recompute on a large history.

    make bench-reputation            # 100,000 agents, 1,000,000 votes
    python -m bench.reputation_recompute --agents 1000 --votes 10000

Uses DATABASE_URL when given (in a fresh database it creates and drops),
otherwise an embedded PostgreSQL in a temporary folder. The history is
generated in SQL (generate_series), then VoteProjection.recompute_all runs
exactly as the service runs it, twice: a cold pass that changes every score
and a warm pass that changes none. Also times the incremental path for a
batch of 500 events.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from sqlalchemy.ext.asyncio import create_async_engine

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from devstack.stack import Stack
from services.common.config import to_sqlalchemy_url
from services.reputation.store import VoteProjection

GENERATE = """
INSERT INTO reputation.agents (id, name, first_vote_at)
SELECT 'agent-' || g, 'agent ' || g, now() - (g % 400) * interval '1 day'
FROM generate_series(1, %(agents)s) g;

-- Each agent votes on distinct items; item ids cluster so scores mix signs.
INSERT INTO reputation.votes (agent_id, item_type, item_id, direction, cast_at, earns)
SELECT 'agent-' || (1 + (g %% %(agents)s)),
       CASE WHEN g %% 5 = 0 THEN 'tool' ELSE 'song' END,
       'item-' || (g / %(agents)s) || '-' || ((g * 7919) %% %(items)s),
       CASE WHEN (g * 31) %% 7 < 4 THEN 1 ELSE -1 END,
       now(), true
FROM generate_series(0::bigint, %(votes)s - 1) g
ON CONFLICT DO NOTHING;

INSERT INTO reputation.item_scores (item_type, item_id, score)
SELECT item_type, item_id, sum(direction) FROM reputation.votes GROUP BY 1, 2;
ANALYZE reputation.agents; ANALYZE reputation.votes; ANALYZE reputation.item_scores;
"""


async def measure(database_url: str, agents: int, votes: int) -> None:
    started = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            GENERATE.replace("%(agents)s", str(agents))
            .replace("%(votes)s", str(votes))
            .replace("%(items)s", str(max(votes // 20, 1)))
            .replace("%%", "%")
        )
        row = conn.execute("SELECT count(*) FROM reputation.votes").fetchone()
        stored = row[0] if row else 0
    print(f"generated {agents:,} agents and {stored:,} votes in {time.perf_counter() - started:.1f}s")

    engine = create_async_engine(to_sqlalchemy_url(database_url), pool_size=2)
    projection = VoteProjection(engine)
    now = datetime.now(UTC)
    for label in ("cold (every score changes)", "warm (nothing changes)"):
        t = time.perf_counter()
        changed = await projection.recompute_all(now)
        print(f"full recompute, {label}: {time.perf_counter() - t:.2f}s, {len(changed):,} agents updated")

    batch = []
    for n in range(500):
        event = VoteEvent(
            event_id=10**15 + n,
            type="vote",
            agent_id=f"agent-{1 + n}",
            item_type="song",
            item_id=f"item-0-{n % 50}",
            direction=1 if n % 3 else -1,
        )
        event.voted_at.FromDatetime(now)
        batch.append(event)
    t = time.perf_counter()
    changed = await projection.apply_events(batch, now)
    print(f"incremental batch of 500 events: {time.perf_counter() - t:.2f}s, {len(changed):,} agents updated")
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--votes", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-rep-") as tmp:
        base_url = os.environ.get("DATABASE_URL")
        stack = Stack(
            data_dir=Path(tmp), gateway_port=0, database_url=None, redis_url=os.environ.get("REDIS_URL") or ""
        )
        if base_url:
            name = f"bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(base_url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            stack.database_url = base_url.rsplit("/", 1)[0] + "/" + name
        else:
            stack.start_postgres()
        try:
            stack.migrate()
            asyncio.run(measure(stack.database_url or "", args.agents, args.votes))
        finally:
            stack.stop()
            if base_url:
                with psycopg.connect(base_url, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
