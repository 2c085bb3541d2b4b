"""The ranking service through the gateway: catalog, trending, charts with
movement (multi-day histories built with an injected clock), history,
deletion, caching headers and live events."""

from __future__ import annotations

import asyncio
import itertools
import json
import queue
import threading
import time
import urllib.request
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import grpc
import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import create_async_engine

from aimusicstore.vote.v1 import vote_service_pb2, vote_service_pb2_grpc
from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from devstack.stack import Stack
from services.common.config import RankingSettings, to_sqlalchemy_url
from services.ranking.rankings import Rankings
from services.ranking.store import RankingStores
from tests.integration.conftest import GATEWAY_MAX_STREAMS, auth, eventually, eventually_equal, unique, vote

pytestmark = pytest.mark.integration

_event_ids = itertools.count(2 * 10**12 + uuid.uuid4().int % 10**9)


def new_song(api: httpx.Client, key: str, **fields: Any) -> str:
    body = {"id": unique("song"), "title": "T", "artist": "A", "platform": "udio"} | fields
    reply = api.post("/api/v1/songs", json=body, headers=auth(key))
    assert reply.status_code == 200, reply.text
    return body["id"]


def new_agent(api: httpx.Client) -> dict[str, str]:
    body = api.post("/api/v1/agents", json={}).json()
    return {"id": body["agent"]["id"], "key": body["api_key"]}


# -- catalog ---------------------------------------------------------------------


def test_list_filters_search_and_pages(api: httpx.Client, agent: dict[str, Any]) -> None:
    genre = unique("genre")
    ids = [
        new_song(api, agent["key"], genre=genre, title=f"Midnight {n}", mood="calm" if n % 2 else "dark")
        for n in range(5)
    ]
    new_song(api, agent["key"], genre=genre, title="Sunrise", artist="Daybreak Model")
    page1 = api.get("/api/v1/songs", params={"genre": genre, "q": "midnight", "page_size": 3}).json()
    page2 = api.get(
        "/api/v1/songs",
        params={"genre": genre, "q": "midnight", "page_size": 3, "page_token": page1["next_page_token"]},
    ).json()
    listed = [s["id"] for s in page1["songs"] + page2["songs"]]
    assert listed == list(reversed(ids)) and page2["next_page_token"] == ""
    calm = api.get("/api/v1/songs", params={"genre": genre, "mood": "calm"}).json()["songs"]
    assert {s["id"] for s in calm} == {ids[1], ids[3]}
    by_artist = api.get("/api/v1/songs", params={"genre": genre, "q": "daybreak"}).json()["songs"]
    assert [s["title"] for s in by_artist] == ["Sunrise"]
    # Words match by prefix and in any case, Unicode letters included.
    new_song(api, agent["key"], genre=genre, title="Ünïcödé Dreams", artist="Björk AI")
    for q, titles in [
        ("DAYB", ["Sunrise"]),
        ("sun day", ["Sunrise"]),
        ("midn 3", ["Midnight 3"]),
        ("BJÖRK", ["Ünïcödé Dreams"]),
        ("ünïcö dream", ["Ünïcödé Dreams"]),
        ("nothing-like-it", []),
        ("!!!", []),
    ]:
        found = api.get("/api/v1/songs", params={"genre": genre, "q": q})
        assert found.status_code == 200, found.text
        assert [s["title"] for s in found.json()["songs"]] == titles, q

    # A token belongs to its list and parameters (page_size aside): used
    # elsewhere it would silently skip or repeat rows.
    token = page1["next_page_token"]
    assert api.get("/api/v1/songs", params={"genre": genre, "q": "midnight", "page_token": token}).status_code == 200
    for path, params in [
        ("/api/v1/songs", {"genre": genre, "q": "sunrise"}),
        ("/api/v1/songs", {"genre": genre}),
        ("/api/v1/tools", {}),
        ("/api/v1/leaderboard", {}),
    ]:
        reply = api.get(path, params=params | {"page_token": token})
        assert reply.status_code == 400, (path, reply.text)
        assert "page_token" in reply.json()["message"], reply.text


