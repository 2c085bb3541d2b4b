"""The one place a vote event is built (the VoteEvent proto's JSON form).

Casting and retracting both publish the vote as stored: for a retraction,
the retracted vote's direction, review and cast time. The event's
`event_id` is the outbox row's id, added when the relay publishes it.
Field names are the proto's JSON names, so `services.common.events.decode`
reads what this writes (tests/unit/vote/test_event.py checks it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from services.vote.model import VoteRow

EventType = Literal["vote", "retract"]


def vote_event(event_type: EventType, vote: VoteRow, occurred_at: datetime, traceparent: str = "") -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": event_type,
        "agent_id": vote.agent_id,
        "item_type": vote.item_type,
        "item_id": vote.item_id,
        "direction": vote.direction,
        "has_review": vote.has_review,
        "voted_at": vote.created_at.isoformat(),
        "occurred_at": occurred_at.isoformat(),
    }
    if vote.rating is not None:
        event["rating"] = vote.rating
    if traceparent:
        event["traceparent"] = traceparent
    return event
