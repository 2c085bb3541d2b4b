"""Malformed, oversized and hostile requests get a 4xx JSON {code, message}: never a 5xx, never a hang."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from devstack.stack import Stack
from tests.integration.conftest import auth, unique

pytestmark = pytest.mark.integration


def assert_error(reply: httpx.Response, status: int, code: int, mentions: str = "") -> None:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"], body
    if mentions:
        assert mentions in body["message"], body


def vote_body(song: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return {"item_type": "song", "item_id": song["id"], "vote": "up"} | overrides


def test_malformed_json(api: httpx.Client, agent: dict[str, Any]) -> None:
    reply = api.post(
        "/api/v1/vote",
        content=b'{"item_type": "song", ',
        headers=auth(agent["key"]) | {"content-type": "application/json"},
    )
    assert_error(reply, 400, 3)


def test_json_that_is_not_an_object(api: httpx.Client, agent: dict[str, Any]) -> None:
    assert_error(api.post("/api/v1/vote", content=b"[1, 2]", headers=auth(agent["key"])), 400, 3)


def test_wrong_type(api: httpx.Client, agent: dict[str, Any], song: dict[str, Any]) -> None:
    reply = api.post("/api/v1/vote", json=vote_body(song, vote=5), headers=auth(agent["key"]))
    assert_error(reply, 400, 3, "vote")
    reply = api.post("/api/v1/vote", json=vote_body(song, rating="five"), headers=auth(agent["key"]))
    assert_error(reply, 400, 3, "rating")


@pytest.mark.parametrize(
    ("field", "value"),
    [("item_type", "album"), ("item_type", "SONG"), ("vote", "sideways"), ("vote", "")],
)
def test_unknown_enum_strings(
    api: httpx.Client, agent: dict[str, Any], song: dict[str, Any], field: str, value: str
) -> None:
    reply = api.post("/api/v1/vote", json=vote_body(song, **{field: value}), headers=auth(agent["key"]))
    assert_error(reply, 400, 3, field)


def test_two_megabyte_body(api: httpx.Client, agent: dict[str, Any], song: dict[str, Any]) -> None:
    reply = api.post("/api/v1/vote", json=vote_body(song, comment="x" * 2_000_000), headers=auth(agent["key"]))
    assert reply.status_code == 413
    assert reply.json()["code"] == 3


def test_comment_too_long(api: httpx.Client, agent: dict[str, Any], song: dict[str, Any]) -> None:
    reply = api.post("/api/v1/vote", json=vote_body(song, comment="x" * 2001), headers=auth(agent["key"]))
    assert_error(reply, 400, 3, "comment")


def test_missing_key(api: httpx.Client, song: dict[str, Any]) -> None:
    assert_error(api.post("/api/v1/vote", json=vote_body(song)), 401, 16, "Bearer")


def test_unknown_key(api: httpx.Client, song: dict[str, Any]) -> None:
    assert_error(api.post("/api/v1/vote", json=vote_body(song), headers=auth("ams_not-a-real-key")), 401, 16)


def test_malformed_authorization_header(api: httpx.Client, song: dict[str, Any]) -> None:
    reply = api.post("/api/v1/vote", json=vote_body(song), headers={"Authorization": "Basic abc"})
    assert_error(reply, 401, 16, "Bearer")


def test_agent_id_of_someone_else(api: httpx.Client, agent: dict[str, Any], song: dict[str, Any]) -> None:
    reply = api.post("/api/v1/vote", json=vote_body(song, agent_id="someone-else"), headers=auth(agent["key"]))
    assert_error(reply, 403, 7, "agent_id")


def test_vote_on_a_missing_item(api: httpx.Client, agent: dict[str, Any]) -> None:
    reply = api.post(
        "/api/v1/vote", json={"item_type": "song", "item_id": "no-such-song", "vote": "up"}, headers=auth(agent["key"])
    )
    assert_error(reply, 404, 5, "no-such-song")


def test_rating_on_a_song(api: httpx.Client, agent: dict[str, Any], song: dict[str, Any]) -> None:
    assert_error(api.post("/api/v1/vote", json=vote_body(song, rating=3), headers=auth(agent["key"])), 400, 3, "rating")


def test_hostile_item_id(api: httpx.Client, agent: dict[str, Any]) -> None:
    reply = api.post(
        "/api/v1/vote",
        json={"item_type": "song", "item_id": "x'; DROP TABLE vote.votes; --", "vote": "up"},
        headers=auth(agent["key"]),
    )
    assert_error(reply, 400, 3, "item_id")


def test_unknown_query_parameter(api: httpx.Client, song: dict[str, Any]) -> None:
    assert_error(api.get(f"/api/v1/songs/{song['id']}", params={"verbose": "1"}), 400, 3, "verbose")


def test_non_numeric_page_size(api: httpx.Client) -> None:
    assert_error(api.get("/api/v1/songs", params={"page_size": "lots"}), 400, 3, "page_size")


def test_invalid_song(api: httpx.Client, agent: dict[str, Any]) -> None:
    cases = [
        ({"title": "", "artist": "A", "platform": "udio"}, "title"),
        ({"title": "T", "artist": "A", "platform": "Not Valid"}, "platform"),
        ({"title": "T", "artist": "A", "platform": "udio", "platform_url": "ftp://x"}, "platform_url"),
        ({"title": "T", "artist": "A", "platform": "udio", "tempo": 1000}, "tempo"),
        ({"title": "T" * 501, "artist": "A", "platform": "udio"}, "title"),
        ({"id": "bad id!", "title": "T", "artist": "A", "platform": "udio"}, "id"),
    ]
    for body, field in cases:
        assert_error(api.post("/api/v1/songs", json=body, headers=auth(agent["key"])), 400, 3, field)


def test_tools_need_the_admin_key(api: httpx.Client, agent: dict[str, Any], stack: Stack) -> None:
    assert_error(api.post("/api/v1/tools", json={"name": "Suno"}, headers=auth(agent["key"])), 403, 7, "admin")
    assert_error(api.post("/api/v1/tools", json={"name": "Suno"}), 401, 16)
    assert api.post("/api/v1/tools", json={"name": "Suno"}, headers=auth(stack.admin_key)).status_code == 200


def test_negative_page_size_and_bad_token(api: httpx.Client) -> None:
    assert_error(api.get("/api/v1/songs", params={"page_size": "-1"}), 400, 3, "page_size")
    assert_error(api.get("/api/v1/songs", params={"page_token": "garbage!"}), 400, 3, "page_token")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/songs/%ff",
        "/api/v1/agents/%ff",
        "/api/v1/songs?q=%ff",
        "/api/v1/songs?page_token=%00%ff",
        "/api/v1/votes/song/%ff",
        "/api/v1/top/daily?date=%ff",
        "/api/v1/trending?genre=%ff",
        "/api/v1/songs/%ff/history",
        "/api/v1/events?item_type=song&item_id=%ff",
    ],
)
def test_bytes_that_are_not_utf8_in_a_path_or_query(api: httpx.Client, path: str) -> None:
    # The transcoder passes them on as a string field, which no protobuf
    # decoder accepts: that must be the client's 400, not a 500.
    assert_error(api.get(path), 400, 3, "UTF-8")


def test_values_nested_too_deeply(api: httpx.Client, stack: Stack) -> None:
    pricing: dict[str, Any] = {"a": 1}
    for _ in range(40):
        pricing = {"a": pricing}
    reply = api.post("/api/v1/tools", json={"name": "Deep", "pricing": pricing}, headers=auth(stack.admin_key))
    assert_error(reply, 400, 3, "too deeply")


@pytest.mark.parametrize("period", ["daily", "weekly", "monthly", "all_time"])
def test_chart_dates_before_the_service_existed(api: httpx.Client, period: str) -> None:
    assert_error(api.get(f"/api/v1/top/{period}", params={"date": "0001-01-01"}), 400, 3, "date")


def _retokened(token: str, position: list[Any]) -> str:
    """A real page token with its position replaced and its digest kept."""
    raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    return base64.urlsafe_b64encode(json.dumps([*position, raw[-1]]).encode()).decode().rstrip("=")


def test_forged_page_tokens_are_400_not_500(api: httpx.Client, agent: dict[str, Any]) -> None:
    # A token's digest is not a secret: anyone can rebuild a well-formed token
    # for a list. Values PostgreSQL cannot take as parameters (an id past
    # BIGINT, a score past INTEGER, a NUL in a text value) must be the
    # client's 400, not a database error.
    other = api.post("/api/v1/agents", json={}).json()["api_key"]
    for n in range(2):
        body = {"title": f"Token {n}", "artist": "Forger", "platform": "udio"}
        song_id = api.post("/api/v1/songs", json=body, headers=auth(agent["key"])).json()["id"]
        for key in (agent["key"], other):  # two votes for the agent's list, two voters for the leaderboard
            cast = api.post(
                "/api/v1/vote", json={"item_type": "song", "item_id": song_id, "vote": "up"}, headers=auth(key)
            )
            assert cast.status_code == 200, cast.text
    cases: list[tuple[str, list[Any]]] = [
        (f"/api/v1/agents/{agent['id']}/votes", ["2026-11-22T00:00:00+00:00", 2**64]),
        ("/api/v1/leaderboard", [2**40, "someone"]),
        ("/api/v1/songs", ["2026-11-22T00:00:00+00:00", "a\x00b"]),
    ]
    for path, position in cases:
        real = api.get(path, params={"page_size": 1}).json()["next_page_token"]
        assert real, path
        assert api.get(path, params={"page_size": 1, "page_token": real}).status_code == 200
        assert_error(api.get(path, params={"page_token": _retokened(real, position)}), 400, 3, "page_token")


def test_urls_and_json_values_postgres_cannot_store_are_400(api: httpx.Client, stack: Stack) -> None:
    admin = auth(stack.admin_key)
    song = {"title": "x", "artist": "A", "platform": "suno"}
    for url in ["https://a.b/\u0000", "http://[::1/"]:
        assert_error(
            api.post("/api/v1/songs", json=song | {"platform_url": url}, headers=admin), 400, 3, "platform_url"
        )
        assert_error(api.post("/api/v1/tools", json={"name": "x", "website": url}, headers=admin), 400, 3, "website")
    for pricing in [{"plan": "a\u0000b"}, {"a\u0000": 1}]:
        assert_error(api.post("/api/v1/tools", json={"name": "x", "pricing": pricing}, headers=admin), 400, 3, "NUL")


def test_a_forged_page_token_time_is_400(api: httpx.Client) -> None:
    real = api.get("/api/v1/songs", params={"page_size": 1}).json()["next_page_token"]
    assert real
    forged = _retokened(real, ["0001-01-01T00:00:00-23:59", "a"])
    assert_error(api.get("/api/v1/songs", params={"page_token": forged}), 400, 3, "page_token")


def test_large_headers_are_served_or_431_never_a_429(api: httpx.Client) -> None:
    # 9-16 KiB of headers used to pass Envoy and trip grpc's metadata limit:
    # a 429 (retry!) listing header sizes, at random above 8 KiB.
    for _ in range(5):
        reply = api.get("/api/v1/songs", headers={"Cookie": "a" * 17_000})
        assert reply.status_code == 200, reply.text
    huge = api.get("/api/v1/songs", headers={"Cookie": "a" * 40_000})
    assert huge.status_code == 431, huge.text


def test_a_request_body_that_never_completes_is_408(stack: Stack) -> None:
    # Headers promise 100 bytes, 2 arrive: the gateway must not wait for the
    # rest for long (it waited up to the hour a live stream may idle).
    import socket
    import time

    with socket.create_connection(("127.0.0.1", stack.gateway_port), timeout=30) as conn:
        conn.sendall(b"POST /api/v1/agents HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{}")
        started = time.monotonic()
        reply = conn.recv(4096).decode(errors="replace")
    assert reply.startswith("HTTP/1.1 408"), reply
    assert time.monotonic() - started < 20


# Strict JSON bodies (gateway/strict_json.py): Envoy's transcoder drops
# unknown fields and takes a string for a list or a bool; the gateway's
# check refuses them first, naming the field as the client wrote it.


def assert_names_field(reply: httpx.Response, field: str) -> None:
    assert_error(reply, 400, 3)
    body = reply.json()
    assert body["message"].startswith(f"{field}: "), body
    violations = [v for d in body["details"] for v in d.get("field_violations", [])]
    assert [v["field"] for v in violations] == [field], body


def _routes_with_bodies(api: httpx.Client, stack: Stack, agent: dict[str, Any], song: dict[str, Any]) -> dict:
    """Per route: (method, path, headers, a valid body). Each valid body is
    sent first: it must succeed, so a 400 below is the strict check's alone."""
    admin = auth(stack.admin_key)
    return {
        "vote": ("POST", "/api/v1/vote", auth(agent["key"]), vote_body(song)),
        "batch": ("POST", "/api/v1/votes:batchCreate", auth(agent["key"]), {"votes": [vote_body(song)]}),
        "songs": ("POST", "/api/v1/songs", auth(agent["key"]), {"title": "T", "artist": "A", "platform": "udio"}),
        "tools": ("POST", "/api/v1/tools", admin, {"name": "Strict", "features": ["stems"], "pricing": {"free": True}}),
        "register": ("POST", "/api/v1/agents", {}, {"name": "Strict agent"}),
        "patch": ("PATCH", f"/api/v1/agents/{agent['id']}", admin, {"tier": "pro"}),
        "rotate": ("POST", f"/api/v1/agents/{agent['id']}/keys", admin, {}),
    }