def test_tools_list_by_category(api: httpx.Client, stack: Stack) -> None:
    category = unique("cat")
    for name in ("Mixer", "Mastering"):
        body = {"name": name, "category": category, "features": ["stems"], "pricing": {"free": True, "pro_usd": 10}}
        assert api.post("/api/v1/tools", json=body, headers=auth(stack.admin_key)).status_code == 200
    tools = api.get("/api/v1/tools", params={"category": category}).json()["tools"]
    assert [t["name"] for t in tools] == ["Mastering", "Mixer"]
    assert (
        tools[0]["pricing"] == {"free": True, "pro_usd": 10}
        and tools[0]["rating"] == 0
        and tools[0]["review_count"] == 0
    )
    searched = api.get("/api/v1/tools", params={"category": category, "q": "MAST"}).json()["tools"]
    assert [t["name"] for t in searched] == ["Mastering"]


def test_delete_takes_the_item_out_of_everything(api: httpx.Client, stack: Stack, agent: dict[str, Any]) -> None:
    genre = unique("genre")
    song_id = new_song(api, agent["key"], genre=genre)
    assert vote(api, agent["key"], song_id).status_code == 200
    eventually(
        lambda: (
            [e["item_id"] for e in api.get("/api/v1/trending", params={"genre": genre}).json()["songs"]] == [song_id]
        ),
        2.0,
    )
    assert api.delete(f"/api/v1/songs/{song_id}", headers=auth(agent["key"])).status_code == 403
    assert api.delete(f"/api/v1/songs/{song_id}", headers=auth(stack.admin_key)).status_code == 200
    assert api.get(f"/api/v1/songs/{song_id}").status_code == 404
    assert api.delete(f"/api/v1/songs/{song_id}", headers=auth(stack.admin_key)).status_code == 404
    # Trending and charts are cached for at most their 2 s freshness bound.
    eventually(lambda: api.get("/api/v1/trending", params={"genre": genre}).json()["songs"] == [], 2.0)
    eventually(lambda: api.get("/api/v1/top/daily", params={"genre": genre}).json()["entries"] == [], 2.0)
    assert api.get(f"/api/v1/songs/{song_id}/history").status_code == 404
    other = new_agent(api)
    assert eventually(lambda: vote(api, other["key"], song_id).status_code == 404, 1.0)
    assert api.get(f"/api/v1/votes/song/{song_id}").status_code == 404


@pytest.mark.parametrize("collection", ["songs", "tools"])
def test_the_id_of_a_deleted_item_is_never_reused(
    api: httpx.Client, stack: Stack, agent: dict[str, Any], collection: str
) -> None:
    # Its votes are kept (they are the voters' history): an item created
    # again under the id would inherit them, and retracting one would take the
    # new item's counts below zero.
    fields = {"songs": {"title": "T", "artist": "A", "platform": "udio"}, "tools": {"name": "N"}}[collection]
    body = {"id": unique(collection)} | fields
    admin = auth(stack.admin_key)
    assert api.post(f"/api/v1/{collection}", json=body, headers=admin).status_code == 200
    item_type = collection.removesuffix("s")
    assert vote(api, agent["key"], body["id"], item_type=item_type).status_code == 200
    assert api.delete(f"/api/v1/{collection}/{body['id']}", headers=admin).status_code == 200

    again = api.post(f"/api/v1/{collection}", json=body, headers=admin)
    assert again.status_code == 409, again.text
    assert "deleted" in again.json()["message"] and "not reused" in again.json()["message"]
    assert api.get(f"/api/v1/{collection}/{body['id']}").status_code == 404
    assert api.get(f"/api/v1/votes/{item_type}/{body['id']}").status_code == 404


# -- trending --------------------------------------------------------------------


def trending_ids(api: httpx.Client, **params: str) -> list[str]:
    return [e["item_id"] for e in api.get("/api/v1/trending", params=params).json()["songs"]]


