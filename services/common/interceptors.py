"""Server interceptor: request ids, logs, metrics and domain-error mapping.

Written once for every service. Domain code raises `DomainError`s; this turns
them into gRPC statuses (with google.rpc details in grpc-status-details-bin,
which the gateway renders as the JSON error body). Any other exception is
logged with its traceback and answered INTERNAL with only the request id, so
no exception text ever reaches a client.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import grpc
from google.protobuf.message import DecodeError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from services.common.errors import DomainError, InvalidArgument, ResourceExhausted, Unavailable
from services.common.grpc_types import Context
from services.common.logs import request_id_var
from services.common.metrics import RpcMetrics

log = logging.getLogger("rpc")

_REQUEST_ID_KEY = "x-request-id"

# A database or Redis outage is the client's cue to retry, not a server bug.
_DEPENDENCY_DOWN = (OperationalError, InterfaceError, PoolTimeoutError, RedisConnectionError, RedisTimeoutError)


def _request_id(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == _REQUEST_ID_KEY and isinstance(value, str) and 0 < len(value) <= 128:
            return value
    return uuid.uuid4().hex


async def _abort_for(exc: BaseException, method: str, context: Context) -> None:
    if isinstance(exc, DomainError):
        status = exc.to_status()
        metadata: tuple[tuple[str, str | bytes], ...] = (("grpc-status-details-bin", status.SerializeToString()),)
        if isinstance(exc, ResourceExhausted | Unavailable) and exc.retry_after_s is not None:
            metadata += (("retry-after", str(exc.retry_after_s)),)
        await context.abort(exc.code, exc.message, trailing_metadata=metadata)
    if isinstance(exc, NotImplementedError):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented yet")
    if isinstance(exc, _DEPENDENCY_DOWN):
        log.warning("dependency unavailable in %s: %s", method, type(exc).__name__)
        await context.abort(grpc.StatusCode.UNAVAILABLE, "storage is temporarily unavailable; retry shortly")
    log.exception("unhandled error in %s", method, exc_info=exc)
    await context.abort(
        grpc.StatusCode.INTERNAL,
        f"Internal error; quote request id {request_id_var.get()} when reporting it.",
    )


class _Undecodable:
    """Stands in for a request whose bytes are not a valid message, so the
    handler can answer INVALID_ARGUMENT. (A deserializer that raises makes
    grpc answer UNKNOWN, a 500 through the gateway, quoting the exception.)"""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as exc:
            return _Undecodable(str(exc))

    return deserialize


def _undecodable_message(request: _Undecodable) -> str:
    # The transcoder passes path and query values through as they came, so
    # bytes that are not UTF-8 reach the service as a string field.
    if "UTF-8" in request.reason:
        return "a text value (in the path, query or body) is not valid UTF-8"
    if "Depth" in request.reason or "deep" in request.reason:
        return "the request nests values too deeply"
    return "the request is not a valid message"


def _code_for(exc: BaseException) -> grpc.StatusCode:
    if isinstance(exc, DomainError):
        return exc.code
    if isinstance(exc, NotImplementedError):
        return grpc.StatusCode.UNIMPLEMENTED
    if isinstance(exc, _DEPENDENCY_DOWN):
        return grpc.StatusCode.UNAVAILABLE
    return grpc.StatusCode.INTERNAL


def _finish(method: str, metrics: RpcMetrics, started: float, code: grpc.StatusCode) -> None:
    elapsed = time.perf_counter() - started
    metrics.finished(code.name, elapsed)
    if code is not grpc.StatusCode.OK:
        log.info("rpc finished", extra={"method": method, "code": code.name, "ms": round(elapsed * 1000, 2)})


class ServerInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self) -> None:
        # One wrapped handler per registered method, built on its first call:
        # wrapping per call cost a handler object and two closures per RPC.
        self._handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = details.method
        wrapped = self._handlers.get(method)
        if wrapped is None:
            handler = await continuation(details)
            if handler is None:  # an unknown method: not cached, so the dict stays bounded
                return handler
            wrapped = self._handlers[method] = _wrap(method, handler)
        return wrapped


# grpc.aio keeps coroutine functions in the handlers' slots, where the stubs
# (typed for the synchronous server) say plain callables.
AsyncUnary = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
AsyncStream = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]


def _wrap(method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    # Health and reflection are grpc's own, well-behaved handlers.
    if method.startswith("/grpc."):
        return handler
    if handler.unary_unary:
        return _wrap_unary(method, handler)
    if handler.unary_stream:
        return _wrap_server_stream(method, handler)
    if handler.stream_stream:
        return _wrap_bidi_stream(method, handler)
    return handler


def _wrap_unary(method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    inner = cast(AsyncUnary, handler.unary_unary)
    metrics = RpcMetrics(method, "unary")

    async def unary_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        request_id_var.set(_request_id(context.invocation_metadata()))
        metrics.started()
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            if isinstance(request, _Undecodable):
                raise InvalidArgument("request", _undecodable_message(request))
            return await inner(request, context)
        except grpc.aio.AbortError:
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        except Exception as exc:  # noqa: BLE001 - mapped below, never leaked
            code = _code_for(exc)
            await _abort_for(exc, method, context)
        finally:
            _finish(method, metrics, started, code)

    return grpc.unary_unary_rpc_method_handler(
        unary_unary,
        request_deserializer=_tolerant(handler.request_deserializer),
        response_serializer=handler.response_serializer,
    )


def _wrap_server_stream(method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    inner = cast(AsyncStream, handler.unary_stream)
    metrics = RpcMetrics(method, "server_stream")

    async def unary_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        request_id_var.set(_request_id(context.invocation_metadata()))
        metrics.started()
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            if isinstance(request, _Undecodable):
                raise InvalidArgument("request", _undecodable_message(request))
            async for item in inner(request, context):
                yield item
        except grpc.aio.AbortError:
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        except Exception as exc:  # noqa: BLE001 - mapped below, never leaked
            code = _code_for(exc)
            await _abort_for(exc, method, context)
        finally:
            _finish(method, metrics, started, code)

    return grpc.unary_stream_rpc_method_handler(
        unary_stream,
        request_deserializer=_tolerant(handler.request_deserializer),
        response_serializer=handler.response_serializer,
    )


async def _decoded(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, _Undecodable):
            raise InvalidArgument("request", _undecodable_message(request))
        yield request


def _wrap_bidi_stream(method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    inner = cast(AsyncStream, handler.stream_stream)
    metrics = RpcMetrics(method, "bidi_stream")

    async def stream_stream(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        request_id_var.set(_request_id(context.invocation_metadata()))
        metrics.started()
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            async for item in inner(_decoded(requests), context):
                yield item
        except grpc.aio.AbortError:
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        except Exception as exc:  # noqa: BLE001 - mapped below, never leaked
            code = _code_for(exc)
            await _abort_for(exc, method, context)
        finally:
            _finish(method, metrics, started, code)

    return grpc.stream_stream_rpc_method_handler(
        stream_stream,
        request_deserializer=_tolerant(handler.request_deserializer),
        response_serializer=handler.response_serializer,
    )


class DeadlineClientInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Gives every internal call a deadline, forwards the request id, and
    presents the service credential.

    Installed on every internal channel, so no call can wait forever even if
    its caller forgot a timeout.
    """

    def __init__(self, default_timeout_s: float, service_credential: tuple[str, str] | None = None) -> None:
        self.default_timeout_s = default_timeout_s
        # (metadata key, value) every internal call carries (auth.service_credential).
        self.service_credential = service_credential

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[grpc.aio.UnaryUnaryCall[Any, Any]]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        timeout = client_call_details.timeout
        if timeout is None or timeout > self.default_timeout_s:
            timeout = self.default_timeout_s
        metadata = list(client_call_details.metadata or [])
        request_id = request_id_var.get()
        if request_id:
            metadata.append((_REQUEST_ID_KEY, request_id))
        if self.service_credential is not None:
            metadata.append(self.service_credential)
        details = grpc.aio.ClientCallDetails(
            method=client_call_details.method,
            timeout=timeout,
            metadata=grpc.aio.Metadata(*metadata),
            credentials=client_call_details.credentials,
            wait_for_ready=client_call_details.wait_for_ready,
        )
        return await continuation(details, request)
