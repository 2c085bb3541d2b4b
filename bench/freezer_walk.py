"""The freezer's CPU per day (services/ranking/frozen_tops.py walk), without
a database: synthetic windows the size of bench/chart_reads.py's 1 M-vote
set (every item in the all-time window, about 1,050 tallies a day), every
period and sort ranked for each day of a 31-day pass.

    python -m bench.freezer_walk                 # ms per day
    python -m bench.freezer_walk --profile       # and where the time goes
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import time
from datetime import date, timedelta

from services.ranking.charts import Tally
from services.ranking.frozen_tops import LOOKBACK_DAYS, walk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=22_000)
    parser.add_argument("--per-day", type=int, default=1_050)
    parser.add_argument("--days", type=int, default=31)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    rng = random.Random(1)  # noqa: S311 - synthetic data, not secrets
    first = date(2026, 6, 1)
    before = []
    for i in range(args.items):
        up, down = rng.randint(1, 40), rng.randint(0, 15)
        before.append(Tally(f"song-{i}", up, down, up * 0.9, down * 0.9))
    days: dict[date, list[Tally]] = {}
    for n in range(-LOOKBACK_DAYS, args.days):
        rows = []
        for i in rng.sample(range(args.items), args.per_day):
            up, down, weight = rng.randint(1, 3), rng.randint(0, 1), rng.choice((1.0, 0.25))
            rows.append(Tally(f"song-{i}", up, down, up * weight, down * weight))
        days[first + timedelta(days=n)] = rows
    last = first + timedelta(days=args.days - 1)
    profile = cProfile.Profile() if args.profile else None
    started = time.perf_counter()
    if profile:
        profile.enable()
    frozen = sum(len(rows) for _, rows in walk(first, last, before, days))
    if profile:
        profile.disable()
    seconds = time.perf_counter() - started
    print(f"{args.days} days, {frozen:,} frozen rows: {seconds / args.days * 1000:.0f} ms a day")
    if profile:
        pstats.Stats(profile).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
