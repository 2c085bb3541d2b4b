"""Domain errors and their one mapping to gRPC status codes.

Domain code raises these; the server interceptor turns them into a status
with a message a person can act on (and, for bad input, a google.rpc.BadRequest
detail naming the field). Anything else becomes INTERNAL without its text.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2


class ConfigError(Exception):
    """A setting is missing or malformed; the process cannot start."""


class DomainError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_status(self) -> status_pb2.Status:
        return status_pb2.Status(code=self.code.value[0], message=self.message)


class InvalidArgument(DomainError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description

    def to_status(self) -> status_pb2.Status:
        status = super().to_status()
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=self.field, description=self.description)
                ]
            )
        )
        status.details.append(detail)
        return status


class Unauthenticated(DomainError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS


class ResourceExhausted(DomainError):
    """`retry_after_s`: when a retry can succeed, sent as `retry-after`
    metadata (through the gateway, the 429's Retry-After header)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class OutOfRange(DomainError):
    """A position the request names is past what is kept (a feed resumed
    from an event too long ago)."""

    code = grpc.StatusCode.OUT_OF_RANGE


class DeadlineExceeded(DomainError):
    """A call ran out of time (a stream left idle past its limit)."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unavailable(DomainError):
    """`retry_after_s`: when a retry can succeed (a service at capacity),
    sent as `retry-after` metadata (through the gateway, a Retry-After header)."""

    code = grpc.StatusCode.UNAVAILABLE

    def __init__(self, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
