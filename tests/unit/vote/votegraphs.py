"""Synthetic vote graphs for the coordinated-voting detection: honest
populations and rings, as RecentVote lists (seeded, so every run is the same)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from services.vote.rings import RecentVote, RingRules, find_rings

T0 = 1_800_000_000.0  # 2027-01-15, seconds since the epoch


def seeded(seed: int) -> random.Random:
    """The same graph on every run."""
    return random.Random(seed)  # noqa: S311 - synthetic test data, not secrets


def honest(
    rng: random.Random,
    *,
    agents: int = 300,
    songs: int = 200,
    votes_each: int = 20,
    start: float = T0,
    session_s: float = 1800.0,
    gap_s: tuple[float, float] = (5.0, 60.0),
    skew: float = 1.0,
    together: bool = False,
    down_share: float | None = None,
    prefix: str = "h",
) -> list[RecentVote]:
    """Agents voting songs by popularity (Zipf weights, `skew`), one vote a
    song, paced by `gap_s` between their votes, starting at random over
    `session_s` (or all at `start`, `together`). Each vote picks among the
    songs the agent has not voted yet, so popular songs come early in a
    session. Songs are s0 (most popular) to s<songs-1>; 90% of votes on
    the top ten are up, 60-95% on the others (or `down_share` of every
    song's down, as the integrity bench votes)."""
    weights = [1 / (rank + 1) ** skew for rank in range(songs)]
    up_share = [0.9 if rank < 10 else rng.uniform(0.6, 0.95) for rank in range(songs)]
    if down_share is not None:
        up_share = [1 - down_share] * songs
    votes = []
    for n in range(agents):
        at = start if together else start + rng.uniform(0, session_s)
        left = list(range(songs))
        for _ in range(min(songs, max(1, round(rng.gauss(votes_each, votes_each / 4))))):
            song = rng.choices(left, [weights[s] for s in left])[0]
            left.remove(song)
            votes.append(RecentVote(f"{prefix}{n}", "song", f"s{song}", 1 if rng.random() < up_share[song] else -1, at))
            at += rng.uniform(*gap_s)
    return votes


def returning(
    rng: random.Random,
    *,
    agents: int = 300,
    songs: int = 200,
    sessions: tuple[int, int] = (2, 4),
    votes_per_session: tuple[int, int] = (3, 8),
    gap_s: tuple[float, float] = (5.0, 60.0),
    away_s: tuple[float, float] = (600.0, 2400.0),
    span_s: float = 3600.0,
) -> list[RecentVote]:
    """Agents that come back: each starts at random over `span_s` and votes
    in a few short sessions, `away_s` apart (each back as new as a woken
    sleeper is), songs by popularity (Zipf 1), one vote in seven down."""
    weights = [1 / (rank + 1) for rank in range(songs)]
    votes = []
    for n in range(agents):
        at = T0 + rng.uniform(0, span_s)
        left = list(range(songs))
        for _ in range(rng.randint(*sessions)):
            for _ in range(rng.randint(*votes_per_session)):
                song = rng.choices(left, [weights[s] for s in left])[0]
                left.remove(song)
                votes.append(RecentVote(f"h{n}", "song", f"s{song}", 1 if rng.random() < 0.85 else -1, at))
                at += rng.uniform(*gap_s)
            at += rng.uniform(*away_s)
    return votes


def bench_population(rng: random.Random, *, agents: int = 350, songs: int = 200, prefix: str = "h") -> list[RecentVote]:
    """The integrity bench's honest population (bench/integrity.py): every
    agent starts within 20 s on a fresh catalogue, votes 24 songs chosen by
    popularity (Zipf 0.8) in no particular order, 16-24 s apart, one in five
    down; then nothing (the bench's attacks come after it, in silence)."""
    weights = [1 / (rank + 1) ** 0.8 for rank in range(songs)]
    votes = []
    for n in range(agents):
        picks: set[int] = set()
        while len(picks) < 24:
            picks.add(rng.choices(range(songs), weights)[0])
        at = T0 + rng.uniform(0, 20)
        for song in sorted(picks, key=lambda _: rng.random()):
            votes.append(RecentVote(f"{prefix}{n}", "song", f"s{song}", -1 if rng.random() < 0.2 else 1, at))
            at += rng.uniform(16, 24)
    return votes


def ring(
    rng: random.Random,
    *,
    target: str,
    at: float,
    size: int = 50,
    spread_s: float = 3.0,
    direction: int = 1,
    camouflage: int = 0,
    popular: int = 10,
    history: tuple[int, float, float] | None = None,
    prefix: str = "r",
) -> list[RecentVote]:
    """`size` agents voting `target` within `spread_s` from `at`; each also
    votes `camouflage` of the `popular` top songs up in the same stretch,
    and, with `history` (count, from, to), that many popular songs up
    earlier (agents aged with crowd-following votes)."""
    votes = []
    for n in range(size):
        agent = f"{prefix}{n}"
        votes.append(RecentVote(agent, "song", target, direction, at + rng.uniform(0, spread_s)))
        for song in rng.sample(range(popular), camouflage):
            votes.append(RecentVote(agent, "song", f"s{song}", 1, at + rng.uniform(0, spread_s)))
        if history is not None:
            count, since, until = history
            for song in rng.sample(range(popular * 3), count):
                votes.append(RecentVote(agent, "song", f"s{song}", 1, rng.uniform(since, until)))
    return votes


def flagged(
    votes: Sequence[RecentVote],
    since: float,
    until: float,
    *,
    every_s: float = 15.0,
    rules: RingRules | None = None,
) -> dict[str, float]:
    """Runs the detection as the job would, every `every_s` from `since` to
    `until` on the votes cast by then; returns each agent flagged with when."""
    rules = rules or RingRules()
    ordered = sorted(votes, key=lambda vote: vote.at)
    found: dict[str, float] = {}
    now = since
    while now <= until:
        cast = [vote for vote in ordered if vote.at <= now]
        for found_ring in find_rings(cast, now, rules):
            for member in found_ring.members:
                found.setdefault(member, now)
        now += every_s
    return found


def top_song(votes: Sequence[RecentVote]) -> str:
    """The song with the best score (up minus down)."""
    score: dict[str, int] = {}
    for vote in votes:
        score[vote.item_id] = score.get(vote.item_id, 0) + vote.direction
    return max(score, key=lambda song: score[song])
