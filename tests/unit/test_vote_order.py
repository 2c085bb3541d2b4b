"""Which vote event stands for an (agent, item) (services/common/vote_order.py):
applied in any order, a key's events end in the in-order state, and the
changes they made add up to the in-order ones."""

from __future__ import annotations

import itertools
from collections import Counter

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.common.vote_order import Change, Held, VoteKey, apply, is_newer, newest_per_key

KEY: VoteKey = ("a", "song", "s1")


def event(event_id: int, kind: str, direction: int = 1, agent: str = "a") -> VoteEvent:
    return VoteEvent(event_id=event_id, type=kind, agent_id=agent, item_type="song", item_id="s1", direction=direction)


def run(events: list[VoteEvent]) -> tuple[dict[VoteKey, Held], Counter[tuple[int, int]]]:
    """The final state, and the net change: per (event id, direction) of a
    vote, how many times it was taken in minus taken out."""
    state: dict[VoteKey, Held] = {}
    net: Counter[tuple[int, int]] = Counter()
    for e in events:
        change = apply(state, e)
        if change.removed is not None:
            net[(change.removed.event_id, change.removed.direction)] -= 1
        if change.added is not None:
            net[(change.added.event_id, change.added.direction)] += 1
    return state, Counter({k: n for k, n in net.items() if n})


def test_an_event_stands_only_if_newer_than_the_vote_and_the_tombstone() -> None:
    assert is_newer(5, None, None)
    assert is_newer(5, 4, None) and is_newer(5, None, 4)
    assert not is_newer(5, 5, None) and not is_newer(5, None, 5)
    assert not is_newer(5, 7, None) and not is_newer(5, None, 9)


def test_a_retraction_before_its_vote_leaves_no_ghost() -> None:
    state, net = run([event(2, "retract"), event(1, "vote")])
    assert state == {KEY: Held(2, None)}  # a tombstone, no live vote
    assert net == Counter()


def test_a_late_old_vote_never_overwrites_a_newer_re_vote() -> None:
    state, net = run([event(1, "vote", 1), event(3, "vote", -1), event(2, "retract", 1)])
    vote = state[KEY].vote
    assert vote is not None and vote.event_id == 3
    assert net == Counter({(3, -1): 1})


def test_a_re_vote_before_the_retraction_replaces_the_old_vote() -> None:
    state: dict[VoteKey, Held] = {}
    first, revote = event(1, "vote", 1), event(3, "vote", -1)
    assert apply(state, first) == Change(None, first)
    assert apply(state, revote) == Change(first, revote)  # the old vote's share is taken back
    assert apply(state, event(2, "retract", 1)) == Change()  # stale
    assert apply(state, first) == Change()  # redelivered


def test_every_order_ends_as_the_in_order_application() -> None:
    history = [
        event(1, "vote", 1),
        event(2, "retract", 1),
        event(3, "vote", -1),
        event(4, "retract", -1),
        event(5, "vote", 1),
    ]
    for length in range(1, len(history) + 1):
        in_order = run(history[:length])
        for order in itertools.permutations(history[:length]):
            assert run(list(order)) == in_order, [e.event_id for e in order]
        # Events lost for good (trimmed before being read): what arrived
        # still ends as its own in-order application, in any order.
        for kept in itertools.combinations(history[:length], max(1, length - 2)):
            for order in itertools.permutations(kept):
                assert run(list(order)) == run(list(kept)), [e.event_id for e in order]


def test_the_batchs_newest_event_per_key_is_kept() -> None:
    events = [event(3, "vote"), event(1, "vote"), event(2, "retract"), event(7, "vote", agent="b")]
    newest = newest_per_key(events)
    assert {key: e.event_id for key, e in newest.items()} == {KEY: 3, ("b", "song", "s1"): 7}
