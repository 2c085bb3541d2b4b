"""The client's retry policy and error mapping: pure logic, no server."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from aimusicstore_client.errors import (
    AlreadyExists,
    AlreadyVoted,
    InvalidArgument,
    NotFound,
    OutOfRange,
    QuotaExceeded,
    RateLimited,
    Unavailable,
    make_error,
)
from aimusicstore_client.retry import RetryPolicy, RetryState, Safety
from aimusicstore_client.watch import FeedGap, WatchState

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


def unavailable(retry_after: float | None = None) -> Unavailable:
    return Unavailable("a backend service is unavailable; retry shortly", UNAVAILABLE, retry_after)


def test_backoff_grows_exponentially_is_capped_and_jittered_below_the_base() -> None:
    policy = RetryPolicy(initial_backoff_s=0.5, multiplier=2, max_backoff_s=3, jitter=0.5)
    rng = random.Random(7)  # noqa: S311 - jitter, not a secret
    for retry, base in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (9, 3.0)]:
        waits = [policy.backoff(retry, rng=rng) for _ in range(200)]
        assert all(base * 0.5 <= w <= base for w in waits)
        assert max(waits) - min(waits) > base * 0.3  # really jittered


def test_retry_after_is_a_floor_with_a_little_jitter_above_it() -> None:
    policy = RetryPolicy(initial_backoff_s=0.1)
    waits = [policy.backoff(1, retry_after_s=2.0) for _ in range(100)]
    assert all(2.0 <= w <= 2.2 for w in waits)


def test_reads_retry_transient_failures_up_to_max_attempts() -> None:
    state = RetryState(RetryPolicy(max_attempts=3), Safety.READ)
    assert state.next_wait(unavailable()) is not None
    assert state.next_wait(make_error(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline")) is not None
    assert state.next_wait(unavailable()) is None  # third attempt was the last
    assert state.attempts == 3


@pytest.mark.parametrize(
    "error",
    [
        make_error(grpc.StatusCode.INVALID_ARGUMENT, "vote: must be 'up' or 'down'"),
        make_error(grpc.StatusCode.NOT_FOUND, "song 'x' not found"),
        make_error(grpc.StatusCode.UNAUTHENTICATED, "no key"),
        make_error(grpc.StatusCode.INTERNAL, "Internal error; quote request id 1"),
    ],
)
def test_failures_a_repeat_cannot_fix_are_not_retried(error: Exception) -> None:
    assert RetryState(RetryPolicy(), Safety.READ).next_wait(error) is None  # type: ignore[arg-type]


def test_a_quota_or_a_long_retry_after_is_not_waited_out() -> None:
    quota = make_error(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "daily vote quota of 100 for the free tier is used up; it resets at 2030-01-02T00:00:00Z (in 3h 0m)",
        [("retry-after", "10800")],
    )
    assert isinstance(quota, QuotaExceeded)
    assert RetryState(RetryPolicy(), Safety.VOTE).next_wait(quota) is None
    long_limit = make_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many requests", [("retry-after", "60")])
    assert RetryState(RetryPolicy(max_retry_after_s=30), Safety.READ).next_wait(long_limit) is None
    short_limit = make_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many requests", [("retry-after", "3")])
    wait = RetryState(RetryPolicy(max_retry_after_s=30), Safety.READ).next_wait(short_limit)
    assert wait is not None and wait >= 3


def test_unsafe_writes_are_retried_only_when_the_gateway_refused_them() -> None:
    # Register or rotate key: a repeat after an unknown outcome could lose the key.
    assert RetryState(RetryPolicy(), Safety.NONE).next_wait(unavailable()) is None
    assert RetryState(RetryPolicy(), Safety.NONE).next_wait(make_error(grpc.StatusCode.DEADLINE_EXCEEDED, "")) is None
    # The overload refusal (503 + retry-after) and a rate limit never reached a service.
    assert RetryState(RetryPolicy(), Safety.NONE).next_wait(unavailable(retry_after=1)) is not None
    limited = make_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many requests: ...; retry in 2 s")
    assert RetryState(RetryPolicy(), Safety.NONE).next_wait(limited) is not None


def test_already_voted_after_an_ambiguous_failure_means_the_first_attempt_was_recorded() -> None:
    already = make_error(grpc.StatusCode.ALREADY_EXISTS, "Already voted")
    assert isinstance(already, AlreadyVoted)
    state = RetryState(RetryPolicy(), Safety.VOTE)
    assert state.next_wait(make_error(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")) is not None
    assert state.recorded_earlier(already)
    # Not on a first attempt, and not when the earlier failure surely did not reach the service.
    assert not RetryState(RetryPolicy(), Safety.VOTE).recorded_earlier(already)
    refused = RetryState(RetryPolicy(), Safety.VOTE)
    assert refused.next_wait(make_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many requests; retry in 1 s"))
    assert not refused.recorded_earlier(already)
    # A read never turns an error into a success.
    read = RetryState(RetryPolicy(), Safety.READ)
    read.next_wait(unavailable())
    assert not read.recorded_earlier(already)


def test_not_found_after_an_ambiguous_retract_means_it_was_retracted() -> None:
    state = RetryState(RetryPolicy(), Safety.RETRACT)
    state.next_wait(unavailable())
    assert state.recorded_earlier(make_error(grpc.StatusCode.NOT_FOUND, "you have no vote on song 'x'"))


def test_error_mapping_reads_the_field_retry_after_and_reset_time() -> None:
    status = status_pb2.Status(code=3, message="tempo: must be 20-400")
    detail = any_pb2.Any()
    detail.Pack(
        error_details_pb2.BadRequest(
            field_violations=[error_details_pb2.BadRequest.FieldViolation(field="tempo", description="must be 20-400")]
        )
    )
    status.details.append(detail)
    invalid = make_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        "tempo: must be 20-400",
        [("grpc-status-details-bin", status.SerializeToString())],
    )
    assert isinstance(invalid, InvalidArgument)
    assert (invalid.field, invalid.description) == ("tempo", "must be 20-400")

    quota = make_error(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "daily vote quota of 1 for the free tier is used up; it resets at 2030-01-02T00:00:00Z (in 1h 0m)",
        [("retry-after", "3601")],
    )
    assert isinstance(quota, QuotaExceeded)
    assert quota.resets_at == datetime(2030, 1, 2, tzinfo=UTC)
    assert quota.retry_after == 3601

    limited = make_error(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "too many requests: the limit is 3 registrations a minute per client address; retry in 20 s",
    )
    assert isinstance(limited, RateLimited) and limited.retry_after == 20

    taken = make_error(grpc.StatusCode.ALREADY_EXISTS, "song id 'x' is taken")
    assert isinstance(taken, AlreadyExists) and not isinstance(taken, AlreadyVoted)
    assert isinstance(make_error(grpc.StatusCode.NOT_FOUND, "no"), NotFound)


def test_watch_state_counts_resumes_and_reports_a_gap_after_out_of_range() -> None:
    seen: list[FeedGap] = []
    state = WatchState(on_gap=seen.append)
    assert state.after_event_id() == ""
    state.opened()
    state.saw("100-0")
    assert state.dropped(unavailable())
    assert state.after_event_id() == "100-0"
    state.opened()  # resumed after 100-0: nothing missed
    assert (state.resumed, state.missed, state.gaps) == (1, 0, [])
    state.saw("101-0")
    assert state.dropped(unavailable())
    state.opened()
    # The replay was refused: the feed no longer holds the events after 101-0.
    assert state.dropped(OutOfRange("cannot resume after event 101-0", grpc.StatusCode.OUT_OF_RANGE))
    assert state.resumed == 1
    assert state.after_event_id() == ""  # from now on
    state.opened()
    assert state.missed is None
    assert [(g.after_event_id, g.missed) for g in seen] == [("101-0", None)]
    assert state.gaps == seen


def test_watch_state_gives_up_on_errors_a_reconnect_cannot_fix() -> None:
    state = WatchState()
    state.opened()
    assert not state.dropped(make_error(grpc.StatusCode.INVALID_ARGUMENT, "item_type: must be song or tool"))
    # A drop before the first event: nothing to resume from, so a gap.
    state = WatchState()
    state.opened()
    assert state.dropped(unavailable())
    state.opened()
    assert len(state.gaps) == 1 and state.missed is None