def test_trending_prefers_recent_votes_and_is_fresh(api: httpx.Client, agent: dict[str, Any]) -> None:
    genre = unique("genre")
    older, newer = new_song(api, agent["key"], genre=genre), new_song(api, agent["key"], genre=genre)
    assert vote(api, new_agent(api)["key"], older).status_code == 200
    eventually(lambda: trending_ids(api, genre=genre) == [older], 2.0)
    assert vote(api, new_agent(api)["key"], newer).status_code == 200
    eventually(lambda: trending_ids(api, genre=genre) == [newer, older], 2.0)
    reply = api.get("/api/v1/trending", params={"genre": genre})
    assert reply.headers["cache-control"] == "public, max-age=1"
    entries = reply.json()["songs"]
    assert entries[0]["trending_score"] > entries[1]["trending_score"] > 0
    assert entries[0]["rank"] == 1 and entries[0]["up_votes"] == 1 and entries[0]["title"] == "T"


def test_edge_cache_serves_trending_but_never_items(api: httpx.Client, agent: dict[str, Any]) -> None:
    """Trending is kept at the edge for its max-age; item reads, which must
    show a vote within a second, are transcoded on the public listener and
    marked no-cache (the cache filter stores nothing for them)."""
    params = {"limit": 7}
    first = api.get("/api/v1/trending", params=params)
    second = api.get("/api/v1/trending", params=params)
    assert first.status_code == second.status_code == 200
    assert "age" in second.headers  # answered by Envoy's cache
    song = new_song(api, agent["key"])
    reads = [api.get(f"/api/v1/songs/{song}") for _ in range(2)]
    assert all(r.status_code == 200 and r.headers["cache-control"] == "no-cache" for r in reads)
    assert "age" not in reads[1].headers
    assert vote(api, new_agent(api)["key"], song).status_code == 200
    # No cached copy hides the vote: the item shows it within the contract's second.
    eventually(lambda: api.get(f"/api/v1/songs/{song}").json()["up_votes"] == 1, 1.0)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/trending", {}),
        ("/api/v1/trending", {"limit": "50"}),
        ("/api/v1/top/weekly", {}),
        ("/api/v1/top/all_time", {"item_type": "tool", "limit": "25", "sort": "best"}),
        ("/api/v1/top/daily", {"sort": "controversial"}),
    ],
)
def test_the_edge_cache_keeps_its_fixed_set_of_reads_whatever_the_host(
    api: httpx.Client, path: str, params: dict[str, str]
) -> None:
    api.get(path, params=params)
    again = api.get(path, params=params, headers={"host": f"{unique('host')}.example"})
    assert again.status_code == 200
    assert "age" in again.headers  # the same entry: the Host is not part of its key


@pytest.mark.parametrize(
    ("path", "params"),
    [
        # Free text, any date, other spellings and limits: unbounded sets of
        # URLs, answered by the service (which caches within bounds).
        ("/api/v1/trending", {"genre": "g"}),
        ("/api/v1/trending", {"limit": "07"}),
        ("/api/v1/top/daily", {"date": "2024-01-02"}),
        ("/api/v1/top/daily", {"limit": "33"}),
        ("/api/v1/top/daily", {"sort": "best", "item_type": "tool"}),  # not in alphabetical order
        ("/api/v1/top/weekly", {"platform": "udio"}),
    ],
)
def test_reads_outside_the_fixed_set_are_never_stored_at_the_edge(
    api: httpx.Client, path: str, params: dict[str, str]
) -> None:
    reads = [api.get(path, params=params) for _ in range(2)]
    assert [r.status_code for r in reads] == [200, 200]
    assert "age" not in reads[1].headers
    # Clients and CDNs may still keep it for its max-age.
    assert reads[1].headers["cache-control"] == "public, max-age=1"


def test_history_is_not_stored_at_the_edge(api: httpx.Client, agent: dict[str, Any]) -> None:
    song = new_song(api, agent["key"])
    reads = [api.get(f"/api/v1/songs/{song}/history") for _ in range(2)]
    assert [r.status_code for r in reads] == [200, 200]
    assert "age" not in reads[1].headers
    assert reads[1].headers["cache-control"] == "public, max-age=60"