@pytest.mark.parametrize(
    ("route", "extra", "field"),
    [
        ("vote", {"stars": 3}, "stars"),
        ("songs", {"bpm": 120}, "bpm"),
        ("tools", {"price": 10}, "price"),
        ("register", {"nick": "x"}, "nick"),
        ("patch", {"nick": "x"}, "nick"),
        ("rotate", {"reason": "lost"}, "reason"),
        # Wrong JSON types, the field named (not the message: `song`)
        ("tools", {"features": "stems"}, "features"),  # a string for a list: was a list of one
        ("batch", {"votes": "up"}, "votes"),
        ("patch", {"flagged": "yes"}, "flagged"),  # a string for a bool: was true
        ("patch", {"flagged": "no"}, "flagged"),  # was false
        ("register", {"flagged": "true"}, "flagged"),
        ("songs", {"tempo": "fast"}, "tempo"),  # a string that is no integer
        ("songs", {"tempo": 1.5}, "tempo"),
        ("songs", {"title": {"text": "T"}}, "title"),  # an object for a string
        ("songs", {"title": ["T"]}, "title"),  # a list for a string
        ("vote", {"vote": {"up": True}}, "vote"),
        ("tools", {"pricing": "free"}, "pricing"),  # a string for an object
    ],
)
def test_unknown_fields_and_wrong_types_in_a_body_are_400_naming_the_field(
    api: httpx.Client, stack: Stack, agent: dict[str, Any], song: dict[str, Any], route: str, extra: dict, field: str
) -> None:
    method, path, headers, body = _routes_with_bodies(api, stack, agent, song)[route]
    if route != "vote":  # (a vote counts once: its valid form is tested apart)
        valid = api.request(method, path, json=body, headers=headers)
        assert valid.status_code == 200, valid.text
    reply = api.request(method, path, json=body | extra, headers=headers)
    assert_names_field(reply, field)
    assert not reply.json()["message"].startswith(("song", "tool", "agent")), reply.json()


