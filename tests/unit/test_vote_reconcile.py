"""What the reconcilers of projected votes share (services/common/vote_reconcile.py):
the sweep's cursor and the comparison of an agent's projected votes with the table's."""

from __future__ import annotations

import grpc

from aimusicstore.vote.v1.vote_ledger_service_pb2 import LiveVote
from services.common.vote_reconcile import (
    MAX_AGENTS_PER_CHECK,
    PageSize,
    next_after,
    page_size_for_check,
    vote_drift,
)


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


class _RpcError(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata())


def test_a_page_that_ran_out_of_time_is_halved_and_grows_back_slowly() -> None:
    pages = PageSize(200)
    assert pages.size == 200
    for expected in (100, 50, 25):
        assert pages.timed_out(_RpcError(grpc.StatusCode.DEADLINE_EXCEEDED))
        assert pages.size == expected
    # Another failure (the vote service away) says nothing about the size.
    assert not pages.timed_out(_RpcError(grpc.StatusCode.UNAVAILABLE))
    assert pages.size == 25
    for expected in (31, 38, 47, 58, 72, 90, 112, 140, 175, 200, 200):
        pages.succeeded()
        assert pages.size == expected
    tiny = PageSize(1)
    tiny.timed_out(_RpcError(grpc.StatusCode.DEADLINE_EXCEEDED))
    assert tiny.size == 1
    assert PageSize(5000).size == 1000  # the vote service's limit per call