def test_trending_weighs_reputation(api: httpx.Client, agent: dict[str, Any]) -> None:
    veteran = new_agent(api)
    for song_id in [new_song(api, agent["key"]) for _ in range(5)]:
        assert vote(api, veteran["key"], song_id).status_code == 200
    eventually(lambda: api.get(f"/api/v1/agents/{veteran['id']}").json()["reputation_score"] == 10, 5.0)
    genre = unique("genre")
    by_veteran, by_newcomer = new_song(api, agent["key"], genre=genre), new_song(api, agent["key"], genre=genre)
    assert vote(api, veteran["key"], by_veteran).status_code == 200
    assert vote(api, new_agent(api)["key"], by_newcomer).status_code == 200  # later, but lighter
    eventually(lambda: trending_ids(api, genre=genre) == [by_veteran, by_newcomer], 2.0)


def test_a_flagged_agents_votes_move_nothing(api: httpx.Client, agent: dict[str, Any]) -> None:
    genre = unique("genre")
    songs = [new_song(api, agent["key"], genre=genre) for _ in range(11)]
    spammer = new_agent(api)
    for song_id in songs:
        assert vote(api, spammer["key"], song_id).status_code == 200
    assert api.get(f"/api/v1/agents/{spammer['id']}").json()["flagged"] is True

    def scores() -> list[float]:
        return [
            e["trending_score"]
            for e in api.get("/api/v1/trending", params={"genre": genre, "limit": 50}).json()["songs"]
        ]

    eventually_equal(scores, [0.0] * 11, 2.0)


def test_trending_filters(api: httpx.Client, stack: Stack, agent: dict[str, Any]) -> None:
    genre = unique("genre")
    udio = new_song(api, agent["key"], genre=genre, platform="udio")
    suno = new_song(api, agent["key"], genre=genre, platform="suno_ai")
    category = unique("cat")
    tool = api.post("/api/v1/tools", json={"name": "X", "category": category}, headers=auth(stack.admin_key)).json()[
        "id"
    ]
    voter = new_agent(api)
    for item_type, item_id in (("song", udio), ("song", suno), ("tool", tool)):
        assert vote(api, voter["key"], item_id, item_type=item_type).status_code == 200
    eventually(lambda: trending_ids(api, genre=genre, platform="suno_ai") == [suno], 2.0)
    assert set(trending_ids(api, genre=genre)) == {udio, suno}
    tools = api.get("/api/v1/trending", params={"category": category}).json()["tools"]
    assert [t["item_id"] for t in tools] == [tool]
    assert api.get("/api/v1/trending", params={"limit": 50}).status_code == 200
    assert api.get("/api/v1/trending", params={"limit": -1}).status_code == 400


# -- charts with an injected clock ---------------------------------------------------


class Days:
    """Applies vote events dated on past days straight to the ranking store."""

    def __init__(self, stack: Stack, rankings_clock: datetime) -> None:
        self.stack = stack
        self.now = rankings_clock

    def run(self, body) -> None:
        async def main() -> None:
            engine = create_async_engine(to_sqlalchemy_url(self.stack.database_url or ""))
            redis = Redis.from_url(self.stack.redis_url or "", decode_responses=True)
            probation_weight = RankingSettings.from_env(self.stack.env()).probation_weight
            stores = RankingStores.open(engine, redis, probation_weight=probation_weight)
            rankings = Rankings.over(
                stores.projection,
                stores.trending_sets,
                stores.catalog,
                stores.charts,
                half_life_s=86400,
                clock=lambda: self.now,
            )
            try:
                await body(rankings)
            finally:
                await redis.aclose()
                await engine.dispose()

        asyncio.run(main())


def events_on(day: date, item_id: str, up: int, down: int = 0) -> list[VoteEvent]:
    result = []
    for n in range(up + down):
        event = VoteEvent(
            event_id=next(_event_ids),
            type="vote",
            agent_id=f"history-{uuid.uuid4().hex[:8]}",
            item_type="song",
            item_id=item_id,
            direction=1 if n < up else -1,
        )
        event.voted_at.FromDatetime(datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=12))
        result.append(event)
    return result


def chart(api: httpx.Client, period: str, day: date, genre: str, **params: str) -> list[dict]:
    reply = api.get(f"/api/v1/top/{period}", params={"date": day.isoformat(), "genre": genre} | params)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["period"] == period and body["date"] == day.isoformat() and body["item_type"] == "song"
    return body["entries"]