def test_unknown_and_mistyped_fields_inside_a_batch_are_named_with_their_index(
    api: httpx.Client, agent: dict[str, Any], song: dict[str, Any]
) -> None:
    key = auth(agent["key"])
    good = vote_body(song)
    cases = [
        ({"votes": [good, good | {"stars": 3}]}, "votes[1].stars"),
        ({"votes": [good | {"rating": "five"}]}, "votes[0].rating"),
        ({"votes": [good | {"item_id": 7}]}, "votes[0].item_id"),
        ({"votes": ["up"]}, "votes[0]"),
        ({"votes": good}, "votes"),  # an object for a list: the transcoder took it as a list of one
    ]
    for body, field in cases:
        assert_names_field(api.post("/api/v1/votes:batchCreate", json=body, headers=key), field)
    # None of them was cast: the valid vote still counts once.
    reply = api.post("/api/v1/votes:batchCreate", json={"votes": [good]}, headers=key)
    assert reply.status_code == 200 and reply.json()["results"][0]["status"] == "recorded", reply.text


def test_a_vote_with_an_unknown_field_is_refused_and_not_counted(
    api: httpx.Client, agent: dict[str, Any], song: dict[str, Any]
) -> None:
    key = auth(agent["key"])
    assert_names_field(api.post("/api/v1/vote", json=vote_body(song, stars=3), headers=key), "stars")
    # An escaped key is the same key.
    escaped = b'{"item_type": "song", "item_id": "%s", "vote": "up", "st\\u0061rs": 3}' % song["id"].encode()
    assert_names_field(api.post("/api/v1/vote", content=escaped, headers=key), "stars")
    assert api.get(f"/api/v1/votes/song/{song['id']}").json()["up_votes"] == 0
    assert api.post("/api/v1/vote", json=vote_body(song), headers=key).status_code == 200


