"""Typed exceptions for every failure the service answers.

Each gRPC status becomes one class under `AimusicstoreError`, carrying what
the service sent with it: the message (a sentence a person can act on), the
field at fault (`InvalidArgument`, from the google.rpc.BadRequest detail in
`grpc-status-details-bin`), and when a retry can succeed (`retry_after`, from
the `retry-after` metadata the gateway and the services send).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import grpc
from google.rpc import error_details_pb2, status_pb2

__all__ = [
    "AimusicstoreError",
    "AlreadyExists",
    "AlreadyVoted",
    "DeadlineExceeded",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "QuotaExceeded",
    "RateLimited",
    "ServiceError",
    "Unauthenticated",
    "Unavailable",
    "from_rpc_error",
]

Metadata = Iterable[tuple[str, str | bytes]]


class AimusicstoreError(Exception):
    """Base of every error the client raises for an answer of the service.

    `code` is the gRPC status, `message` the service's own sentence,
    `retry_after` the seconds the service asked to wait (None when it did
    not say)."""

    def __init__(self, message: str, code: grpc.StatusCode, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.message} ({self.code.name})"


class InvalidArgument(AimusicstoreError):
    """The request is malformed: fix `field` (None when the gateway refused
    the request before a service read it, e.g. a body too large)."""

    def __init__(self, message: str, code: grpc.StatusCode, retry_after: float | None = None) -> None:
        super().__init__(message, code, retry_after)
        self.field: str | None = None
        self.description: str = message
        # Every (field, description) the service named, in its order.
        self.violations: list[tuple[str, str]] = []


class Unauthenticated(AimusicstoreError):
    """No API key, or one that is not (or no longer) valid: register, or use
    the key that rotate_key returned."""


class PermissionDenied(AimusicstoreError):
    """The key is valid but may not do this (an admin-only call, another
    agent's key rotation, an agent_id that is not the key's)."""


class NotFound(AimusicstoreError):
    """The song, tool, agent or vote named does not exist."""


class AlreadyExists(AimusicstoreError):
    """The id is taken (an agent, song or tool created with an id in use)."""


class AlreadyVoted(AlreadyExists):
    """This agent has voted on this item before. To change a vote, retract
    it and vote again."""


class QuotaExceeded(AimusicstoreError):
    """The agent's daily quota (votes, or song submissions) is used up.
    `resets_at` (UTC) is when it starts again; retrying earlier is useless."""

    def __init__(
        self, message: str, code: grpc.StatusCode, retry_after: float | None = None, resets_at: datetime | None = None
    ) -> None:
        super().__init__(message, code, retry_after)
        self.resets_at = resets_at


class RateLimited(AimusicstoreError):
    """Too many requests from this address: wait `retry_after` seconds.
    The client retries these itself while `retry_after` is within its
    RetryPolicy.max_retry_after_s."""


class Unavailable(AimusicstoreError):
    """The service is down, restarting or at capacity: retry later (the
    client already retried with backoff before raising this)."""


class DeadlineExceeded(AimusicstoreError):
    """No answer within the call's deadline. For a write, the outcome is
    unknown: votes and retractions are safe to repeat, other writes are not."""


class OutOfRange(AimusicstoreError):
    """A position is past what the service keeps (a feed resumed from an
    event it no longer holds)."""


class ServiceError(AimusicstoreError):
    """Any other status (INTERNAL, UNIMPLEMENTED...): the message quotes a
    request id to report."""


_BY_CODE: dict[grpc.StatusCode, type[AimusicstoreError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRange,
}

# "... quota of 100 for the free tier is used up; it resets at 2026-01-02T00:00:00Z (in 3h 12m)"
_RESETS_AT = re.compile(r"resets at (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")
# The gateway's own 429: "too many requests: the limit is ...; retry in 20 s"
_RETRY_IN = re.compile(r"retry in (\d+(?:\.\d+)?) ?s\b")


def _retry_after(metadata: Metadata) -> float | None:
    for key, value in metadata:
        if key.lower() == "retry-after":
            text = value.decode() if isinstance(value, bytes) else value
            try:
                return max(0.0, float(text))
            except ValueError:
                return None  # an HTTP date: not sent by this service
    return None


def _bad_request(metadata: Metadata) -> list[tuple[str, str]]:
    for key, value in metadata:
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status()
            try:
                status.ParseFromString(value)
            except Exception:  # noqa: BLE001 - a detail we cannot read is no detail
                return []
            violations = []
            for detail in status.details:
                if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    detail.Unpack(bad)
                    violations += [(v.field, v.description) for v in bad.field_violations]
            return violations
    return []


def _unwrap(message: str) -> str:
    """The sentence itself when the gateway sent its JSON error body as the
    gRPC message (its own replies: a service down, a body too large)."""
    if message.startswith("{") and message.endswith("}"):
        try:
            body = json.loads(message)
        except ValueError:
            return message
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            sentence: str = body["message"]
            return sentence
    return message


def make_error(
    code: grpc.StatusCode, message: str, metadata: Metadata = (), *, now: datetime | None = None
) -> AimusicstoreError:
    """The typed exception for a status, its message and its metadata
    (initial and trailing, as the gateway may put retry-after in either)."""
    metadata = list(metadata)
    message = _unwrap(message)
    retry_after = _retry_after(metadata)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        resets = _RESETS_AT.search(message)
        if resets or "quota" in message:
            resets_at = None
            if resets:
                resets_at = datetime.strptime(resets.group(1), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            elif retry_after is not None:
                resets_at = (now or datetime.now(UTC)) + timedelta(seconds=retry_after)
            return QuotaExceeded(message, code, retry_after, resets_at)
        if retry_after is None and (retry_in := _RETRY_IN.search(message)):
            retry_after = float(retry_in.group(1))
        return RateLimited(message, code, retry_after)
    if code == grpc.StatusCode.ALREADY_EXISTS and message.strip().lower().startswith("already voted"):
        return AlreadyVoted(message, code, retry_after)
    error = _BY_CODE.get(code, ServiceError)(message, code, retry_after)
    if isinstance(error, InvalidArgument):
        error.violations = _bad_request(metadata)
        if error.violations:
            error.field, error.description = error.violations[0]
    return error


def from_rpc_error(rpc_error: grpc.RpcError) -> AimusicstoreError:
    """The typed exception for a failed call (a grpc.Call that raised)."""
    call = rpc_error if isinstance(rpc_error, grpc.Call) else None
    if call is None:
        return ServiceError(str(rpc_error), grpc.StatusCode.UNKNOWN)
    metadata = [*(call.initial_metadata() or ()), *(call.trailing_metadata() or ())]
    return make_error(call.code(), call.details() or "", metadata)


def from_aio_error(rpc_error: grpc.aio.AioRpcError) -> AimusicstoreError:
    metadata = [*(rpc_error.initial_metadata() or ()), *(rpc_error.trailing_metadata() or ())]
    return make_error(rpc_error.code(), rpc_error.details() or "", metadata)
