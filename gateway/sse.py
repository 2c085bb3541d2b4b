"""The live feed for browsers: `GET /api/v1/events` as Server-Sent Events.

Envoy sends the sidecar the requests for /api/v1/events that accept
`text/event-stream` (gateway/envoy_config.py); the others stay NDJSON from
Envoy's transcoder. Each SSE stream is one VoteService.WatchVotes call:

- every event is `id: <event_id>` and `data: <JSON>` (the same object as an
  NDJSON line), with no `event:` name, so EventSource's `onmessage` gets it;
- the stream opens with a `retry:` hint, and a comment line every
  AIMUSICSTORE_SSE_KEEPALIVE_S keeps a quiet stream open through proxies;
- `Last-Event-ID` (EventSource sends it when it reconnects) or the
  `after_event_id` query parameter resumes: the vote service replays what
  followed that event. A malformed id (INVALID_ARGUMENT) or one older than
  the feed holds (OUT_OF_RANGE) is answered 400 with the API's JSON error,
  like a bad filter; the status comes before any event does;
- when the browser goes away the handler is cancelled (aiohttp's handler
  cancellation) and the gRPC call with it, so the vote service drops the
  watcher at once; at shutdown every stream is ended.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from typing import Any

import grpc
from aiohttp import web
from google.protobuf import json_format

from aimusicstore.vote.v1 import vote_service_pb2, vote_service_pb2_grpc
from services.common.channels import peer_channel
from services.common.config import GatewaySettings

log = logging.getLogger("sidecar.sse")

# What EventSource waits before reconnecting (ms), sent once per stream.
RETRY_MS = 2000
# How long a fresh call may take to fail before its answer is committed to
# 200: a refusal (bad filter, bad or too old Last-Event-ID) comes in the
# same frame as the call's headers, so this is only for the status to be
# delivered after them.
_REFUSAL_WAIT_S = 0.05
QUERY_PARAMETERS = ("item_type", "item_id", "after_event_id")

# gRPC status -> HTTP status, as Envoy's transcoder maps them.
_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def json_error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """The API's error shape: {"code": <gRPC code>, "message": ...}."""
    return web.Response(
        status=status,
        text=json.dumps({"code": code, "message": message}),
        content_type="application/json",
        headers=headers,
    )


def event_json(event: vote_service_pb2.WatchVotesResponse) -> str:
    """One event as the NDJSON feed prints it (proto field names, every field)."""
    body: dict[str, Any] = json_format.MessageToDict(
        event, always_print_fields_with_no_presence=True, preserving_proto_field_name=True
    )
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def sse_event(event: vote_service_pb2.WatchVotesResponse) -> bytes:
    # The JSON holds no newline (json.dumps escapes them): one data line.
    return f"id: {event.event_id}\ndata: {event_json(event)}\n\n".encode()


class LiveFeed:
    """The SSE endpoint: one WatchVotes call per browser stream."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.keepalive_s = settings.sse_keepalive_s
        self.max_streams = settings.max_sse_streams
        targets = [t.strip() for t in settings.vote_target.split(",") if t.strip()]
        self.channels = [
            peer_channel(t, options=[("grpc.keepalive_time_ms", 30_000), ("grpc.keepalive_timeout_ms", 5_000)])
            for t in targets
        ]
        self.stubs = [vote_service_pb2_grpc.VoteServiceStub(ch) for ch in self.channels]
        self._turn = itertools.count()
        self.streams: set[asyncio.Task[Any]] = set()

    def _stub(self) -> vote_service_pb2_grpc.VoteServiceStub:
        return self.stubs[next(self._turn) % len(self.stubs)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        unknown = sorted(set(request.query) - set(QUERY_PARAMETERS))
        if unknown:
            return json_error(400, 3, f"unknown query parameter {unknown[0]!r}; this feed takes {QUERY_PARAMETERS}")
        if len(self.streams) >= self.max_streams:
            return json_error(503, 14, "the live feed is at capacity; retry in a second", headers={"Retry-After": "1"})
        last_event_id = request.headers.get("Last-Event-ID", "").strip() or request.query.get("after_event_id", "")
        watch = vote_service_pb2.WatchVotesRequest(
            item_type=request.query.get("item_type", ""),
            item_id=request.query.get("item_id", ""),
            after_event_id=last_event_id,
        )
        task = asyncio.current_task()
        assert task is not None
        self.streams.add(task)
        call = self._stub().WatchVotes(watch)
        try:
            refusal = await self._refusal(call)
            if refusal is not None:
                return refusal
            return await self._stream(request, call)
        finally:
            call.cancel()
            self.streams.discard(task)

    async def _refusal(self, call: Any) -> web.Response | None:
        """The error answer if the call was refused at once; None once it streams."""
        try:
            await call.initial_metadata()
            code = await asyncio.wait_for(call.code(), _REFUSAL_WAIT_S)
        except TimeoutError:
            return None
        details = await call.details()
        if code == grpc.StatusCode.UNAVAILABLE:
            return json_error(503, code.value[0], "a backend service is unavailable; retry shortly")
        return json_error(_HTTP_STATUS.get(code, 500), code.value[0], details or code.name)

    async def _stream(self, request: web.Request, call: Any) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                # Proxies (nginx and the like) must pass each event on at once.
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        await response.write(f"retry: {RETRY_MS}\n: connected\n\n".encode())
        events = call.__aiter__()
        pending: asyncio.Task[Any] | None = None
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(events.__anext__())
                done, _ = await asyncio.wait({pending}, timeout=self.keepalive_s)
                if not done:
                    await response.write(b": keep-alive\n\n")
                    continue
                task, pending = pending, None
                try:
                    event = task.result()
                except StopAsyncIteration:
                    break
                except grpc.aio.AioRpcError as exc:
                    # Ended by the vote service (it fell too far behind,
                    # restarted...): say why; EventSource reconnects with
                    # Last-Event-ID after the retry delay.
                    error = {"code": exc.code().value[0], "message": exc.details() or exc.code().name}
                    await response.write(f"event: stream-error\ndata: {json.dumps(error)}\n\n".encode())
                    break
                await response.write(sse_event(event))
        finally:
            if pending is not None:
                pending.cancel()
        return response

    async def close(self) -> None:
        """Ends every stream (shutdown), then closes the channels."""
        for task in list(self.streams):
            task.cancel()
        for channel in self.channels:
            await channel.close()
