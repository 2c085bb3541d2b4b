"""What a batch of vote events changes (pure functions): item counts, daily
tallies and the projection of live votes.

- A "vote" event adds its vote; any other event (a retraction) takes the same
  vote back: its up or down, its rating and its review, with a minus sign.
- A daily tally counts a vote on the (UTC) day it was cast, whichever day
  the event is applied on.
- Per agent and item, the batch's last event stands. A retraction in the
  batch removes the item's projected vote; a vote cast after it in the same
  batch is then projected anew.

Results are sorted by key: the store writes rows in that order, so two
overlapping batches lock rows in the same order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from operator import itemgetter

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent

ItemKey = tuple[str, str]  # (item_type, item_id)
DayKey = tuple[str, str, date]  # (item_type, item_id, day cast)
VoteKey = tuple[str, str, str]  # (agent_id, item_type, item_id)


@dataclass(slots=True)
class CountChange:
    """What a batch adds to one item's counters (or to one day of its tally)."""

    up: int = 0
    down: int = 0
    rating_sum: int = 0
    rating_count: int = 0
    reviews: int = 0


def count_changes(
    events: Iterable[VoteEvent],
) -> tuple[list[tuple[ItemKey, CountChange]], list[tuple[DayKey, CountChange]]]:
    """Per item, then per item and day: the change of its counts, sorted by key."""
    items: dict[ItemKey, CountChange] = defaultdict(CountChange)
    days: dict[DayKey, CountChange] = defaultdict(CountChange)
    for event in events:
        sign = 1 if event.type == "vote" else -1
        up, down = (sign, 0) if event.direction > 0 else (0, sign)
        item = items[(event.item_type, event.item_id)]
        item.up += up
        item.down += down
        if event.HasField("rating"):
            item.rating_sum += sign * event.rating
            item.rating_count += sign
        if event.has_review:
            item.reviews += sign
        day = days[(event.item_type, event.item_id, event.voted_at.ToDatetime().date())]
        day.up += up
        day.down += down
    return sorted(items.items(), key=itemgetter(0)), sorted(days.items(), key=itemgetter(0))


def live_vote_changes(events: Iterable[VoteEvent]) -> tuple[list[VoteKey], list[tuple[VoteKey, VoteEvent]]]:
    """(the votes to take out of the projection, the votes to put in), sorted by key."""
    final: dict[VoteKey, VoteEvent] = {}
    retracted: set[VoteKey] = set()
    for event in events:
        key = (event.agent_id, event.item_type, event.item_id)
        final[key] = event
        if event.type != "vote":
            retracted.add(key)
    cast = [(key, event) for key, event in sorted(final.items(), key=itemgetter(0)) if event.type == "vote"]
    return sorted(retracted), cast
