"""The hand-written vote event decoder agrees with protobuf's JSON parser."""

from __future__ import annotations

import json

import pytest
from google.protobuf import json_format

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.common.events import MalformedEvent, decode

SAMPLES = [
    {
        "event_id": 42,
        "type": "vote",
        "agent_id": "agent-1",
        "item_type": "tool",
        "item_id": "t-1",
        "direction": -1,
        "rating": 4,
        "has_review": True,
        "occurred_at": "2026-11-22T02:11:26.123456+00:00",
    },
    {
        "event_id": "7",  # proto3 JSON writes int64 as a string
        "type": "retract",
        "agent_id": "a",
        "item_type": "song",
        "item_id": "s",
        "direction": 1,
        "voted_at": "2026-11-21T23:59:59+00:00",
        "occurred_at": "2026-11-22T00:00:00Z",
        "some_future_field": {"ignored": True},
    },
]


@pytest.mark.parametrize("payload", SAMPLES)
def test_decode_matches_the_protobuf_json_parser(payload: dict) -> None:
    raw = json.dumps(payload)
    assert decode(raw) == json_format.Parse(raw, VoteEvent(), ignore_unknown_fields=True)


def test_an_absent_rating_stays_absent() -> None:
    event = decode(json.dumps({"type": "vote", "direction": 1}))
    assert not event.HasField("rating")
    assert decode(json.dumps({"type": "vote", "rating": 0})).HasField("rating")


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[1, 2]",
        json.dumps({"direction": "up"}),
        json.dumps({"direction": True}),
        json.dumps({"agent_id": 5}),
        json.dumps({"occurred_at": "yesterday"}),
        json.dumps({"has_review": "yes"}),
    ],
)
def test_malformed_entries_are_rejected(raw: str) -> None:
    with pytest.raises(MalformedEvent):
        decode(raw)
