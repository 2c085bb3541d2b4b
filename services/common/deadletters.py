"""Inspect and replay parked vote events: `python -m services.common.deadletters`.

A consumer parks an event it cannot apply in `aimusicstore:vote-events:dead:<group>`
(see events.consume) so the stream keeps flowing. Once the cause is fixed
(a bug, a missing row), an operator replays them:

    python -m services.common.deadletters list [--group ranking] [--count 20]
    python -m services.common.deadletters replay --group ranking [--entry ID ...]
    python -m services.common.deadletters drop --group ranking --entry ID [...]

`replay` appends each event to the vote event stream again and removes it
from the dead-letter stream. Every consumer group sees it once more; those
that applied it already drop it by its event id. Entries parked as
undecodable are never replayed (they would only be parked again): `drop`
them. Reads REDIS_URL.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable

from redis import Redis

from services.common.consumer_rules import UNDECODABLE
from services.common.events import (
    EVENT_FIELD,
    VOTE_EVENTS_STREAM,
    Entry,
    dead_letter_stream,
    entry_list,
)

DEAD_PREFIX = dead_letter_stream("")
dead_stream = dead_letter_stream


def groups(redis: Redis) -> list[str]:
    return sorted(key.removeprefix(DEAD_PREFIX) for key in redis.scan_iter(match=DEAD_PREFIX + "*"))


def entries(redis: Redis, group: str, ids: Iterable[str] = (), count: int | None = None) -> list[Entry]:
    stream = dead_stream(group)
    wanted = list(ids)
    if not wanted:
        return entry_list(redis.xrange(stream, count=count))
    found: list[Entry] = []
    for entry_id in wanted:
        found += entry_list(redis.xrange(stream, entry_id, entry_id))
    missing = set(wanted) - {entry_id for entry_id, _ in found}
    if missing:
        raise SystemExit(f"no such entry in {stream}: {', '.join(sorted(missing))}")
    return found


def replay(redis: Redis, group: str, ids: Iterable[str] = ()) -> tuple[int, int]:
    """Re-publishes the group's parked events; returns (replayed, skipped as undecodable)."""
    replayed = skipped = 0
    for entry_id, fields in entries(redis, group, ids):
        if fields.get("reason") == UNDECODABLE or EVENT_FIELD not in fields:
            skipped += 1
            continue
        pipe = redis.pipeline(transaction=True)  # both or neither
        pipe.xadd(VOTE_EVENTS_STREAM, {EVENT_FIELD: fields[EVENT_FIELD]})
        pipe.xdel(dead_stream(group), entry_id)
        pipe.execute()
        replayed += 1
    return replayed, skipped


def drop(redis: Redis, group: str, ids: list[str]) -> int:
    entries(redis, group, ids)  # every id must exist
    return int(redis.xdel(dead_stream(group), *ids))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="show parked events")
    listing.add_argument("--group", help="one consumer group (default: all)")
    listing.add_argument("--count", type=int, default=20, help="entries per group (default 20)")
    replaying = commands.add_parser("replay", help="publish parked events again")
    replaying.add_argument("--group", required=True)
    replaying.add_argument("--entry", action="append", default=[], help="only these entry ids (repeatable)")
    dropping = commands.add_parser("drop", help="delete parked events")
    dropping.add_argument("--group", required=True)
    dropping.add_argument("--entry", action="append", required=True, help="entry id (repeatable)")
    args = parser.parse_args(argv)

    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        sys.exit("deadletters: REDIS_URL is required")
    with Redis.from_url(redis_url, decode_responses=True) as redis:
        if args.command == "list":
            for group in [args.group] if args.group else groups(redis):
                parked = entries(redis, group, count=args.count)
                print(f"{group}: {redis.xlen(dead_stream(group))} parked")
                for entry_id, fields in parked:
                    print(json.dumps({"entry": entry_id, **fields}))
        elif args.command == "replay":
            replayed, skipped = replay(redis, args.group, args.entry)
            print(f"{args.group}: replayed {replayed}, skipped {skipped} undecodable (drop them)")
        else:
            print(f"{args.group}: dropped {drop(redis, args.group, args.entry)}")


if __name__ == "__main__":
    main()
