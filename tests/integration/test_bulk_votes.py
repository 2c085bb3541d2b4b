"""Batch votes as JSON through the gateway, and StreamVotes as gRPC through
the gateway port: each vote answered like a single vote, durable when
answered, and the whole call refused only for its caller, body or size."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import pytest

from aimusicstore.vote.v1 import vote_service_pb2 as pb
from aimusicstore.vote.v1 import vote_service_pb2_grpc
from devstack.stack import Stack
from tests.integration.conftest import auth, make_songs, votes_table_counts

pytestmark = pytest.mark.integration

BATCH = "/api/v1/votes:batchCreate"


def test_a_json_batch_answers_each_vote_in_order_and_stores_it(
    api: httpx.Client, stack: Stack, agent: dict[str, Any]
) -> None:
    a, b = make_songs(api, agent["key"], 2)
    votes = [
        {"item_type": "song", "item_id": a, "vote": "up"},
        {"item_type": "song", "item_id": a, "vote": "down"},
        {"item_type": "song", "item_id": "no-such-song", "vote": "up"},
        {"item_type": "song", "item_id": b, "vote": "down", "comment": "flat mix"},
        {"item_type": "song", "item_id": b, "vote": "up", "rating": 9},
    ]
    reply = api.post(BATCH, json={"votes": votes}, headers=auth(agent["key"]))
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert [(r["item_id"], r["status"], r["code"]) for r in results] == [
        (a, "recorded", 200),
        (a, "already_voted", 409),
        ("no-such-song", "not_found", 404),
        (b, "recorded", 200),
        (b, "invalid", 400),  # checked before it is found a second vote, as CastVote would
    ]
    assert results[0]["up_votes"] == 1 and results[0]["score"] == 1 and results[0]["message"] == "Vote recorded"
    assert results[3]["down_votes"] == 1 and results[3]["vote"]["comment"] == "flat mix"
    assert "does not exist" in results[2]["message"] and "rating" in results[4]["message"]
    assert votes_table_counts(stack, "song", a) == (1, 0)
    assert votes_table_counts(stack, "song", b) == (0, 1)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"votes": []}, "votes: a batch holds 1 to 100 votes (got 0)"),
        ({"votes": [{"item_type": "song", "item_id": "x", "vote": "up"}] * 101}, "1 to 100 votes (got 101)"),
        ({"votes": "up"}, ""),
        ({"votes": [{"item_type": "song", "item_id": "x", "vote": "up", "rating": "five"}]}, ""),
    ],
)
def test_a_batch_of_the_wrong_size_or_shape_is_refused_whole(
    api: httpx.Client, agent: dict[str, Any], body: dict[str, Any], fragment: str
) -> None:
    reply = api.post(BATCH, json=body, headers=auth(agent["key"]))
    assert reply.status_code == 400, reply.text
    assert reply.json()["message"]
    assert fragment in reply.json()["message"]


def test_a_batch_without_a_valid_key_is_refused_whole(api: httpx.Client) -> None:
    body = {"votes": [{"item_type": "song", "item_id": "x", "vote": "up"}]}
    assert api.post(BATCH, json=body).status_code == 401
    assert api.post(BATCH, json=body, headers=auth("not-a-key")).status_code == 401


def test_a_vote_stream_through_the_gateway_port(
    api: httpx.Client, channel: grpc.Channel, stack: Stack, agent: dict[str, Any]
) -> None:
    a, b = make_songs(api, agent["key"], 2)
    stub = vote_service_pb2_grpc.VoteServiceStub(channel)
    votes = [
        pb.CastVoteRequest(item_type="song", item_id=a, vote="up"),
        pb.CastVoteRequest(item_type="song", item_id=b, vote="down"),
        pb.CastVoteRequest(item_type="song", item_id=a, vote="down"),
    ]
    metadata = (("authorization", f"Bearer {agent['key']}"),)
    results = list(stub.StreamVotes(iter(votes), metadata=metadata, timeout=10))
    assert [(r.item_id, r.status) for r in results] == [(a, "recorded"), (b, "recorded"), (a, "already_voted")]
    assert votes_table_counts(stack, "song", b) == (0, 1)
