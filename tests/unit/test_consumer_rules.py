"""The vote event consumer's decisions (services/common/consumer_rules.py),
without Redis: what is retried as a batch, when an event is parked and how,
how delays grow, when abandoned entries are claimed, how a batch lingers."""

from __future__ import annotations

import errno

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError

from services.common import consumer_rules as rules


def _db_error(kind: type[Exception]) -> Exception:
    return kind("INSERT ...", {}, Exception("from the driver"))


@pytest.mark.parametrize(
    "exc",
    [
        RedisConnectionError("gone"),
        RedisTimeoutError("slow"),
        _db_error(OperationalError),  # lost connection, deadlock, serialization failure
        _db_error(InterfaceError),
        ConnectionResetError(errno.ECONNRESET, "reset"),
        TimeoutError(),
    ],
)
def test_outages_retry_the_whole_batch_later(exc: Exception) -> None:
    assert rules.is_transient(exc)


@pytest.mark.parametrize("exc", [_db_error(IntegrityError), _db_error(DataError), ValueError("bad"), KeyError("x")])
def test_errors_that_would_recur_are_not_transient(exc: Exception) -> None:
    # Retried forever, these wedged the group: the event goes one by one, then to the dead letters.
    assert not rules.is_transient(exc)


def test_an_event_failing_alone_is_retried_with_growing_pauses_then_parked() -> None:
    assert rules.retry_alone_after_s(1) == pytest.approx(0.05)
    assert rules.retry_alone_after_s(2) == pytest.approx(0.1)
    assert rules.retry_alone_after_s(3) is None


def test_an_event_is_applied_alone_dead_letter_after_attempts_times() -> None:
    attempts = 1
    while rules.retry_alone_after_s(attempts) is not None:
        attempts += 1
    assert attempts == rules.DEAD_LETTER_AFTER_ATTEMPTS == 3


def test_a_parked_entry_keeps_its_id_reason_and_fields() -> None:
    record = rules.dead_letter_fields("1700000000000-3", {"event": '{"event_id": "7"}'}, "IntegrityError")
    assert record == {"entry_id": "1700000000000-3", "reason": "IntegrityError", "event": '{"event_id": "7"}'}
    assert rules.dead_letter_fields("1-0", None, rules.UNDECODABLE) == {"entry_id": "1-0", "reason": "undecodable"}


def test_the_reason_is_the_exception_class() -> None:
    assert rules.failure_reason(_db_error(IntegrityError)) == "IntegrityError"
    assert rules.failure_reason(ValueError("x")) == "ValueError"


def test_abandoned_entries_are_claimed_at_start_then_every_ten_seconds() -> None:
    claims = rules.ClaimSchedule()
    assert claims.due(1000.0)
    assert not claims.due(1000.1)
    assert not claims.due(1009.99)
    assert claims.due(1010.0)
    assert not claims.due(1019.0)
    assert claims.due(1025.0)  # a late check counts from when it ran
    assert not claims.due(1034.9)
    assert rules.CLAIM_IDLE_MS == 30_000


def test_a_fresh_schedule_claims_at_once() -> None:
    # The consumer starts a new schedule each time it starts over after an error.
    assert rules.ClaimSchedule().due(0.0)


def test_backoff_doubles_up_to_five_seconds() -> None:
    delays = [rules.FIRST_BACKOFF_S]
    for _ in range(8):
        delays.append(rules.next_backoff(delays[-1]))
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0])


def test_lingering_tops_up_the_batch_for_what_is_left_of_the_linger_time() -> None:
    assert rules.linger_read(collected=120, batch_size=500, left_s=0.15) == (380, 150)


def test_lingering_blocks_at_least_a_millisecond() -> None:
    # block=0 would mean "forever" to XREADGROUP.
    assert rules.linger_read(collected=1, batch_size=500, left_s=0.0004) == (499, 1)


@pytest.mark.parametrize(("collected", "left_s"), [(500, 0.2), (501, 0.2), (10, 0.0), (10, -0.01)])
def test_lingering_stops_when_the_batch_is_full_or_time_is_up(collected: int, left_s: float) -> None:
    assert rules.linger_read(collected, batch_size=500, left_s=left_s) is None
