"""Votes and identity: retraction, reviews, agent lists, keys, tiers, quotas,
flags, standing and the moderation queue."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import httpx
import psycopg
import pytest
import redis

from aimusicstore.reputation.v1 import agent_service_pb2, agent_service_pb2_grpc
from aimusicstore.vote.v1 import vote_service_pb2, vote_service_pb2_grpc
from devstack.stack import Stack
from tests.integration.conftest import auth, eventually, make_songs, unique, vote

pytestmark = pytest.mark.integration


def test_retract_then_vote_again(api: httpx.Client, agent: dict[str, Any], song: dict[str, Any]) -> None:
    assert vote(api, agent["key"], song["id"], "down").status_code == 200
    reply = api.delete(f"/api/v1/vote/song/{song['id']}", headers=auth(agent["key"]))
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"status": "success", "message": "Vote retracted"}
    assert api.get(f"/api/v1/votes/song/{song['id']}").json()["down_votes"] == 0
    missing = api.delete(f"/api/v1/vote/song/{song['id']}", headers=auth(agent["key"]))
    assert missing.status_code == 404 and missing.json()["code"] == 5
    again = vote(api, agent["key"], song["id"], "up")
    assert again.status_code == 200
    assert (again.json()["up_votes"], again.json()["down_votes"]) == (1, 0)
    eventually(lambda: api.get(f"/api/v1/songs/{song['id']}").json()["up_votes"] == 1, timeout_s=1.0)
    assert api.get(f"/api/v1/songs/{song['id']}").json()["down_votes"] == 0


def test_retract_needs_the_voters_key(api: httpx.Client, song: dict[str, Any]) -> None:
    reply = api.delete(f"/api/v1/vote/song/{song['id']}")
    assert reply.status_code == 401


def test_reviews_list_only_votes_with_a_comment_or_rating(api: httpx.Client, stack: Stack) -> None:
    tool_id = unique("tool")
    assert (
        api.post("/api/v1/tools", json={"id": tool_id, "name": "Stems"}, headers=auth(stack.admin_key)).status_code
        == 200
    )
    keys = [api.post("/api/v1/agents", json={}).json()["api_key"] for _ in range(4)]
    assert vote(api, keys[0], tool_id, "up", "tool", comment="clean stems").status_code == 200
    assert vote(api, keys[1], tool_id, "up", "tool").status_code == 200
    assert vote(api, keys[2], tool_id, "down", "tool", rating=2).status_code == 200
    assert vote(api, keys[3], tool_id, "up", "tool", rating=5, comment="best").status_code == 200

    first = api.get(f"/api/v1/votes/tool/{tool_id}/reviews", params={"page_size": 2}).json()
    assert [v.get("rating") for v in first["votes"]] == [5, 2]  # newest first
    assert first["next_page_token"]
    second = api.get(
        f"/api/v1/votes/tool/{tool_id}/reviews", params={"page_size": 2, "page_token": first["next_page_token"]}
    ).json()
    assert [v["comment"] for v in second["votes"]] == ["clean stems"]
    assert second["next_page_token"] == ""
    tool = eventually(lambda: (t := api.get(f"/api/v1/tools/{tool_id}").json())["up_votes"] == 3 and t, timeout_s=1.0)
    assert tool["rating"] == 3.5 and tool["review_count"] == 3


def test_agent_votes_newest_first_with_pagination(api: httpx.Client, agent: dict[str, Any]) -> None:
    songs = make_songs(api, agent["key"], 5)
    for song_id in songs:
        assert vote(api, agent["key"], song_id).status_code == 200
    seen: list[str] = []
    token = ""
    while True:
        page = api.get(f"/api/v1/agents/{agent['id']}/votes", params={"page_size": 2, "page_token": token}).json()
        assert len(page["votes"]) <= 2
        seen += [v["item_id"] for v in page["votes"]]
        token = page["next_page_token"]
        if not token:
            break
    assert seen == list(reversed(songs))
    capped = api.get(f"/api/v1/agents/{agent['id']}/votes", params={"page_size": 1000})
    assert capped.status_code == 200 and len(capped.json()["votes"]) == 5


def test_votes_of_an_agent_that_never_voted_and_of_no_agent(api: httpx.Client, agent: dict[str, Any]) -> None:
    quiet = api.get(f"/api/v1/agents/{agent['id']}/votes")
    assert quiet.status_code == 200 and quiet.json()["votes"] == [], quiet.text
    missing = api.get("/api/v1/agents/nobody-here/votes")
    assert missing.status_code == 404, missing.text
    assert "agent 'nobody-here' does not exist" in missing.json()["message"]


def test_rotated_key_is_refused_at_once(api: httpx.Client, agent: dict[str, Any]) -> None:
    songs = make_songs(api, agent["key"], 3)
    assert vote(api, agent["key"], songs[0]).status_code == 200  # the old key is now cached everywhere
    rotated = api.post(f"/api/v1/agents/{agent['id']}/keys", headers=auth(agent["key"]))
    assert rotated.status_code == 200, rotated.text
    new_key = rotated.json()["api_key"]
    assert new_key != agent["key"]
    refused = vote(api, agent["key"], songs[1])
    assert refused.status_code == 401, refused.text
    retraction = api.delete(f"/api/v1/vote/song/{songs[0]}", headers=auth(agent["key"]))
    assert retraction.status_code == 401, retraction.text
    assert (
        api.post(
            "/api/v1/songs", json={"title": "x", "artist": "y", "platform": "udio"}, headers=auth(agent["key"])
        ).status_code
        == 401
    )
    assert vote(api, new_key, songs[1]).status_code == 200


def test_rotation_rules(api: httpx.Client, agent: dict[str, Any], stack: Stack) -> None:
    other = api.post("/api/v1/agents", json={}).json()
    assert api.post(f"/api/v1/agents/{other['agent']['id']}/keys", headers=auth(agent["key"])).status_code == 403
    assert api.post(f"/api/v1/agents/{agent['id']}/keys").status_code == 401
    by_admin = api.post(f"/api/v1/agents/{agent['id']}/keys", headers=auth(stack.admin_key))
    assert by_admin.status_code == 200
    assert api.post("/api/v1/agents/no-such-agent/keys", headers=auth(stack.admin_key)).status_code == 404


def test_patch_is_admin_only_and_validated(api: httpx.Client, agent: dict[str, Any], stack: Stack) -> None:
    path = f"/api/v1/agents/{agent['id']}"
    assert api.patch(path, json={"tier": "pro"}, headers=auth(agent["key"])).status_code == 403
    assert api.patch(path, json={"tier": "pro"}).status_code == 401
    bad = api.patch(path, json={"tier": "platinum"}, headers=auth(stack.admin_key))
    assert bad.status_code == 400 and "tier" in bad.json()["message"]
    assert (
        api.patch("/api/v1/agents/nobody-here", json={"tier": "pro"}, headers=auth(stack.admin_key)).status_code == 404
    )
    updated = api.patch(path, json={"tier": "enterprise"}, headers=auth(stack.admin_key))
    assert updated.status_code == 200 and updated.json()["tier"] == "enterprise"
    assert api.get(path).json()["tier"] == "enterprise"


def test_quota_is_exact_under_concurrency_and_refuses_without_recording(
    api: httpx.Client, stack: Stack, agent: dict[str, Any]
) -> None:
    songs = make_songs(api, agent["key"], 110)
    with ThreadPoolExecutor(max_workers=64) as pool:
        replies = list(pool.map(lambda song_id: vote(api, agent["key"], song_id), songs))
    statuses = [r.status_code for r in replies]
    assert statuses.count(200) == 100, statuses
    assert statuses.count(429) == 10, statuses
    refused = next(r for r in replies if r.status_code == 429).json()
    assert refused["code"] == 8 and "resets at" in refused["message"] and "free" in refused["message"]
    with psycopg.connect(stack.database_url or "") as conn:
        recorded = conn.execute("SELECT count(*) FROM vote.votes WHERE agent_id = %s", (agent["id"],)).fetchone()
    assert recorded == (100,)

    # A tier upgrade applies within a second.
    assert (
        api.patch(f"/api/v1/agents/{agent['id']}", json={"tier": "pro"}, headers=auth(stack.admin_key)).status_code
        == 200
    )
    refused_song = next(s for s, r in zip(songs, replies, strict=True) if r.status_code == 429)
    eventually(lambda: vote(api, agent["key"], refused_song).status_code == 200, timeout_s=1.0, interval_s=0.1)


def test_a_burst_flags_the_agent_and_its_votes_still_count(
    api: httpx.Client, stack: Stack, agent: dict[str, Any]
) -> None:
    songs = make_songs(api, agent["key"], 13)
    for song_id in songs[:11]:
        assert vote(api, agent["key"], song_id).status_code == 200
    flagged = api.get(f"/api/v1/agents/{agent['id']}").json()
    assert flagged["flagged"] is True
    assert "10 votes within 10 seconds" in flagged["flag_reason"]
    assert api.get(f"/api/v1/votes/song/{songs[10]}").json()["up_votes"] == 1
    # Still allowed to vote, and counted.
    assert vote(api, agent["key"], songs[11]).json()["up_votes"] == 1
    cleared = api.patch(f"/api/v1/agents/{agent['id']}", json={"flagged": False}, headers=auth(stack.admin_key))
    assert cleared.status_code == 200
    assert cleared.json()["flagged"] is False and cleared.json()["flag_reason"] == ""

    # Clearing forgives the burst: the vote service forgets the agent's rule
    # windows (announced over pub/sub), so its next vote does not flag it again.
    with redis.Redis.from_url(stack.redis_url or "") as cache:
        eventually(lambda: cache.exists(f"vote:recent:{agent['id']}:up") == 0, timeout_s=2)
    assert vote(api, agent["key"], songs[12]).status_code == 200
    assert api.get(f"/api/v1/agents/{agent['id']}").json()["flagged"] is False


def test_standing_weight_and_the_moderation_queue_through_the_api(
    api: httpx.Client, stack: Stack, agent: dict[str, Any]
) -> None:
    path = f"/api/v1/agents/{agent['id']}"
    fresh = api.get(path).json()
    assert (fresh["standing"], fresh["weight"]) == ("probation", 0.25)
    flagged = api.patch(path, json={"flagged": True}, headers=auth(stack.admin_key)).json()
    assert (flagged["standing"], flagged["weight"]) == ("flagged", 0)

    queue = api.get("/api/v1/agents", params={"flagged": "true", "page_size": 1}, headers=auth(stack.admin_key))
    assert queue.status_code == 200, queue.text
    [newest] = queue.json()["agents"]  # newest flag first
    assert (newest["id"], newest["flag_reason"], newest["standing"]) == (agent["id"], "flagged by an admin", "flagged")
    assert queue.json()["next_page_token"]
    assert api.get("/api/v1/agents", params={"flagged": "true"}, headers=auth(agent["key"])).status_code == 403
    assert api.get("/api/v1/agents", params={"flagged": "true"}).status_code == 401

    cleared = api.patch(path, json={"flagged": False}, headers=auth(stack.admin_key)).json()
    assert (cleared["standing"], cleared["weight"], cleared["flag_reason"]) == ("probation", 0.25, "")


def test_vote_count_and_last_vote_at_follow_votes(api: httpx.Client, agent: dict[str, Any]) -> None:
    songs = make_songs(api, agent["key"], 3)
    for song_id in songs:
        assert vote(api, agent["key"], song_id).status_code == 200
    assert api.delete(f"/api/v1/vote/song/{songs[0]}", headers=auth(agent["key"])).status_code == 200
    fetched = eventually(
        lambda: (a := api.get(f"/api/v1/agents/{agent['id']}").json())["vote_count"] == 2 and a, timeout_s=5
    )
    assert fetched["last_vote_at"].endswith("Z")


def test_votes_and_keys_over_grpc(channel: grpc.Channel, api: httpx.Client, agent: dict[str, Any]) -> None:
    songs = make_songs(api, agent["key"], 2)
    agents = agent_service_pb2_grpc.AgentServiceStub(channel)
    votes = vote_service_pb2_grpc.VoteServiceStub(channel)
    old = (("authorization", f"Bearer {agent['key']}"),)
    votes.CastVote(
        vote_service_pb2.CastVoteRequest(item_type="song", item_id=songs[0], vote="up"), metadata=old, timeout=5
    )
    rotated = agents.RotateKey(agent_service_pb2.RotateKeyRequest(agent_id=agent["id"]), metadata=old, timeout=5)
    with pytest.raises(grpc.RpcError) as caught:
        votes.CastVote(
            vote_service_pb2.CastVoteRequest(item_type="song", item_id=songs[1], vote="up"), metadata=old, timeout=5
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    new = (("authorization", f"Bearer {rotated.api_key}"),)
    votes.CastVote(
        vote_service_pb2.CastVoteRequest(item_type="song", item_id=songs[1], vote="up"), metadata=new, timeout=5
    )
    listed = votes.ListAgentVotes(vote_service_pb2.ListAgentVotesRequest(agent_id=agent["id"]), timeout=5)
    assert [v.item_id for v in listed.votes] == [songs[1], songs[0]]
    retracted = votes.RetractVote(
        vote_service_pb2.RetractVoteRequest(item_type="song", item_id=songs[1]), metadata=new, timeout=5
    )
    assert retracted.message == "Vote retracted"
