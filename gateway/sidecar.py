"""The gateway's sidecar: what Envoy cannot do by itself.

- gRPC health through the gateway port: `grpc.health.v1.Health/Check`
  naming any public service is answered with that service's real state,
  asked of the backend that serves it (with a deadline); the empty name
  means "every public service".
- Server reflection listing every public service, so `grpcurl
  -plaintext localhost:8080 list` works through the gateway.
- `GET /health` (HTTP): 200 {"status": "healthy", ...} or 503
  {"status": "unhealthy", "down": [...], ...} naming what is down.
- The browser pages: the live charts page at `/`, the interactive API docs
  at `/docs` and their assets (gateway/pages.py), and the live feed as
  Server-Sent Events for `GET /api/v1/events` with `Accept:
  text/event-stream` (gateway/sse.py).

Run: `python -m gateway.sidecar` (reads GatewaySettings from the environment).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from typing import Any

import grpc
import uvloop
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

# Imported for their descriptors: reflection serves them.
from aimusicstore.ranking.v1 import catalog_service_pb2, ranking_service_pb2  # noqa: F401
from aimusicstore.reputation.v1 import agent_service_pb2  # noqa: F401
from aimusicstore.vote.v1 import vote_service_pb2  # noqa: F401
from gateway import descriptors, pages
from gateway.sse import LiveFeed
from services.common import logs
from services.common.channels import peer_channel
from services.common.config import GatewaySettings
from services.common.server import METADATA_OPTIONS

log = logging.getLogger("sidecar")

# Service full name -> the backend that serves it (those the gateway routes).
PUBLIC_SERVICES = descriptors.load().public_services()

# Typed here: protobuf ships no type stubs, so the generated enums are Any.
SERVING: int = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING: int = health_pb2.HealthCheckResponse.NOT_SERVING
_STATUS_NAME = health_pb2.HealthCheckResponse.ServingStatus.Name


class BackendHealth:
    """Asks each backend's own health service, with a deadline. A backend run
    as several processes (comma-separated targets) serves only if each does."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.deadline_s = settings.health_deadline_s
        self.channels = {
            name: [peer_channel(t.strip()) for t in targets.split(",") if t.strip()]
            for name, targets in settings.targets().items()
        }
        self.stubs = {name: [health_pb2_grpc.HealthStub(ch) for ch in chs] for name, chs in self.channels.items()}

    async def check(self, backend: str, service: str = "") -> int:
        statuses = await asyncio.gather(*(self._check_one(stub, service) for stub in self.stubs[backend]))
        return SERVING if all(status == SERVING for status in statuses) else NOT_SERVING

    async def _check_one(self, stub: health_pb2_grpc.HealthStub, service: str) -> int:
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=self.deadline_s)
            return int(reply.status)
        except grpc.aio.AioRpcError:
            return NOT_SERVING

    async def check_all(self) -> dict[str, int]:
        names = list(self.stubs)
        results = await asyncio.gather(*(self.check(n) for n in names))
        return dict(zip(names, results, strict=True))

    async def close(self) -> None:
        for channels in self.channels.values():
            for channel in channels:
                await channel.close()


# The generated servicer base has no type stubs (it is Any to the type
# checker); it is kept as the base for the methods not overridden here (List).
class AggregatedHealthServicer(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    def __init__(self, backends: BackendHealth) -> None:
        self.backends = backends

    async def Check(
        self,
        request: health_pb2.HealthCheckRequest,
        context: grpc.aio.ServicerContext[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse],
    ) -> health_pb2.HealthCheckResponse:
        if request.service == "":
            statuses = await self.backends.check_all()
            overall = SERVING if all(s == SERVING for s in statuses.values()) else NOT_SERVING
            return health_pb2.HealthCheckResponse(status=overall)
        backend = PUBLIC_SERVICES.get(request.service)
        if backend is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
            raise AssertionError("abort raises")  # for the type checker
        return health_pb2.HealthCheckResponse(status=await self.backends.check(backend, request.service))

    async def Watch(
        self,
        request: health_pb2.HealthCheckRequest,
        context: grpc.aio.ServicerContext[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse],
    ) -> None:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Watch is not offered through the gateway; poll Check")


def http_app(backends: BackendHealth, feed: LiveFeed | None = None) -> web.Application:
    async def health(_: web.Request) -> web.Response:
        statuses = await backends.check_all()
        down = sorted(name for name, status in statuses.items() if status != SERVING)
        body: dict[str, Any] = {
            "status": "unhealthy" if down else "healthy",
            "services": {name: _STATUS_NAME(status) for name, status in sorted(statuses.items())},
        }
        if down:
            body["down"] = down
            body["message"] = f"not serving: {', '.join(down)}"
        return web.Response(status=503 if down else 200, text=json.dumps(body), content_type="application/json")

    app = web.Application()
    app.router.add_get("/health", health)
    pages.add_routes(app)
    if feed is not None:
        app.router.add_get("/api/v1/events", feed.handle)
    return app


async def serve(settings: GatewaySettings) -> None:
    backends = BackendHealth(settings)
    server = grpc.aio.server(options=METADATA_OPTIONS)
    health_pb2_grpc.add_HealthServicer_to_server(AggregatedHealthServicer(backends), server)
    reflection.enable_server_reflection([*PUBLIC_SERVICES, "grpc.health.v1.Health", reflection.SERVICE_NAME], server)
    server.add_insecure_port(f"{settings.sidecar_host}:{settings.sidecar_grpc_port}")
    await server.start()

    feed = LiveFeed(settings)
    # A handler is cancelled when its client goes away: a browser's event
    # stream ends its WatchVotes call at once instead of at its next write.
    runner = web.AppRunner(http_app(backends, feed), access_log=None, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, settings.sidecar_host, settings.sidecar_http_port).start()
    log.info(
        "sidecar listening", extra={"grpc_port": settings.sidecar_grpc_port, "http_port": settings.sidecar_http_port}
    )

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await feed.close()
    await runner.cleanup()
    await server.stop(2)
    await backends.close()


def main() -> None:
    logs.configure("gateway-sidecar")
    uvloop.run(serve(GatewaySettings.from_env()))


if __name__ == "__main__":
    main()