def row(entry: dict) -> tuple:
    return (
        entry["item_id"][-1],
        entry["rank"],
        entry["previous_rank"],
        entry["movement"],
        entry["peak_rank"],
        entry["days_on_chart"],
    )


def test_multi_day_charts_movement_peaks_and_history(api: httpx.Client, stack: Stack, agent: dict[str, Any]) -> None:
    genre = unique("genre")
    songs = {name: new_song(api, agent["key"], genre=genre, id=f"{uuid.uuid4().hex[:8]}-{name}") for name in "ABCD"}
    today = datetime.now(UTC).date()
    d1, d2, d3 = today - timedelta(days=6), today - timedelta(days=5), today - timedelta(days=4)
    plan = {
        d1: [("A", 3, 0), ("B", 2, 0), ("C", 1, 0)],
        d2: [("B", 5, 0), ("D", 2, 0), ("A", 1, 0)],
        d3: [("C", 4, 0), ("A", 2, 1), ("B", 1, 0)],
    }

    async def build(rankings: Rankings) -> None:
        for day, votes in plan.items():
            batch = [e for name, up, down in votes for e in events_on(day, songs[name], up, down)]
            await rankings.scale.apply_vote_events(batch)
        await rankings.snapshots.snapshot_finished_days()

    Days(stack, datetime.combine(today, datetime.min.time(), UTC) + timedelta(hours=1)).run(build)

    assert [row(e) for e in chart(api, "daily", d1, genre)] == [
        ("A", 1, 0, "new", 1, 1), ("B", 2, 0, "new", 2, 1), ("C", 3, 0, "new", 3, 1)]  # fmt: skip
    assert [row(e) for e in chart(api, "daily", d2, genre)] == [
        ("B", 1, 2, "up", 1, 2), ("D", 2, 0, "new", 2, 1), ("A", 3, 1, "down", 1, 2)]  # fmt: skip
    # C re-enters (new, absent yesterday) and reaches its peak; A and B tie on score, A has more up votes.
    assert [row(e) for e in chart(api, "daily", d3, genre)] == [
        ("C", 1, 0, "new", 1, 2), ("A", 2, 3, "up", 1, 3), ("B", 3, 1, "down", 1, 3)]  # fmt: skip
    first = chart(api, "daily", d3, genre)[1]
    assert (first["up_votes"], first["down_votes"], first["score"], first["title"], first["artist"]) == (
        2,
        1,
        1,
        "T",
        "A",
    )

    weekly = chart(api, "weekly", d3, genre)
    assert [(e["item_id"][-1], e["score"], e["movement"]) for e in weekly] == [
        ("B", 8, "new"),
        ("A", 5, "new"),
        ("C", 5, "new"),
        ("D", 2, "new"),
    ]
    assert [e["item_id"][-1] for e in chart(api, "all_time", d3, genre)] == ["B", "A", "C", "D"]
    assert [e["item_id"][-1] for e in chart(api, "monthly", d3, genre, limit="2")] == ["B", "A"]
    assert [e["item_id"][-1] for e in chart(api, "daily", d3, genre, sort="best")] == ["C", "A", "B"]
    assert [e["item_id"][-1] for e in chart(api, "daily", d3, genre, sort="controversial")] == ["A", "C", "B"]

    history = api.get(f"/api/v1/songs/{songs['A']}/history", params={"days": 7}).json()
    assert history["item_type"] == "song" and history["item_id"] == songs["A"]
    assert [(p["date"], p["rank"], p["score"], p["up_votes"], p["down_votes"]) for p in history["points"]] == [
        (d1.isoformat(), 1, 3, 3, 0), (d2.isoformat(), 3, 1, 1, 0), (d3.isoformat(), 2, 1, 2, 1)]  # fmt: skip
    assert (
        api.get(f"/api/v1/songs/{songs['A']}/history", params={"days": 6}).json()["points"][0]["date"] == d2.isoformat()
    )


