"""Which vote event stands for an (agent, item): the rule that makes the
consumers' projections independent of the order events are applied in.

Events can be applied out of order: a restarted consumer reads new entries
before a dead consumer's pending ones are claimed (30 s later), a dead letter
is replayed, overlapping consumers share a rollout. So each projection keeps,
per (agent, item), the event id of what it holds: the vote it projects (its
live row), or else the retraction it applied last (a tombstone). An event
whose id is not above that version is stale and changes nothing, neither the
projection nor anything derived from it (counts, tallies, scores).

The ordering key is the event id, not `voted_at`:

- The event id is the vote service's outbox id, taken in the transaction that
  stores the vote or deletes it. For one agent and item these transactions
  are serialized by `vote.votes`' one-vote-per-agent-and-item constraint (a
  retraction deletes the committed row; a re-vote's insert waits for that
  delete to commit), so a vote, its retraction and a re-vote get increasing
  ids in that order, and the relay publishes in id order.
- `voted_at` cannot order them: a retraction carries the retracted vote's
  cast time (equal to its vote's), and the clocks of several vote processes
  differ.

What a winning event does to the (agent, item) it names:

- a vote replaces whatever is projected (an older vote whose retraction has
  not arrived yet is taken out first, with what it was projected with) and
  clears the tombstone;
- a retraction takes out whatever older vote is projected (the one it
  retracts, or an older one whose retraction and re-vote are still late:
  either way, what was added is what is taken back) and leaves a tombstone,
  so that its own vote, arriving late, is stale.

Applied in any order, every permutation of a key's events therefore ends in
the state the in-order application gives, and the sum of the changes made
(what was taken in minus what was taken out) equals the in-order sum.
`apply` below is the rule in plain Python (tests compare permutations with
it); the projections' SQL (services/ranking/store/projection.py,
services/reputation/store/projection.py) does the same for a whole batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent

VoteKey = tuple[str, str, str]  # (agent_id, item_type, item_id)

# The digest of a set of live votes (table alias `v`: item_type, item_id,
# direction), as the vote service and a projection both compute it for the
# reconciliation (VoteLedgerService.CheckAgentVotes): md5 of
# "item_type/item_id/direction" in (item_type, item_id) byte order, joined
# with ","; '' for none.
LIVE_VOTES_DIGEST_SQL = (
    "coalesce(md5(string_agg(v.item_type || '/' || v.item_id || '/' || v.direction, ','"
    ' ORDER BY v.item_type COLLATE "C", v.item_id COLLATE "C")), \'\')'
)


def vote_key(event: VoteEvent) -> VoteKey:
    return (event.agent_id, event.item_type, event.item_id)


def newest_per_key(events: Iterable[VoteEvent]) -> dict[VoteKey, VoteEvent]:
    """Per (agent, item), the batch's event with the highest id: the only one
    of the batch that can stand (the others are older than it)."""
    newest: dict[VoteKey, VoteEvent] = {}
    for event in events:
        key = vote_key(event)
        held = newest.get(key)
        if held is None or event.event_id > held.event_id:
            newest[key] = event
    return newest


def is_newer(event_id: int, live_event_id: int | None, tombstone_event_id: int | None) -> bool:
    """Whether an event with this id stands against what is held for its key:
    the projected vote's event id and the tombstone's (None when absent)."""
    return event_id > max(live_event_id or 0, tombstone_event_id or 0)


@dataclass(frozen=True, slots=True)
class Held:
    """What a projection holds for one (agent, item): a live vote, or a tombstone."""

    event_id: int
    vote: VoteEvent | None  # None: a tombstone (the last event applied was a retraction)


@dataclass(frozen=True, slots=True)
class Change:
    """What applying one event did: the vote taken out and the vote taken in."""

    removed: VoteEvent | None = None
    added: VoteEvent | None = None


def apply(state: dict[VoteKey, Held], event: VoteEvent) -> Change:
    """Applies one event to an in-memory projection; returns what changed
    (nothing for a stale event)."""
    key = vote_key(event)
    held = state.get(key)
    live = held.event_id if held is not None and held.vote is not None else None
    tombstone = held.event_id if held is not None and held.vote is None else None
    if not is_newer(event.event_id, live, tombstone):
        return Change()
    removed = held.vote if held is not None else None
    if event.type == "vote":
        state[key] = Held(event.event_id, event)
        return Change(removed, event)
    state[key] = Held(event.event_id, None)
    return Change(removed, None)
