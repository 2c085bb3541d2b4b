"""`make integrity`: attacks on the charts through the gateway, and what they bought.

Starts its own stack (embedded PostgreSQL and Redis, default limits and
rules; the gateway trusts one X-Forwarded-For hop so that each simulated
client has an address of its own), then:

1. an honest population: agents registered from addresses of their own,
   songs with a skewed popularity, votes paced as people pace them;
2. history for it: the seeding path backdates the honest agents (created
   weeks ago, votes spread over past days), as they would be in production,
   and waits until the reputation service has made them trusted;
3. each attack in turn, on a fresh target song (or against the honest #1),
   watched for `--watch-s` seconds after its last vote.

Per attack it prints the target's best trending and daily rank while
watched, how many attackers were flagged and how long after the attack's
last vote the last of them was, how many registrations each address got
through, and at the end how many honest agents were flagged.
docs/integrity.md has the results and the algorithms.

`python -m bench.integrity --attacks fresh-ring,brigade` runs a subset;
`--honest 300 --songs 200` sizes the population; `--env NAME=VALUE` (repeated)
sets any other setting of the stack, e.g.
`--env AIMUSICSTORE_RATE_LIMIT_REGISTRATIONS_PER_MIN=1000000` for the
mass registration with the registration limit out of the way.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from devstack.stack import Stack, free_port

# The gateway takes the client address from one X-Forwarded-For hop: the
# harness plays many clients from one machine. The reputation pass (which
# graduates agents) runs every 10 s instead of 300 s, so that the seeded
# history takes effect in seconds. Every limit and rule is at its default.
STACK_ENV = {"AIMUSICSTORE_XFF_TRUSTED_HOPS": "1", "AIMUSICSTORE_REPUTATION_RECOMPUTE_INTERVAL_S": "10"}
TOP = 10
# Seeded: a run is reproducible (`--seed`), apart from the timing of the stack itself.
RNG = random.Random(7)  # noqa: S311 - simulation, not secrecy
_addresses = (f"10.{a}.{b}.{c}" for a, b, c in itertools.product(range(1, 250), range(256), range(1, 255)))


def new_address() -> str:
    return next(_addresses)


@dataclass
class Client:
    """One simulated client: its address, and its agent once registered."""

    address: str
    agent_id: str = ""
    key: str = ""

    def headers(self) -> dict[str, str]:
        headers = {"X-Forwarded-For": self.address}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        return headers


@dataclass
class Harness:
    api: httpx.AsyncClient
    admin_key: str
    database_url: str
    sleepers: list[Client] = field(default_factory=list)
    admitted_per_address: Counter[str] = field(default_factory=Counter)
    refused_per_address: Counter[str] = field(default_factory=Counter)

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}", "X-Forwarded-For": "192.0.2.1"}

    async def register(self, client: Client) -> bool:
        reply = await self.api.post("/api/v1/agents", json={}, headers=client.headers())
        if reply.status_code != 200:
            self.refused_per_address[client.address] += 1
            return False
        body = reply.json()
        client.agent_id, client.key = body["agent"]["id"], body["api_key"]
        self.admitted_per_address[client.address] += 1
        return True

    async def song(self, title: str, genre: str = "pop") -> str:
        """A song the admin submits (the honest catalogue, the attacks'
        targets), each from an address of its own: past the per-address
        submission limit otherwise."""
        body = {"title": title, "artist": "Integrity", "platform": "suno_ai", "genre": genre}
        headers = self.admin | {"X-Forwarded-For": new_address()}
        reply = await self.api.post("/api/v1/songs", json=body, headers=headers)
        reply.raise_for_status()
        return str(reply.json()["id"])

    async def vote(self, client: Client, song: str, direction: str) -> int:
        body = {"item_type": "song", "item_id": song, "vote": direction}
        reply = await self.api.post("/api/v1/vote", json=body, headers=client.headers())
        return reply.status_code

    async def ranks(self, song: str) -> tuple[int | None, int | None]:
        """The song's rank in trending and in today's daily chart (None: not in the top 50)."""
        trending = (await self.api.get("/api/v1/trending", params={"limit": 50}, headers=self.admin)).json()
        daily = (await self.api.get("/api/v1/top/daily", params={"limit": 50}, headers=self.admin)).json()

        def rank(entries: list[dict[str, Any]]) -> int | None:
            return next((int(e["rank"]) for e in entries if e["item_id"] == song), None)

        return rank(trending.get("songs", [])), rank(daily.get("items", daily.get("entries", [])))

    async def flagged(self) -> dict[str, str]:
        """Every flagged agent and its reason (the admin's moderation queue)."""
        found: dict[str, str] = {}
        token = ""
        while True:
            params: dict[str, str | int] = {"flagged": "true", "page_size": 100}
            if token:
                params["page_token"] = token
            body = (await self.api.get("/api/v1/agents", params=params, headers=self.admin)).json()
            found.update({a["id"]: a.get("flag_reason", "") for a in body.get("agents", [])})
            token = body.get("next_page_token", "")
            if not token:
                return found

    async def top_song(self) -> str:
        daily = (await self.api.get("/api/v1/top/daily", params={"limit": 1}, headers=self.admin)).json()
        return str(daily.get("items", daily.get("entries", []))[0]["item_id"])


# -- the honest population ---------------------------------------------------------


async def honest_population(
    h: Harness, agents: int, sleepers: int, songs: int, votes_each: int
) -> tuple[list[Client], list[Client], list[str]]:
    """Honest agents, and sleepers: ring members that behave exactly like
    honest agents (and age with them) until they strike (aged-ring)."""
    clients = [Client(new_address()) for _ in range(agents + sleepers)]
    await gather_limited([h.register(c) for c in clients], 32)
    genres = ["pop", "rock", "lofi"]
    song_ids = await gather_limited([h.song(f"Honest track {n}", genres[n % 3]) for n in range(songs)], 16)
    # Popularity follows a Zipf-like skew; most votes are up, about one in five down.
    weights = [1 / (rank + 1) ** 0.8 for rank in range(songs)]
    # Every agent votes its picks in one order, the same for all (as agents
    # driven by one client listing the catalogue would): with everyone
    # starting within 20 s, each song's voters come within a minute or two
    # of one another, and the population ends together. A hard case for the
    # ring detection's false positives (docs/integrity.md). It was the order
    # of a Python set of the ids before, the same for all agents by accident.
    order = {song: RNG.random() for song in song_ids}

    async def behave(client: Client) -> None:
        picks: set[str] = set()
        while len(picks) < votes_each:
            picks.add(RNG.choices(song_ids, weights)[0])
        await asyncio.sleep(RNG.uniform(0, 20))
        for song in sorted(picks, key=order.__getitem__):
            await h.vote(client, song, "down" if RNG.random() < 0.2 else "up")
            # Paced inside the documented rules: 20 votes span more than the
            # 300 s window, so no run of 20 and no 50 in 300 s; no burst.
            await asyncio.sleep(RNG.uniform(16, 24))

    await asyncio.gather(*(behave(c) for c in clients))
    return clients[:agents], clients[agents:], song_ids


def age(database_url: str, agent_ids: list[str], days: int) -> None:
    """The seeding path: these agents registered `days` ago and voted over
    the days since, as a production population would have."""
    now = datetime.now(UTC)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE reputation.agents SET created_at = %s WHERE id = ANY(%s)", (now - timedelta(days=days), agent_ids)
        )
        # Each vote moved back by a whole number of days chosen per vote.
        conn.execute(
            "UPDATE reputation.votes SET cast_at = cast_at - make_interval(days => (random() * %s)::int)"
            " WHERE agent_id = ANY(%s)",
            (days - 1, agent_ids),
        )


