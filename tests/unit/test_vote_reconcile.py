"""What the reconcilers of projected votes share (services/common/vote_reconcile.py):
the sweep's cursor and the comparison of an agent's projected votes with the table's."""

from __future__ import annotations

from aimusicstore.vote.v1.vote_ledger_service_pb2 import LiveVote
from services.common.vote_reconcile import MAX_AGENTS_PER_CHECK, next_after, page_size_for_check, vote_drift


def live(item_id: str, direction: int, item_type: str = "song") -> LiveVote:
    return LiveVote(item_type=item_type, item_id=item_id, direction=direction, voted_at="2026-12-01T12:00:00+00:00")


def test_drift_lists_ghosts_rewrites_and_missing_votes_in_key_order() -> None:
    projected = {("song", "b"): 1, ("song", "a"): 1, ("tool", "t"): -1, ("song", "same"): -1}
    table = [live("same", -1), live("t", 1, "tool"), live("z", -1), live("c", 1)]
    drift = vote_drift(projected, table)
    assert drift.ghosts == [("song", "a"), ("song", "b")]
    assert [(v.item_type, v.item_id, v.direction) for v in drift.rewrites] == [("tool", "t", 1)]
    assert [(v.item_type, v.item_id, v.direction) for v in drift.missing] == [("song", "c", 1), ("song", "z", -1)]
    assert drift


def test_no_drift_when_the_projection_equals_the_table() -> None:
    assert not vote_drift({("song", "a"): 1}, [live("a", 1)])
    assert not vote_drift({}, [])


def test_the_sweep_resumes_after_a_full_page_and_starts_over_after_a_short_one() -> None:
    assert next_after(["a", "b", "c"], 3) == "c"
    assert next_after(["a", "b"], 3) == ""
    assert next_after([], 3) == ""
    assert page_size_for_check(5000) == MAX_AGENTS_PER_CHECK
    assert page_size_for_check(7) == 7
