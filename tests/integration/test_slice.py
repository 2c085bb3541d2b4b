"""The walking skeleton's vertical slice, through the gateway as JSON and as gRPC:
register an agent, submit a song, vote, see the counts."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import pytest

from aimusicstore.ranking.v1 import catalog_pb2, catalog_service_pb2, catalog_service_pb2_grpc
from aimusicstore.reputation.v1 import agent_pb2, agent_service_pb2, agent_service_pb2_grpc
from aimusicstore.vote.v1 import vote_service_pb2, vote_service_pb2_grpc
from devstack.stack import Stack
from tests.integration.conftest import auth, eventually, unique

pytestmark = pytest.mark.integration


def test_register_agent_returns_a_key_once(api: httpx.Client) -> None:
    agent_id = unique("agent")
    reply = api.post("/api/v1/agents", json={"id": agent_id, "name": "Bot"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["api_key"].startswith("ams_") and len(body["api_key"]) > 40
    agent = body["agent"]
    assert agent["id"] == agent_id and agent["name"] == "Bot" and agent["tier"] == "free"
    # Counters are present even when zero.
    assert agent["reputation_score"] == 0 and agent["vote_count"] == 0 and agent["flagged"] is False
    fetched = api.get(f"/api/v1/agents/{agent_id}").json()
    assert "api_key" not in fetched and fetched["id"] == agent_id
    assert api.post("/api/v1/agents", json={"id": agent_id}).status_code == 409


@pytest.mark.parametrize("reserved", ["admin", "Admin", "system", "vote", "reputation"])
def test_the_services_own_ids_cannot_be_registered(api: httpx.Client, reserved: str) -> None:
    reply = api.post("/api/v1/agents", json={"id": reserved})
    assert reply.status_code == 400, reply.text
    assert "reserved" in reply.json()["message"] and reply.json()["message"].startswith("id")


def test_register_without_id_gets_a_generated_one(api: httpx.Client) -> None:
    reply = api.post("/api/v1/agents", json={})
    assert reply.status_code == 200, reply.text
    assert reply.json()["agent"]["id"].startswith("agent-")


def test_vote_through_json(api: httpx.Client, agent: dict[str, Any], song: dict[str, Any]) -> None:
    assert song["up_votes"] == 0 and song["down_votes"] == 0 and song["score"] == 0
    assert song["submitted_by"] == agent["id"]
    vote = {"item_type": "song", "item_id": song["id"], "vote": "up", "comment": "great hook"}
    reply = api.post("/api/v1/vote", json=vote, headers=auth(agent["key"]))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["status"] == "success" and body["message"] == "Vote recorded"
    assert (body["up_votes"], body["down_votes"], body["score"]) == (1, 0, 1)
    assert body["vote"]["agent_id"] == agent["id"] and body["vote"]["vote"] == "up"
    assert body["vote"]["timestamp"].endswith("Z")

    again = api.post("/api/v1/vote", json=vote, headers=auth(agent["key"]))
    assert again.status_code == 409
    assert again.json() == {"code": 6, "message": "Already voted", "details": []}

    counts = api.get(f"/api/v1/votes/song/{song['id']}").json()
    assert counts == {"item_type": "song", "item_id": song["id"], "up_votes": 1, "down_votes": 0, "score": 1}
    # The catalog's copy of the counts follows the vote event within 1 s.
    eventually(lambda: api.get(f"/api/v1/songs/{song['id']}").json()["up_votes"] == 1, timeout_s=1.0)


def test_counts_include_every_agents_vote(api: httpx.Client, song: dict[str, Any]) -> None:
    keys = [api.post("/api/v1/agents", json={}).json()["api_key"] for _ in range(3)]
    directions = ["up", "down", "down"]
    last = None
    for key, direction in zip(keys, directions, strict=True):
        last = api.post(
            "/api/v1/vote", json={"item_type": "song", "item_id": song["id"], "vote": direction}, headers=auth(key)
        )
        assert last.status_code == 200, last.text
    assert last is not None
    assert (last.json()["up_votes"], last.json()["down_votes"], last.json()["score"]) == (1, 2, -1)
    eventually(lambda: api.get(f"/api/v1/songs/{song['id']}").json()["score"] == -1, timeout_s=1.0)


def test_the_slice_over_grpc_through_the_gateway(channel: grpc.Channel) -> None:
    agents = agent_service_pb2_grpc.AgentServiceStub(channel)
    catalog = catalog_service_pb2_grpc.CatalogServiceStub(channel)
    votes = vote_service_pb2_grpc.VoteServiceStub(channel)

    registered = agents.RegisterAgent(
        agent_service_pb2.RegisterAgentRequest(agent=agent_pb2.Agent(id=unique("grpc-agent"))), timeout=5
    )
    metadata = (("authorization", f"Bearer {registered.api_key}"),)
    song = catalog.CreateSong(
        catalog_service_pb2.CreateSongRequest(
            song=catalog_pb2.Song(
                id=unique("grpc-song"), title="Circuit", artist="Udio Band", platform="udio", tempo=128
            )
        ),
        metadata=metadata,
        timeout=5,
    )
    assert song.tempo == 128 and song.submitted_by == registered.agent.id

    reply = votes.CastVote(
        vote_service_pb2.CastVoteRequest(item_type="song", item_id=song.id, vote="down"), metadata=metadata, timeout=5
    )
    assert (reply.up_votes, reply.down_votes, reply.score) == (0, 1, -1)
    with pytest.raises(grpc.RpcError) as caught:
        votes.CastVote(
            vote_service_pb2.CastVoteRequest(item_type="song", item_id=song.id, vote="down"),
            metadata=metadata,
            timeout=5,
        )
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert caught.value.details() == "Already voted"

    counts = votes.GetVoteCounts(vote_service_pb2.GetVoteCountsRequest(item_type="song", item_id=song.id), timeout=5)
    assert (counts.up_votes, counts.down_votes, counts.score) == (0, 1, -1)
    eventually(
        lambda: catalog.GetSong(catalog_service_pb2.GetSongRequest(song_id=song.id), timeout=5).down_votes == 1,
        timeout_s=1.0,
    )


def test_a_song_and_a_tool_may_share_an_id(api: httpx.Client, stack: Stack, agent: dict[str, Any]) -> None:
    shared = unique("same")
    assert (
        api.post(
            "/api/v1/songs",
            json={"id": shared, "title": "S", "artist": "A", "platform": "udio"},
            headers=auth(agent["key"]),
        ).status_code
        == 200
    )
    tool = api.post("/api/v1/tools", json={"id": shared, "name": "Tool", "rating": 0}, headers=auth(stack.admin_key))
    assert tool.status_code == 200, tool.text
    assert (
        api.post(
            "/api/v1/vote", json={"item_type": "song", "item_id": shared, "vote": "up"}, headers=auth(agent["key"])
        ).status_code
        == 200
    )
    second = api.post(
        "/api/v1/vote",
        json={"item_type": "tool", "item_id": shared, "vote": "down", "rating": 4},
        headers=auth(agent["key"]),
    )
    assert second.status_code == 200, second.text
    assert second.json()["vote"]["rating"] == 4
    assert api.get(f"/api/v1/votes/song/{shared}").json()["score"] == 1
    assert api.get(f"/api/v1/votes/tool/{shared}").json()["score"] == -1
    tool_now = eventually(
        lambda: (t := api.get(f"/api/v1/tools/{shared}").json())["down_votes"] == 1 and t, timeout_s=1.0
    )
    assert tool_now["rating"] == 4.0 and tool_now["review_count"] == 1


def test_votes_survive_restarts(api: httpx.Client, stack: Stack, agent: dict[str, Any], song: dict[str, Any]) -> None:
    reply = api.post(
        "/api/v1/vote", json={"item_type": "song", "item_id": song["id"], "vote": "up"}, headers=auth(agent["key"])
    )
    assert reply.status_code == 200
    for component in ("vote", "redis", "postgres"):
        stack.restart(component)
    eventually(lambda: api.get("/health").status_code == 200, timeout_s=20)
    assert eventually(lambda: api.get(f"/api/v1/votes/song/{song['id']}").json().get("up_votes") == 1, timeout_s=10)
    again = eventually(
        lambda: (
            (
                r := api.post(
                    "/api/v1/vote",
                    json={"item_type": "song", "item_id": song["id"], "vote": "up"},
                    headers=auth(agent["key"]),
                )
            ).status_code
            != 503
            and r
        ),
        timeout_s=10,
    )
    assert again.status_code == 409
