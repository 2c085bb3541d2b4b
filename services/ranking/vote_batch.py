"""What a batch of vote events changes (pure functions): item counts, daily
tallies and the projection of live votes.

- A "vote" event adds its vote; any other event (a retraction) takes the same
  vote back: its up or down, its rating and its review, with a minus sign.
- A daily tally counts a vote on the (UTC) day it was cast, whichever day
  the event is applied on.
- A daily tally also sums the chart weights of the day's live votes, as the
  projection holds them: a vote the projection took in adds its weight, one
  it gave up takes back the weight it was held with (so a flag's re-weighing
  in between is taken back exactly), and re-weighing adds the difference.
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
from datetime import UTC, date, datetime
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
    weighted_up: float = 0.0
    weighted_down: float = 0.0


@dataclass(frozen=True, slots=True)
class ProjectedVote:
    """A live vote as the projection holds it: where it counts, and its chart weight."""

    item_type: str
    item_id: str
    direction: int
    voted_at: datetime  # aware (PostgreSQL gives it in the session's time zone)
    chart_weight: float

    @property
    def day(self) -> DayKey:
        """The tally it counts in: its (UTC) day, as the event's raw count."""
        return (self.item_type, self.item_id, self.voted_at.astimezone(UTC).date())


@dataclass(frozen=True, slots=True)
class AgentWeights:
    """What one vote of an agent counts: in trending, and in the charts."""

    trending: float
    chart: float


def agent_weights(trending: str | None, chart: str | None, probation_weight: float) -> AgentWeights:
    """The agent's weights as the reputation service published them
    (services/common/weights.py); one it has not published is on probation."""
    return AgentWeights(
        trending=probation_weight if trending is None else float(trending),
        chart=probation_weight if chart is None else float(chart),
    )


def count_changes(
    events: Iterable[VoteEvent], removed: Iterable[ProjectedVote] = (), added: Iterable[ProjectedVote] = ()
) -> tuple[list[tuple[ItemKey, CountChange]], list[tuple[DayKey, CountChange]]]:
    """Per item, then per item and day: the change of its counts, sorted by
    key; `removed` and `added` are the batch's changes of the projection."""
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
    _add_weights(days, removed, -1.0)
    _add_weights(days, added, 1.0)
    return sorted(items.items(), key=itemgetter(0)), sorted(days.items(), key=itemgetter(0))


def reweighed_days(old: Iterable[ProjectedVote], new_chart_weight: float) -> list[tuple[DayKey, CountChange]]:
    """Per item and day, what re-weighing these votes to `new_chart_weight`
    changes (weighted sums only), sorted by key; days left unchanged are left out."""
    days: dict[DayKey, CountChange] = defaultdict(CountChange)
    for vote in old:
        if vote.chart_weight != new_chart_weight:
            _add_weight(days[vote.day], vote.direction, new_chart_weight - vote.chart_weight)
    return sorted(days.items(), key=itemgetter(0))


def _add_weights(days: dict[DayKey, CountChange], votes: Iterable[ProjectedVote], sign: float) -> None:
    for vote in votes:
        _add_weight(days[vote.day], vote.direction, sign * vote.chart_weight)


def _add_weight(change: CountChange, direction: int, weight: float) -> None:
    if direction > 0:
        change.weighted_up += weight
    else:
        change.weighted_down += weight


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
