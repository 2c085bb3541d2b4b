"""What a batch of vote events changes (pure functions): item counts, daily
tallies and the projection of live votes.

- Counts follow the projection of live votes, not the events: a vote the
  projection took in adds its up or down, its rating and its review; one it
  gave up takes back what it was held with. So an event that changes nothing
  in the projection (stale: applied after a newer event of the same agent and
  item, services/common/vote_order.py) changes no count either, and counts
  equal what the in-order application gives, in any order.
- A daily tally counts a vote on the (UTC) day it was cast, whichever day
  the event is applied on.
- A daily tally also sums the chart weights of the day's live votes, as the
  projection holds them: a vote the projection took in adds its weight, one
  it gave up takes back the weight it was held with (so a flag's re-weighing
  in between is taken back exactly), and re-weighing adds the difference.
- Per agent and item, the batch's newest event (highest event id) is the
  only one that can stand; the projection applies it if it is newer than
  what it holds.

Results are sorted by key: the store writes rows in that order, so two
overlapping batches lock rows in the same order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from operator import itemgetter

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.common.vote_order import newest_per_key

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
    rating: int | None = None
    has_review: bool = False

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
    removed: Iterable[ProjectedVote] = (), added: Iterable[ProjectedVote] = ()
) -> tuple[list[tuple[ItemKey, CountChange]], list[tuple[DayKey, CountChange]]]:
    """Per item, then per item and day: the change of its counts, sorted by
    key, from the batch's changes of the projection (what it gave up, what
    it took in)."""
    items: dict[ItemKey, CountChange] = defaultdict(CountChange)
    days: dict[DayKey, CountChange] = defaultdict(CountChange)
    for votes, sign in ((removed, -1), (added, 1)):
        for vote in votes:
            up, down = (sign, 0) if vote.direction > 0 else (0, sign)
            item = items[(vote.item_type, vote.item_id)]
            item.up += up
            item.down += down
            if vote.rating is not None:
                item.rating_sum += sign * vote.rating
                item.rating_count += sign
            if vote.has_review:
                item.reviews += sign
            day = days[vote.day]
            day.up += up
            day.down += down
            _add_weight(day, vote.direction, sign * vote.chart_weight)
    return sorted(items.items(), key=itemgetter(0)), sorted(days.items(), key=itemgetter(0))


def reweighed_days(old: Iterable[ProjectedVote], new_chart_weight: float) -> list[tuple[DayKey, CountChange]]:
    """Per item and day, what re-weighing these votes to `new_chart_weight`
    changes (weighted sums only), sorted by key; days left unchanged are left out."""
    days: dict[DayKey, CountChange] = defaultdict(CountChange)
    for vote in old:
        if vote.chart_weight != new_chart_weight:
            _add_weight(days[vote.day], vote.direction, new_chart_weight - vote.chart_weight)
    return sorted(days.items(), key=itemgetter(0))


def _add_weight(change: CountChange, direction: int, weight: float) -> None:
    if direction > 0:
        change.weighted_up += weight
    else:
        change.weighted_down += weight


def live_vote_changes(
    events: Iterable[VoteEvent],
) -> tuple[list[tuple[VoteKey, VoteEvent]], list[tuple[VoteKey, VoteEvent]]]:
    """Per agent and item, the batch's newest event, split into (retractions,
    votes), each sorted by key. Whether each stands is the projection's
    decision (it knows what it holds)."""
    newest = sorted(newest_per_key(events).items(), key=itemgetter(0))
    return [(k, e) for k, e in newest if e.type != "vote"], [(k, e) for k, e in newest if e.type == "vote"]


def stale_chart_weights(projected: Iterable[tuple[str, float]], published: Mapping[str, float]) -> list[str]:
    """The agents some of whose projected votes hold a chart weight other than
    the one published for them now: a change of standing whose announcement
    the ranking service never heard (no replica subscribed when it was
    sent), to be re-weighed. `projected`: (agent, chart weight held) pairs;
    an agent with nothing published is not judged (never published, it is on
    probation as its votes were counted; or the weights were lost, and
    nothing says what it weighs)."""
    return sorted({agent for agent, weight in projected if agent in published and weight != published[agent]})