async def wait_trusted(h: Harness, clients: list[Client], timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    sample = clients[:: max(1, len(clients) // 20)]
    while True:
        standings = [
            (await h.api.get(f"/api/v1/agents/{c.agent_id}", headers=h.admin)).json().get("standing") for c in sample
        ]
        trusted = sum(s == "trusted" for s in standings)
        if trusted == len(sample) or time.monotonic() > deadline:
            return trusted * len(clients) // max(1, len(sample))
        await asyncio.sleep(2)


# -- attacks -------------------------------------------------------------------------


@dataclass
class Outcome:
    name: str
    target: str
    attackers: list[Client]
    last_vote_at: float
    best_trending: int | None = None
    best_daily: int | None = None
    flagged: int = 0
    flagged_after_s: float | None = None
    honest_one_kept: bool | None = None
    notes: str = ""


Attack = Callable[[Harness, list[Client], list[str]], Awaitable[Outcome]]


async def ring(h: Harness, size: int, addresses: Callable[[int], str]) -> list[Client]:
    members = [Client(addresses(n)) for n in range(size)]
    await gather_limited([h.register(m) for m in members], 32)
    return [m for m in members if m.key]


async def mass_registration(h: Harness, honest: list[Client], songs: list[str]) -> Outcome:
    """500 registrations from one address, each admitted one upvoting a fresh song within 5 s."""
    address = new_address()
    members = await ring(h, 500, lambda _: address)
    target = await h.song("Mass registered")
    await asyncio.gather(*(h.vote(m, target, "up") for m in members))
    return Outcome("mass-registration", target, members, time.monotonic(), notes=f"{len(members)} of 500 admitted")


async def fresh_ring(h: Harness, honest: list[Client], songs: list[str]) -> Outcome:
    """50 fresh agents (50 addresses: an attacker with proxies) upvote a fresh song within 3 s."""
    members = await ring(h, 50, lambda _: new_address())
    target = await h.song("Fresh ring")
    await asyncio.gather(*(spread(h.vote(m, target, "up"), 3.0) for m in members))
    return Outcome("fresh-ring", target, members, time.monotonic())


async def slow_ring(h: Harness, honest: list[Client], songs: list[str]) -> Outcome:
    """50 agents over 150 s, each with 3 camouflage votes on popular songs."""
    members = await ring(h, 50, lambda _: new_address())
    target = await h.song("Slow ring")

    async def member(m: Client) -> None:
        await asyncio.sleep(RNG.uniform(0, 150))
        for song in RNG.sample(songs[:20], 3):
            await h.vote(m, song, "up")
            await asyncio.sleep(RNG.uniform(1, 3))
        await h.vote(m, target, "up")

    await asyncio.gather(*(member(m) for m in members))
    return Outcome("slow-ring", target, members, time.monotonic())


async def aged_ring(h: Harness, honest: list[Client], songs: list[str]) -> Outcome:
    """50 sleepers: registered with the honest population, voting like it
    and aged with it (trusted before they strike: the worst case), then a
    3 s ring on a fresh song."""
    members = h.sleepers
    trusted = await wait_trusted(h, members, 30)
    target = await h.song("Aged ring")
    await asyncio.gather(*(spread(h.vote(m, target, "up"), 3.0) for m in members))
    return Outcome("aged-ring", target, members, time.monotonic(), notes=f"{trusted} trusted before the strike")


async def brigade(h: Harness, honest: list[Client], songs: list[str]) -> Outcome:
    """50 fresh agents downvote the honest #1 within 3 s."""
    target = await h.top_song()
    members = await ring(h, 50, lambda _: new_address())
    await asyncio.gather(*(spread(h.vote(m, target, "down"), 3.0) for m in members))
    return Outcome("brigade", target, members, time.monotonic())


async def one_way_evasion(h: Harness, honest: list[Client], songs: list[str]) -> Outcome:
    """Three agents, each: one opposite vote first, then 22 votes one way."""
    members = await ring(h, 3, lambda _: new_address())
    target = songs[-1]
    for m in members:
        picks = RNG.sample(songs, 23)
        await h.vote(m, picks[0], "up")
        for song in picks[1:]:
            await h.vote(m, song, "down")
            await asyncio.sleep(1.1)
    return Outcome("one-way-evasion", target, members, time.monotonic())


ATTACKS: dict[str, Attack] = {
    "mass-registration": mass_registration,
    "fresh-ring": fresh_ring,
    "slow-ring": slow_ring,
    "aged-ring": aged_ring,
    "brigade": brigade,
    "one-way-evasion": one_way_evasion,
}


async def watch(h: Harness, outcome: Outcome, seconds: float, honest_one: str | None) -> Outcome:
    members = {m.agent_id for m in outcome.attackers}
    deadline = outcome.last_vote_at + seconds
    while time.monotonic() < deadline:
        trending, daily = await h.ranks(outcome.target)
        outcome.best_trending = best(outcome.best_trending, trending)
        outcome.best_daily = best(outcome.best_daily, daily)
        flagged = len(members & set(await h.flagged()))
        if flagged > outcome.flagged:
            outcome.flagged, outcome.flagged_after_s = flagged, time.monotonic() - outcome.last_vote_at
        if honest_one is not None:
            outcome.honest_one_kept = await h.top_song() == honest_one
        await asyncio.sleep(2)
    return outcome


def best(seen: int | None, now: int | None) -> int | None:
    return now if seen is None or (now is not None and now < seen) else seen


async def spread(call: Awaitable[Any], within_s: float) -> Any:
    await asyncio.sleep(RNG.uniform(0, within_s))
    return await call


async def gather_limited(calls: list[Awaitable[Any]], limit: int) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(call: Awaitable[Any]) -> Any:
        async with gate:
            return await call

    return await asyncio.gather(*(one(c) for c in calls))


def print_table(outcomes: list[Outcome], honest_flagged: int, honest: int, h: Harness) -> None:
    columns = ["attack", "attackers", "best trending", "best daily", "attackers flagged", "last flagged after"]
    print("\n| " + " | ".join([*columns, "notes"]) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for o in outcomes:
        after = "-" if o.flagged_after_s is None else f"{o.flagged_after_s:.0f} s"
        notes = o.notes + (
            "" if o.honest_one_kept is None else f"; honest #1 {'kept' if o.honest_one_kept else 'lost'}"
        )
        print(
            f"| {o.name} | {len(o.attackers)} | {o.best_trending or '-'} | {o.best_daily or '-'} | "
            f"{o.flagged} of {len(o.attackers)} | {after} | {notes} |"
        )
    print(f"\nhonest agents flagged: {honest_flagged} of {honest}")
    busiest = h.admitted_per_address.most_common(3)
    print(f"registrations admitted per address (busiest): {busiest}; refused: {sum(h.refused_per_address.values())}")


async def run(url: str, admin_key: str, database_url: str, args: argparse.Namespace) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=64)) as api:
        h = Harness(api, admin_key, database_url)
        started = time.monotonic()
        honest, h.sleepers, songs = await honest_population(h, args.honest, 50, args.songs, args.votes_each)
        print(f"honest population: {len(honest)} agents, {len(songs)} songs in {time.monotonic() - started:.0f} s")
        if args.no_history:
            print("no history: every agent stays on probation, as in a harness that cannot backdate them")
        else:
            age(database_url, [c.agent_id for c in honest + h.sleepers], 30)
            print(f"aged; trusted now (sampled): {await wait_trusted(h, honest, 120)} of {len(honest)}")
        outcomes = []
        for name in args.attacks.split(","):
            print(f"attack: {name}...", flush=True)
            honest_one = await h.top_song() if name == "brigade" else None
            outcome = await ATTACKS[name](h, honest, songs)
            outcomes.append(await watch(h, outcome, args.watch_s, honest_one))
        honest_ids = {c.agent_id for c in honest}
        flagged = await h.flagged()
        honest_flagged = {a: reason for a, reason in flagged.items() if a in honest_ids}
        print_table(outcomes, len(honest_flagged), len(honest), h)
        reasons = Counter(
            reason.split(":")[0] if reason.startswith("coordinated") else reason for reason in honest_flagged.values()
        )
        print(f"honest agents' flag reasons: {dict(reasons)}")
        if honest_flagged:
            groups = Counter(honest_flagged.values()).most_common(5)
            print("honest agents' most common reasons: " + "; ".join(f"{n} × {reason}" for reason, n in groups))
        if args.dump_votes:
            dump_votes(database_url, args.dump_votes, honest_ids)


def dump_votes(database_url: str, path: str, honest_ids: set[str]) -> None:
    """Every vote cast, and every flag, as JSON lines: a run's detection can
    then be replayed offline (rings.find_rings over the votes at each pass)."""
    with psycopg.connect(database_url) as conn, open(path, "w") as out:
        votes = conn.execute(
            "SELECT agent_id, item_type, item_id, direction, extract(epoch FROM created_at)::float8 FROM vote.votes"
        )
        for agent, item_type, item_id, direction, at in votes:
            out.write(json.dumps({"vote": [agent, item_type, item_id, direction, at]}) + "\n")
        flags = conn.execute(
            "SELECT id, flag_reason, extract(epoch FROM flagged_at)::float8 FROM reputation.agents WHERE flagged"
        )
        for agent, reason, at in flags:
            out.write(json.dumps({"flag": [agent, reason, at, agent in honest_ids]}) + "\n")
    print(f"votes and flags written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument("--honest", type=int, default=300)
    parser.add_argument("--songs", type=int, default=200)
    parser.add_argument("--votes-each", type=int, default=24)
    parser.add_argument("--watch-s", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dump-votes", default="", help="write every vote and flag as JSON lines to this file")
    parser.add_argument(
        "--no-history", action="store_true", help="leave the honest agents new (on probation), like the attackers"
    )
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="a setting of the stack")
    args = parser.parse_args()
    env = dict(STACK_ENV)
    for assignment in args.env:
        name, equals, value = assignment.partition("=")
        if not equals or not name.startswith("AIMUSICSTORE_"):
            parser.error(f"--env takes AIMUSICSTORE_NAME=VALUE, got {assignment!r}")
        env[name] = value
    RNG.seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="aimusicstore-integrity-") as tmp:
        stack = Stack(data_dir=Path(tmp) / "stack", gateway_port=free_port(), env_overrides=env)
        print(f"starting the stack ({', '.join(f'{k}={v}' for k, v in sorted(env.items()))})...", flush=True)
        stack.start()
        try:
            asyncio.run(run(stack.gateway_url, stack.admin_key, stack.database_url or "", args))
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
