"""The client package (clients/python) against the real stack, through Envoy:
every method, the typed errors, retries through a stopped service, paging,
and watch_votes resuming after the gateway dropped its stream."""

from __future__ import annotations

import asyncio
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aimusicstore_client import (
    AlreadyExists,
    AlreadyVoted,
    AsyncClient,
    Client,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RetryPolicy,
    Unauthenticated,
    Unavailable,
)
from aimusicstore_client.types import WatchVotesResponse
from devstack.stack import Stack
from tests.backing import ADMIN_KEY
from tests.integration.conftest import eventually, unique

pytestmark = pytest.mark.integration


def pump(watch: Iterator[WatchVotesResponse], into: queue.Queue[WatchVotesResponse]) -> None:
    for event in watch:
        into.put(event)


def target(stack: Stack) -> str:
    return f"127.0.0.1:{stack.gateway_port}"


@pytest.fixture
def client(stack: Stack) -> Iterator[Client]:
    """A client of a freshly registered agent (register() adopts its key)."""
    with Client(target(stack)) as c:
        c.register(unique("agent"), "Client test agent")
        yield c


@pytest.fixture(scope="module")
def admin(stack: Stack) -> Iterator[Client]:
    with Client(target(stack), ADMIN_KEY) as c:
        yield c


def word() -> str:
    """A unique word of letters only, for searches (the search index splits
    ids like "x-1e5" into words and numbers)."""
    return "Artist" + uuid.uuid4().hex.translate(str.maketrans("0123456789", "ghijklmnop"))


def new_song(client: Client, **fields: object) -> str:
    song_id = unique("song")
    song = client.create_song("Neon Rain", "Model X", "suno_ai", id=song_id, **fields)
    assert song.id == song_id
    return song_id


def test_register_submit_vote_and_read_back(client: Client, stack: Stack) -> None:
    assert client.api_key and client.api_key.startswith("ams_") and client.agent_id
    song_id = new_song(client, genre="synthwave", tempo=120)
    reply = client.vote("song", song_id, "up", comment="great hook")
    assert (reply.status, reply.up_votes, reply.down_votes, reply.score) == ("success", 1, 0, 1)
    assert reply.vote.agent_id == client.agent_id

    song = eventually(lambda: (s := client.get_song(song_id)).up_votes == 1 and s, timeout_s=5)
    assert (song.title, song.genre, song.tempo) == ("Neon Rain", "synthwave", 120)
    counts = client.get_vote_counts("song", song_id)
    assert (counts.up_votes, counts.down_votes, counts.score) == (1, 0, 1)
    assert [v.comment for v in client.iter_reviews("song", song_id)] == ["great hook"]
    assert client.list_reviews("song", song_id).votes[0].agent_id == client.agent_id
    assert [v.item_id for v in client.iter_agent_votes()] == [song_id]
    assert client.list_agent_votes().votes[0].vote == "up"
    me = client.my_agent()
    assert me.id == client.agent_id and me.standing == "probation"
    assert client.get_agent(client.agent_id or "").id == me.id

    assert song_id in [s.id for s in client.search_songs("Neon Rain", limit=100, genre="synthwave")]
    assert song_id in [s.id for s in client.list_songs(genre="synthwave", page_size=100).songs]

    trending = eventually(
        lambda: (
            (t := client.get_trending(limit=50, genre="synthwave")) and song_id in [e.item_id for e in t.songs] and t
        ),
        timeout_s=10,
    )
    assert trending.updated_at.seconds > 0
    chart = eventually(
        lambda: (c := client.get_chart("weekly", limit=100)) and song_id in [e.item_id for e in c.entries] and c,
        timeout_s=10,
    )
    assert chart.period == "weekly" and chart.item_type == "song"
    assert client.get_chart("all_time", sort="best", item_type="song").period == "all_time"
    history = client.get_history("song", song_id, days=7)
    assert (history.item_type, history.item_id) == ("song", song_id)
    assert client.list_leaderboard(page_size=5).agents
    assert len(list(client.iter_leaderboard(limit=1))) == 1

    retracted = client.retract("song", song_id)
    assert (retracted.status, retracted.message) == ("success", "Vote retracted")
    again = client.vote("song", song_id, "down")
    assert (again.up_votes, again.down_votes) == (0, 1)


def test_tools_are_created_by_the_admin_and_rated_by_agents(client: Client, admin: Client) -> None:
    tool_id = unique("tool")
    created = admin.create_tool(
        "Udio Pro", id=tool_id, website="https://udio.com", features=["stems"], pricing={"free": True, "pro_usd": 10}
    )
    assert created.id == tool_id and created.pricing["pro_usd"] == 10
    client.vote("tool", tool_id, "up", rating=4, comment="clean stems")
    tool = eventually(lambda: (t := client.get_tool(tool_id)).up_votes == 1 and t, timeout_s=5)
    assert (tool.rating, tool.review_count) == (4.0, 1)
    assert tool_id in [t.id for t in client.search_tools("Udio Pro", limit=100)]
    assert tool_id in [t.id for t in client.list_tools(q="Udio Pro", page_size=100).tools]
    assert tool_id in [t.id for t in client.iter_tools(q="Udio Pro")]
    admin.delete_tool(tool_id)
    with pytest.raises(NotFound):
        client.get_tool(tool_id)