def test_what_the_json_mapping_allows_still_passes(
    api: httpx.Client, agent: dict[str, Any], song: dict[str, Any]
) -> None:
    key = auth(agent["key"])
    # JSON names as well as proto names; numbers as strings; null for absent.
    song_body = {"title": "T", "artist": "A", "platform": "udio", "platformUrl": "https://x.example/a", "tempo": "120"}
    created = api.post("/api/v1/songs", json=song_body | {"mood": None}, headers=key)
    assert created.status_code == 200, created.text
    assert created.json()["tempo"] == 120 and created.json()["platform_url"] == "https://x.example/a"
    reply = api.post("/api/v1/vote", json={"itemType": "song", "itemId": song["id"], "vote": "up"}, headers=key)
    assert reply.status_code == 200, reply.text
    # A trailing slash reaches the same method, and the same check.
    assert_names_field(api.post("/api/v1/vote/", json=vote_body(song, stars=1), headers=key), "stars")


def test_bytes_after_the_json_object_are_400(api: httpx.Client, agent: dict[str, Any], song: dict[str, Any]) -> None:
    # The transcoder read a body only up to its first NUL: the rest was ignored.
    body = json.dumps(vote_body(song)).encode() + b"\x00junk"
    reply = api.post("/api/v1/vote", content=body, headers=auth(agent["key"]))
    assert_error(reply, 400, 3, "after its JSON object")
    assert_error(api.post("/api/v1/vote", content=b"[1, 2]", headers=auth(agent["key"])), 400, 3, "JSON object")


def test_every_json_example_in_the_readme_works(api: httpx.Client, stack: Stack) -> None:
    """The README's curl calls with a body, in order, with fresh ids."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    calls = re.findall(r"curl -s -X (POST|PATCH) localhost:8080(\S+)(.*?)-d '(.*?)'", readme, re.DOTALL)
    assert len(calls) >= 5, calls
    suffix = unique("readme")
    key = ""
    for method, path, options, raw in calls:
        body = raw.replace("neon-rain", f"neon-rain-{suffix}").replace('"udio"', f'"udio-{suffix}"')
        body = body.replace("my-agent", f"my-agent-{suffix}")
        headers = {}
        if "$ADMIN" in options:
            headers = auth(stack.admin_key)
        elif "$KEY" in options:
            headers = auth(key)
        reply = api.request(method, path, content=body.encode(), headers=headers)
        assert reply.status_code == 200, (path, body, reply.text)
        if path == "/api/v1/agents":
            key = reply.json()["api_key"]
