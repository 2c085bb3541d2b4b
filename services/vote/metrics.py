"""The vote service's domain metrics (the RPC metrics are in services/common/metrics.py)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from services.common.errors import (
    AlreadyExists,
    DomainError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from services.vote.voting import TooFast

# Every vote asked for ends in one outcome: "recorded", or the reason it was
# refused. A refusal is the service working as designed; a rising share of
# one reason is what an operator wants to see (a quota wall, a bot hitting
# duplicates, a client sending bad requests).
VOTES_CAST = Counter("votes_cast_total", "Votes asked for, by outcome (recorded, or why refused)", ["outcome"])
OUTCOMES = (
    "recorded",
    "already_voted",
    "quota_exceeded",
    "rate_limited",
    "invalid",
    "not_found",
    "unauthenticated",
    "forbidden",
    "unavailable",
    "error",
)
_BY_ERROR: tuple[tuple[type[DomainError], str], ...] = (
    (AlreadyExists, "already_voted"),
    (TooFast, "rate_limited"),
    (ResourceExhausted, "quota_exceeded"),
    (InvalidArgument, "invalid"),
    (NotFound, "not_found"),
    (Unauthenticated, "unauthenticated"),
    (PermissionDenied, "forbidden"),
    (Unavailable, "unavailable"),
)
# Children resolved once: .labels() hashes its arguments on every call.
_COUNTERS = {outcome: VOTES_CAST.labels(outcome) for outcome in OUTCOMES}


def outcome_of(error: BaseException | None) -> str:
    """The outcome label of a vote that ended with `error` (None: recorded)."""
    if error is None:
        return "recorded"
    for kind, outcome in _BY_ERROR:
        if isinstance(error, kind):
            return outcome
    return "error"


def count_vote(error: BaseException | None) -> None:
    _COUNTERS[outcome_of(error)].inc()


OUTBOX_UNRELAYED = Gauge(
    "vote_outbox_unrelayed",
    "Vote events committed and not yet published to the Redis stream (counted up to a cap)",
)
OUTBOX_OLDEST_UNRELAYED_SECONDS = Gauge(
    "vote_outbox_oldest_unrelayed_seconds", "Age of the oldest vote event waiting in the outbox (0 when none)"
)

# Coordinated-voting detection (ring_watch.py).
RINGS_FOUND = Counter("vote_rings_found_total", "Rings of coordinated voters found with members not yet flagged")
RING_MEMBERS_FLAGGED = Counter("vote_ring_members_flagged_total", "Agents flagged as members of a ring")
RING_PASS_CPU_SECONDS = Gauge(
    "vote_ring_pass_cpu_seconds", "CPU seconds the last coordinated-voting search took (in its worker thread)"
)