def test_rotate_key_switches_the_client_and_the_old_key_stops_working(client: Client, stack: Stack) -> None:
    old = client.api_key
    new = client.rotate_key()
    assert new != old and client.api_key == new
    song_id = new_song(client)
    with Client(target(stack), old) as stale, pytest.raises(Unauthenticated):
        stale.vote("song", song_id, "up")
    assert client.vote("song", song_id, "up").status == "success"


def test_admin_calls(admin: Client, client: Client) -> None:
    agent = admin.update_agent(client.agent_id or "", tier="pro")
    assert agent.tier == "pro"
    assert admin.list_agents(page_size=2).agents
    assert len(list(admin.iter_agents(page_size=2))) >= 2
    song_id = new_song(client)
    admin.delete_song(song_id)
    with pytest.raises(NotFound):
        client.get_song(song_id)


def test_each_error_is_its_typed_exception(client: Client, stack: Stack) -> None:
    song_id = new_song(client)
    client.vote("song", song_id, "up")
    with pytest.raises(AlreadyVoted) as already:
        client.vote("song", song_id, "down")
    assert already.value.message == "Already voted"

    with pytest.raises(NotFound):
        client.get_song(unique("missing"))
    with pytest.raises(NotFound):
        client.vote("song", unique("missing"), "up")
    with pytest.raises(NotFound):
        client.retract("song", new_song(client))  # no vote on it

    with pytest.raises(InvalidArgument) as invalid:
        client.vote("song", song_id, "sideways")
    assert invalid.value.field == "vote"
    with pytest.raises(InvalidArgument) as invalid:
        client.create_song("T", "A", "suno_ai", tempo=1000)
    assert invalid.value.field == "tempo" and "tempo" in invalid.value.message

    with pytest.raises(AlreadyExists) as taken:
        client.create_song("T", "A", "suno_ai", id=song_id)
    assert not isinstance(taken.value, AlreadyVoted)

    with Client(target(stack), "ams_not-a-key") as stranger, pytest.raises(Unauthenticated):
        stranger.vote("song", song_id, "up")
    with Client(target(stack)) as anonymous, pytest.raises(Unauthenticated):
        anonymous.vote("song", song_id, "up")
    with pytest.raises(PermissionDenied):
        client.create_tool("Not an admin")


def test_pages_are_followed_to_the_last(client: Client) -> None:
    artist = word()
    ids = {client.create_song(f"Track {n}", artist, "udio").id for n in range(5)}
    first = client.list_songs(q=artist, page_size=2)
    assert len(first.songs) == 2 and first.next_page_token
    second = client.list_songs(q=artist, page_size=2, page_token=first.next_page_token)
    assert not {s.id for s in first.songs} & {s.id for s in second.songs}
    assert {s.id for s in client.iter_songs(q=artist, page_size=2)} == ids
    assert len(list(client.iter_songs(q=artist, page_size=2, limit=3))) == 3
    for song_id in ids:
        client.vote("song", song_id, "up")
    assert {v.item_id for v in client.iter_agent_votes(page_size=2)} == ids


def test_reads_are_retried_through_a_stopped_service(stack: Stack) -> None:
    with Client(target(stack)) as reader, Client(target(stack)) as writer:
        writer.register(unique("agent"))
        song_id = new_song(writer)
        stack.stop_process("ranking")
        try:
            reader.retry = RetryPolicy.never()
            with pytest.raises(Unavailable) as down:
                reader.get_song(song_id)
            assert down.value.message == "a backend service is unavailable; retry shortly"
            retries: list[tuple[str, int, str]] = []
            reader.retry = RetryPolicy(max_attempts=100, initial_backoff_s=0.2, max_backoff_s=1.0)
            reader.on_retry = lambda method, attempt, error, wait: retries.append((method, attempt, error.code.name))
            answers: queue.Queue[object] = queue.Queue()

            def read() -> None:
                try:
                    answers.put(reader.get_song(song_id))
                except Exception as exc:  # noqa: BLE001 - handed to the test
                    answers.put(exc)

            # The read runs in a thread; the service is restarted from this
            # one (a process started from a thread dies with that thread).
            thread = threading.Thread(target=read)
            thread.start()
            eventually(lambda: retries, timeout_s=10)
            stack.start_service("ranking")
            answer = answers.get(timeout=120)
            thread.join()
        finally:
            if "ranking" not in stack.procs:
                stack.start_service("ranking")
            stack.wait_healthy()
    assert getattr(answer, "id", answer) == song_id
    assert {m for m, _, _ in retries} == {"GetSong"}
    assert {code for _, _, code in retries} == {"UNAVAILABLE"}
    assert [a for _, a, _ in retries] == list(range(2, len(retries) + 2))


