"""The allowed values of the API's enumerated string fields, declared once.

The protos carry them as plain strings (docs/api-notes.md says why), so the
sets live here: validation checks requests against them, the OpenAPI
document lists them as enums (gateway/openapi.py, through FIELD_VALUES), and
tests/unit/test_vocabulary.py checks that the proto comments and the docs
name the same values. Order matters where a set is shown: it is the order
of error messages, enums and the docs.
"""

from __future__ import annotations

from typing import Final

ITEM_TYPES: Final = ("song", "tool")
# The URL path segment of each item type (GET /api/v1/{songs,tools}/{id}/history).
ITEM_COLLECTIONS: Final = ("songs", "tools")
# A vote's direction and what it adds to an item's score (VoteEvent.direction).
VOTE_SIGNS: Final = {"up": 1, "down": -1}
VOTE_DIRECTIONS: Final = tuple(VOTE_SIGNS)
# What one vote event is: a vote cast, or one withdrawn.
EVENT_TYPES: Final = ("vote", "retract")
CHART_PERIODS: Final = ("daily", "weekly", "monthly", "all_time")
CHART_SORTS: Final = ("score", "best", "controversial")
# An entry's rank compared with the same chart one period earlier.
MOVEMENTS: Final = ("up", "down", "same", "new")
TIERS: Final = ("free", "pro", "enterprise")
# How much an agent's votes count in the charts (docs/integrity.md).
STANDINGS: Final = ("probation", "trusted", "flagged")
# The outcome of one vote of a batch or a stream (VoteResult.status).
VOTE_RESULT_STATUSES: Final = ("recorded", "already_voted", "not_found", "invalid", "quota_exceeded", "rate_limited")

# The proto string fields that take one of these sets: by field name, or by
# "Message.field" where the name alone could mean something else.
FIELD_VALUES: Final[dict[str, tuple[str, ...]]] = {
    "item_type": ITEM_TYPES,
    "collection": ITEM_COLLECTIONS,
    "vote": VOTE_DIRECTIONS,
    "VoteEvent.type": EVENT_TYPES,
    "WatchVotesResponse.type": EVENT_TYPES,
    "period": CHART_PERIODS,
    "sort": CHART_SORTS,
    "movement": MOVEMENTS,
    "tier": TIERS,
    "standing": STANDINGS,
    "VoteResult.status": VOTE_RESULT_STATUSES,
}


def field_values(message: str, field: str) -> tuple[str, ...] | None:
    """The values a string field of the message (its short name) takes, or
    None when any string goes."""
    return FIELD_VALUES.get(f"{message}.{field}") or FIELD_VALUES.get(field)