def test_todays_chart_counts_today_live(api: httpx.Client, agent: dict[str, Any]) -> None:
    genre = unique("genre")
    song_id = new_song(api, agent["key"], genre=genre)
    assert vote(api, new_agent(api)["key"], song_id).status_code == 200
    entries = eventually(lambda: api.get("/api/v1/top/daily", params={"genre": genre}).json()["entries"], 2.0)
    assert entries[0]["item_id"] == song_id and entries[0]["days_on_chart"] == 1 and entries[0]["movement"] == "new"
    assert entries[0]["trending_score"] > 0
    # History follows within the charts' 2 s freshness bound.
    eventually(
        lambda: (
            (api.get(f"/api/v1/songs/{song_id}/history").json()["points"] or [{}])[-1].get("date")
            == datetime.now(UTC).date().isoformat()
        ),
        2.0,
    )


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/v1/top/yearly", {}, "period"),
        ("/api/v1/top/daily", {"date": "2026-02-30"}, "date"),
        ("/api/v1/top/daily", {"sort": "hot"}, "sort"),
        ("/api/v1/top/daily", {"item_type": "album"}, "item_type"),
        ("/api/v1/top/daily", {"limit": "-5"}, "limit"),
        ("/api/v1/top/daily", {"item_type": "tool", "genre": "rock"}, "genre"),
        ("/api/v1/songs/x/history", {"days": "-1"}, "days"),
        ("/api/v1/trending", {"limit": "ten"}, "limit"),
        # Past the maximum is refused, not clamped: one spelling per answer.
        ("/api/v1/trending", {"limit": "51"}, "limit"),
        ("/api/v1/top/daily", {"limit": "101"}, "limit"),
        ("/api/v1/songs/x/history", {"days": "366"}, "days"),
        ("/api/v1/top/weekly", {"date": "9999-12-31"}, "date"),
        ("/api/v1/top/daily", {"page": "2"}, "page"),
    ],
)
def test_bad_chart_parameters_are_400(api: httpx.Client, path: str, params: dict, field: str) -> None:
    reply = api.get(path, params=params)
    assert reply.status_code == 400, reply.text
    assert reply.json()["code"] == 3 and field in reply.json()["message"]


def test_history_of_a_missing_item_is_404(api: httpx.Client) -> None:
    assert api.get("/api/v1/tools/no-such-tool/history").status_code == 404


# -- live events -------------------------------------------------------------------


def read_lines(url: str, into: queue.Queue, stop: threading.Event) -> None:
    try:
        with urllib.request.urlopen(url, timeout=10) as stream:  # noqa: S310 - our own gateway
            into.put({"connected": True})
            while not stop.is_set():
                line = stream.readline()
                if not line:
                    return
                into.put(json.loads(line))
    except OSError:
        return  # the test ended (and stopped reading) or the stream was closed


def gateway_streams_open(stack: Stack) -> float:
    """Streams the gateway has open to the vote service's live feed (the
    cluster whose circuit breaker is AIMUSICSTORE_GATEWAY_MAX_STREAMS)."""
    with urllib.request.urlopen(stack.metrics_urls()["gateway"], timeout=5) as reply:  # noqa: S310 - our http URL
        for line in reply.read().decode().splitlines():
            if line.startswith('envoy_cluster_upstream_rq_active{envoy_cluster_name="vote_streams"}'):
                return float(line.split()[1])
    raise AssertionError("the vote_streams cluster's active requests are not exported")


def watcher_gauge(stack: Stack) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.ports['vote_metrics']}/metrics", timeout=5) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith("vote_event_watchers "):
                return float(line.split()[1])
    raise AssertionError("vote_event_watchers gauge not exported")


def settled_watchers(stack: Stack, quiet_s: float = 0.5, timeout_s: float = 10.0) -> float:
    """The vote service's watcher gauge once it has not moved for quiet_s:
    the streams earlier tests closed are gone from it (and from the
    sidecar's slots), so a test can count from it."""
    deadline = time.monotonic() + timeout_s
    value, since = watcher_gauge(stack), time.monotonic()
    while time.monotonic() - since < quiet_s:
        assert time.monotonic() < deadline, f"the watcher gauge kept moving for {timeout_s}s"
        time.sleep(0.05)
        now = watcher_gauge(stack)
        if now != value:
            value, since = now, time.monotonic()
    return value


