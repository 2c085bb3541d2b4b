"""The browser-facing gateway through Envoy: the pages and their assets, the
live feed as Server-Sent Events (ids, Last-Event-ID resume, filters, errors,
keep-alives, limits, teardown), the NDJSON feed's content type, and CORS."""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from devstack.stack import Stack
from tests.integration.conftest import CORS_ORIGIN, GATEWAY_MAX_SSE_STREAMS, auth, eventually, unique, vote
from tests.integration.test_ranking import new_agent, new_song, settled_watchers, watcher_gauge

pytestmark = pytest.mark.integration

SSE = {"Accept": "text/event-stream"}


class Stream:
    """An open SSE response read on a thread: `lines` gets each line as it
    comes (None at the end), so a test can wait for one with a timeout."""

    def __init__(self, response: httpx.Response, client: httpx.Client) -> None:
        self.response = response
        self.client = client
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for line in self.response.iter_lines():
                self.lines.put(line)
        except httpx.HTTPError:
            pass  # closed by the test
        finally:
            self.lines.put(None)

    def line(self, timeout_s: float = 5.0) -> str | None:
        return self.lines.get(timeout=timeout_s)

    def event(self, timeout_s: float = 5.0) -> dict[str, Any]:
        """The next event (its fields: id, data as JSON, event), skipping comments and retry."""
        fields: dict[str, Any] = {}
        while True:
            line = self.line(timeout_s)
            assert line is not None, "the stream ended"
            if line == "":
                if "data" in fields:
                    return fields
                fields = {}
                continue
            if line.startswith(":") or line.startswith("retry:"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = json.loads(value) if name == "data" else value

    def close(self) -> None:
        # Shut the socket down first, as a browser closing its tab does: a
        # plain close() leaves the connection open while the reader thread
        # is blocked in recv(), until the next keep-alive wakes it (~1 s
        # later), and the next test would meet this stream's slot still taken.
        sock = self.response.extensions["network_stream"].get_extra_info("socket")
        with contextlib.suppress(OSError):  # already closed by the other end
            sock.shutdown(socket.SHUT_RDWR)
        self.response.close()
        self.client.close()


@contextmanager
def sse(stack: Stack, params: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> Iterator[Stream]:
    client = httpx.Client(base_url=stack.gateway_url, timeout=httpx.Timeout(10, read=None))
    request = client.build_request("GET", "/api/v1/events", params=params, headers=SSE | (headers or {}))
    response = client.send(request, stream=True)
    assert response.status_code == 200, response.read()
    stream = Stream(response, client)
    try:
        yield stream
    finally:
        stream.close()


# -- pages -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content_type", "contains"),
    [
        ("/", "text/html", '<script src="/assets/app.js"'),
        ("/docs", "text/html", "/assets/swagger-ui/swagger-ui-bundle.js"),
        ("/docs/reference", "text/html", "aimusicstore API"),
        ("/assets/app.js", "text/javascript", "EventSource"),
        ("/assets/app.css", "text/css", "--bg"),
        ("/assets/swagger-ui/swagger-ui-bundle.js", "text/javascript", "SwaggerUIBundle"),
        ("/assets/swagger-ui/swagger-ui.css", "text/css", ".swagger-ui"),
    ],
)
def test_pages_and_assets_are_served(api: httpx.Client, path: str, content_type: str, contains: str) -> None:
    reply = api.get(path)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith(content_type)
    assert contains in reply.text


def test_the_charts_page_is_small_and_self_contained(api: httpx.Client) -> None:
    page = api.get("/")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    total = len(page.content) + sum(
        len(api.get(f"/assets/{name}").content) for name in ("app.js", "app.css", "icon.svg")
    )
    assert total < 100_000, total  # a few hundred KB at most; no framework
    for text in (page.text, api.get("/assets/app.js").text):
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text
    # Revalidated by ETag: an unchanged page is 304.
    again = api.get("/", headers={"If-None-Match": page.headers["etag"]})
    assert again.status_code == 304


def test_unknown_assets_are_404_json_and_pages_take_get_only(api: httpx.Client) -> None:
    missing = api.get("/assets/nope.js")
    assert missing.status_code == 404 and missing.json()["code"] == 5
    assert api.get("/assets/../gateway/sse.py").status_code == 404
    for method, path in (("POST", "/"), ("DELETE", "/docs")):
        reply = api.request(method, path)
        assert reply.status_code == 405 and reply.headers["allow"] == "GET"


# -- NDJSON ----------------------------------------------------------------------


def test_the_ndjson_feed_is_application_x_ndjson(stack: Stack) -> None:
    with (
        httpx.Client(base_url=stack.gateway_url, timeout=10) as client,
        client.stream("GET", "/api/v1/events", params={"item_id": unique("none")}) as reply,
    ):
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "application/x-ndjson"
    with httpx.Client(base_url=stack.gateway_url, timeout=10) as client:
        bad = client.get("/api/v1/events", params={"item_type": "album"})
        assert bad.status_code == 400 and bad.headers["content-type"].startswith("application/json")


# -- Server-Sent Events -------------------------------------------------------------


def test_sse_events_carry_ids_and_follow_the_filters(api: httpx.Client, stack: Stack, agent: dict[str, Any]) -> None:
    watched, other = new_song(api, agent["key"]), new_song(api, agent["key"])
    with sse(stack, {"item_type": "song", "item_id": watched}) as stream:
        assert stream.response.headers["content-type"] == "text/event-stream"
        assert stream.response.headers["cache-control"] == "no-cache"
        assert stream.line() == "retry: 2000"
        voter = new_agent(api)
        assert vote(api, voter["key"], other).status_code == 200  # filtered out
        assert vote(api, voter["key"], watched, "down").status_code == 200
        event = stream.event(timeout_s=2.0)
        assert event["id"] == event["data"]["event_id"] and "event" not in event
        data = event["data"]
        assert (data["type"], data["item_type"], data["item_id"], data["agent_id"]) == (
            "vote",
            "song",
            watched,
            voter["id"],
        )
        assert (data["vote"], data["up_votes"], data["down_votes"], data["score"]) == ("down", 0, 1, -1)
        assert data["timestamp"].endswith("Z")


def test_last_event_id_resumes_with_exactly_the_missed_events(
    api: httpx.Client, stack: Stack, agent: dict[str, Any]
) -> None:
    song_id, other = new_song(api, agent["key"]), new_song(api, agent["key"])
    voters = [new_agent(api) for _ in range(4)]
    params = {"item_type": "song", "item_id": song_id}
    with sse(stack, params) as stream:
        assert vote(api, voters[0]["key"], song_id).status_code == 200
        seen = stream.event()
    # Disconnected: these happen while nobody watches.
    assert vote(api, voters[1]["key"], song_id).status_code == 200
    assert vote(api, voters[2]["key"], other).status_code == 200
    assert vote(api, voters[3]["key"], song_id, "down").status_code == 200
    with sse(stack, params, {"Last-Event-ID": seen["id"]}) as resumed:
        missed = [resumed.event(), resumed.event()]
        assert [e["data"]["agent_id"] for e in missed] == [voters[1]["id"], voters[3]["id"]]
        assert [e["id"] for e in missed] == sorted({e["id"] for e in missed}) and seen["id"] not in {
            e["id"] for e in missed
        }
        # Then live ones, and nothing twice.
        assert api.delete(f"/api/v1/vote/song/{song_id}", headers=auth(voters[1]["key"])).status_code == 200
        live = resumed.event()
        assert (live["data"]["type"], live["data"]["agent_id"]) == ("retract", voters[1]["id"])
    # The query parameter does the same, for clients that cannot set headers.
    with sse(stack, params | {"after_event_id": missed[0]["id"]}) as by_query:
        assert by_query.event()["id"] == missed[1]["id"]


@pytest.mark.parametrize(
    ("params", "headers", "field"),
    [
        ({}, {"Last-Event-ID": "yesterday"}, "after_event_id"),
        ({"after_event_id": "1-2-3"}, {}, "after_event_id"),
        ({"item_type": "album"}, {}, "item_type"),
        ({"page": "2"}, {}, "page"),
    ],
)
def test_a_bad_resume_id_or_filter_is_400_with_a_message(
    stack: Stack, params: dict[str, str], headers: dict[str, str], field: str
) -> None:
    with httpx.Client(base_url=stack.gateway_url, timeout=10) as client:
        reply = client.get("/api/v1/events", params=params, headers=SSE | headers)
    assert reply.status_code == 400
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.json()["code"] == 3 and field in reply.json()["message"]


def test_a_quiet_stream_gets_keep_alive_comments(stack: Stack) -> None:
    # The test stack sends one every second (AIMUSICSTORE_SSE_KEEPALIVE_S=1).
    with sse(stack, {"item_id": unique("quiet")}) as stream:
        lines = [stream.line(3.0) for _ in range(4)]
    assert "retry: 2000" in lines and ": keep-alive" in lines


def test_a_closed_stream_releases_its_watcher_at_once(api: httpx.Client, stack: Stack) -> None:
    baseline = settled_watchers(stack)
    with sse(stack, {"item_id": unique("gone")}):
        eventually(lambda: watcher_gauge(stack) == baseline + 1, 5.0)
    # The browser went away: the sidecar's WatchVotes call is cancelled.
    eventually(lambda: watcher_gauge(stack) == baseline, 3.0)


def test_sse_streams_past_their_limit_are_refused_and_free_slots_are_reused(stack: Stack) -> None:
    settled_watchers(stack)  # every slot is free
    streams = []
    try:
        for _ in range(GATEWAY_MAX_SSE_STREAMS):
            streams.append(sse(stack, {"item_id": unique("full")}))
            streams[-1].__enter__()
        with httpx.Client(base_url=stack.gateway_url, timeout=10) as client:
            refused = client.get("/api/v1/events", headers=SSE)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["code"] == 14
    finally:
        for stream in streams:
            stream.__exit__(None, None, None)

    def reopened() -> bool:
        with httpx.Client(base_url=stack.gateway_url, timeout=10) as client:
            return client.get("/api/v1/events", headers=SSE, params={"item_type": "x"}).status_code == 400

    eventually(reopened, 5.0)


# -- CORS ----------------------------------------------------------------------------


def test_an_allowed_origin_may_read_the_public_api_and_the_feed(stack: Stack, api: httpx.Client) -> None:
    reply = api.get("/api/v1/trending", headers={"Origin": CORS_ORIGIN})
    assert reply.status_code == 200
    assert reply.headers["access-control-allow-origin"] == CORS_ORIGIN
    settled_watchers(stack)  # a slot is free
    with sse(stack, {"item_id": unique("cors")}, {"Origin": CORS_ORIGIN}) as stream:
        assert stream.response.headers["access-control-allow-origin"] == CORS_ORIGIN


def test_another_origin_gets_no_cors_headers(api: httpx.Client) -> None:
    reply = api.get("/api/v1/trending", headers={"Origin": "https://evil.example"})
    assert reply.status_code == 200
    assert "access-control-allow-origin" not in reply.headers
    preflight = api.options(
        "/api/v1/events",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_preflight_allows_reads_and_the_resume_header_not_writes(api: httpx.Client) -> None:
    preflight = api.options(
        "/api/v1/events",
        headers={
            "Origin": CORS_ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "last-event-id",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == CORS_ORIGIN
    methods = {m.strip() for m in preflight.headers["access-control-allow-methods"].split(",")}
    assert methods == {"GET", "HEAD", "OPTIONS"}
    assert "last-event-id" in preflight.headers["access-control-allow-headers"]