def test_batch_votes(client: Client) -> None:
    songs = [new_song(client) for _ in range(2)]
    client.vote("song", songs[0], "up")
    results = client.batch_vote(
        [
            {"item_type": "song", "item_id": songs[0], "vote": "up"},
            {"item_type": "song", "item_id": songs[1], "vote": "down"},
            {"item_type": "song", "item_id": unique("missing"), "vote": "up"},
        ]
    )
    assert [r.status for r in results] == ["already_voted", "recorded", "not_found"]
    assert results[1].down_votes == 1


def test_watch_votes_resumes_after_the_gateway_drops_the_stream(client: Client, stack: Stack) -> None:
    song_id = new_song(client)
    voters = []
    for _ in range(3):
        voter = Client(target(stack))
        voter.register(unique("agent"))
        voters.append(voter)
    events: queue.Queue[WatchVotesResponse] = queue.Queue()
    watch = client.watch_votes("song", song_id)
    reader = threading.Thread(target=pump, args=(watch, events), daemon=True)
    reader.start()
    try:
        assert watch.connected.wait(10)
        voters[0].vote("song", song_id, "up")
        first = events.get(timeout=10)
        assert (first.type, first.agent_id, first.up_votes) == ("vote", voters[0].agent_id, 1)

        stack.stop_process("envoy")
        eventually(lambda: not watch.connected.is_set(), timeout_s=10)
        # While the gateway is down, two votes reach the vote service directly.
        for voter in voters[1:]:
            with Client(f"127.0.0.1:{stack.ports['vote']}", voter.api_key) as direct:
                direct.vote("song", song_id, "up")
        stack.start_envoy()
        stack.wait_healthy()

        resumed = [events.get(timeout=30), events.get(timeout=30)]
        assert [e.agent_id for e in resumed] == [voters[1].agent_id, voters[2].agent_id]
        # Replayed events carry the item's counts as they are now.
        assert resumed[-1].up_votes == 3
        assert watch.resumed >= 1 and watch.connections >= 2
        assert (watch.gaps, watch.missed) == ([], 0)
        assert watch.last_event_id == resumed[-1].event_id
        assert events.empty()
    finally:
        watch.close()
        reader.join(10)
        for voter in voters:
            voter.close()
        if "envoy" not in stack.procs:
            stack.start_envoy()
            stack.wait_healthy()
    assert not reader.is_alive()


def test_async_client_votes_pages_and_watches(stack: Stack) -> None:
    async def scenario() -> None:
        async with AsyncClient(target(stack)) as c:
            await c.register(unique("agent"))
            artist = word()
            ids = [(await c.create_song(f"Track {n}", artist, "udio")).id for n in range(3)]
            assert {s.id async for s in c.iter_songs(q=artist, page_size=2)} == set(ids)
            assert len(await c.search_songs(artist, limit=2)) == 2
            watch = c.watch_votes("song", ids[0])
            first_event = asyncio.ensure_future(watch.__anext__())
            await asyncio.wait_for(watch.connected.wait(), 10)
            reply = await c.vote("song", ids[0], "up")
            assert reply.up_votes == 1
            event = await asyncio.wait_for(first_event, 10)
            assert (event.item_id, event.agent_id, event.up_votes) == (ids[0], c.agent_id, 1)
            watch.close()
            with pytest.raises(AlreadyVoted):
                await c.vote("song", ids[0], "up")
            assert (await c.get_vote_counts("song", ids[0])).up_votes == 1
            assert (await c.my_agent()).vote_count >= 0
            assert [v.item_id async for v in c.iter_agent_votes()] == [ids[0]]
            assert (await c.retract("song", ids[0])).status == "success"
            assert (await c.get_trending(limit=5)).updated_at.seconds >= 0
            with pytest.raises(NotFound):
                await c.get_song(unique("missing"))

    asyncio.run(scenario())
    time.sleep(0)  # the loop is closed; nothing left running


@pytest.mark.parametrize("section", ["Quickstart: Python", "Quickstart: asyncio"])
def test_the_quickstarts_in_docs_run_as_written(stack: Stack, section: str) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "clients.md").read_text()
    part = doc.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    code = part.split("```python\n", 1)[1].split("```", 1)[0]
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    result = subprocess.run(
        [sys.executable, "-c", code.replace("localhost:8080", target(stack))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Vote recorded" in result.stdout


def test_the_example_agent_discovers_votes_and_watches(stack: Stack, client: Client) -> None:
    new_song(client, genre="synthwave")
    example = Path(__file__).resolve().parents[2] / "clients" / "python" / "examples" / "agent.py"
    result = subprocess.run(
        [sys.executable, str(example), "--target", target(stack), "--watch-s", "2", "--max-votes", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "registered" in result.stdout and "voted up" in result.stdout
    assert "missed: " in result.stdout