def test_events_stream_as_ndjson_within_a_second(api: httpx.Client, stack: Stack, agent: dict[str, Any]) -> None:
    watched, other = new_song(api, agent["key"]), new_song(api, agent["key"])
    lines: queue.Queue = queue.Queue()
    stop = threading.Event()
    url = f"{stack.gateway_url}/api/v1/events?item_type=song&item_id={watched}"
    reader = threading.Thread(target=read_lines, args=(url, lines, stop), daemon=True)
    reader.start()
    assert lines.get(timeout=5) == {"connected": True}
    voter = new_agent(api)
    assert vote(api, voter["key"], other).status_code == 200  # filtered out
    assert vote(api, voter["key"], watched, "down").status_code == 200
    event = lines.get(timeout=1.0)
    assert event["type"] == "vote" and event["item_id"] == watched and event["agent_id"] == voter["id"]
    assert (event["vote"], event["up_votes"], event["down_votes"], event["score"]) == ("down", 0, 1, -1)
    assert event["timestamp"].endswith("Z")
    assert api.delete(f"/api/v1/vote/song/{watched}", headers=auth(voter["key"])).status_code == 200
    retracted = lines.get(timeout=1.0)
    assert (retracted["type"], retracted["down_votes"]) == ("retract", 0)
    stop.set()


def test_live_streams_past_the_gateway_limit_are_refused_and_never_block_votes(
    channel: grpc.Channel, api: httpx.Client, stack: Stack, agent: dict[str, Any]
) -> None:
    song_id = new_song(api, agent["key"])
    stub = vote_service_pb2_grpc.VoteServiceStub(channel)
    request = vote_service_pb2.WatchVotesRequest(item_type="song", item_id=song_id)
    # What the gateway's limit counts: its open streams to the vote service.
    # (Not the service's watcher gauge: it also counts the SSE sidecar's
    # watchers, and streams the gateway has closed but the service has not
    # seen end yet; with either in the baseline the gateway was left below
    # its limit, and the call that should be refused was let through.)
    baseline = int(gateway_streams_open(stack))
    calls = [stub.WatchVotes(request) for _ in range(GATEWAY_MAX_STREAMS - baseline)]
    try:
        eventually(lambda: gateway_streams_open(stack) == GATEWAY_MAX_STREAMS, 5.0)
        with pytest.raises(grpc.RpcError) as refused:
            next(iter(stub.WatchVotes(request, timeout=5)))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        reply = api.get("/api/v1/events", params={"item_type": "song", "item_id": song_id}, timeout=5)
        assert reply.status_code == 503
        assert reply.headers["retry-after"] == "1"
        assert reply.json() == {"code": 14, "message": "the service is at capacity; retry in a second"}
        # Votes have a budget of their own: watchers cannot use it up.
        assert vote(api, new_agent(api)["key"], song_id).status_code == 200
        assert next(calls[0]).up_votes == 1
    finally:
        for call in calls:
            call.cancel()
    eventually(lambda: gateway_streams_open(stack) == baseline, 5.0)
    # A slot freed is a slot usable again.
    again = stub.WatchVotes(request)
    eventually(lambda: gateway_streams_open(stack) == baseline + 1, 5.0)
    again.cancel()


def test_grpc_watch_and_disconnect_cleanup(
    channel: grpc.Channel, api: httpx.Client, stack: Stack, agent: dict[str, Any]
) -> None:
    song_id = new_song(api, agent["key"])
    # Settled: the streams the test before closed are gone from the gauge.
    baseline = settled_watchers(stack)
    stub = vote_service_pb2_grpc.VoteServiceStub(channel)
    call = stub.WatchVotes(vote_service_pb2.WatchVotesRequest(item_type="song", item_id=song_id))
    eventually(lambda: watcher_gauge(stack) == baseline + 1, 5.0)
    assert vote(api, new_agent(api)["key"], song_id).status_code == 200
    first = next(call)
    assert first.item_id == song_id and first.up_votes == 1
    call.cancel()
    eventually(lambda: watcher_gauge(stack) == baseline, 5.0)
    with pytest.raises(grpc.RpcError) as caught:
        next(iter(stub.WatchVotes(vote_service_pb2.WatchVotesRequest(item_type="album"), timeout=5)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
