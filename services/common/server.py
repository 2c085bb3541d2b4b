"""The one grpc.aio server bootstrap every service runs.

A service supplies a `setup` coroutine that registers its servicers and
names its background tasks; this module does the rest: settings, logs,
PostgreSQL and Redis clients, health (NOT_SERVING while either is
unreachable), reflection, interceptors, metrics and a graceful shutdown on
SIGTERM/SIGINT (health goes NOT_SERVING first so the gateway stops routing,
then in-flight calls get `shutdown_grace_s` to finish).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import grpc
import uvloop
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import logs, tracing
from services.common.breaker import CircuitBreaker
from services.common.config import SERVICE_SETTINGS, Settings
from services.common.db import create_engine
from services.common.errors import ConfigError
from services.common.healthcheck import LIVENESS_SERVICE
from services.common.interceptors import ServerInterceptor
from services.common.metrics import DEPENDENCY_UP, serve_metrics, time_gc_pauses, watch_loop_lag
from services.common.redis_client import (
    GuardedRedis,
    create_at_most_once_redis,
    create_hot_path_redis,
    create_redis,
)

log = logging.getLogger("server")

# How long a stopping service waits for each background job, and each
# client it closes, to end before it moves on without it.
STOP_TIMEOUT_S = 5.0

SERVING = health_pb2.HealthCheckResponse.SERVING

# Request headers Envoy lets through (max_request_headers_kb = 32, plus what
# it adds itself) must all fit grpc's metadata limits. Its defaults (8 KiB
# soft, refusing at random above it; 16 KiB hard) turned a request with a
# 9-16 KiB cookie into a RESOURCE_EXHAUSTED, a 429 telling the client to
# retry, with a message listing the header sizes. Past 32 KiB Envoy answers
# 431 itself.
METADATA_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_metadata_size", 48 * 1024),
    ("grpc.absolute_max_metadata_size", 64 * 1024),
]
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


SettingsT = TypeVar("SettingsT", bound=Settings)


@dataclass
class Resources(Generic[SettingsT]):
    # The service's own section of the settings (config.py) plus the shared one.
    settings: SettingsT
    engine: AsyncEngine
    redis: Redis
    # The same Redis, for commands that must never be sent twice (redis_client.py).
    redis_at_most_once: Redis
    # Open while Redis is hung or unreachable: hot paths skip it and take
    # their fallback at once (breaker.py). Fed by the health watcher.
    redis_breaker: CircuitBreaker = field(default_factory=lambda: CircuitBreaker("redis"))
    # The vote path's client: at most once, a short timeout, behind the breaker.
    redis_hot_path: GuardedRedis | None = None


@dataclass
class Registration:
    # Full names of the gRPC services registered (health and reflection list them).
    services: list[str]
    # Long-running coroutines (relays, consumers, jobs), cancelled on shutdown.
    background: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    # Cleanups run after the server stopped (close channels...).
    on_close: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


Setup = Callable[[grpc.aio.Server, Resources[Any]], Awaitable[Registration]]


async def _reachable(name: str, check: Callable[[], Awaitable[object]]) -> bool:
    try:
        async with asyncio.timeout(1.0):
            await check()
        DEPENDENCY_UP.labels(name).set(1)
        return True
    except Exception as exc:  # noqa: BLE001 - any failure means "not serving"
        DEPENDENCY_UP.labels(name).set(0)
        log.warning("dependency check failed: %s unreachable (%s)", name, type(exc).__name__)
        return False


async def _dependencies_ok(resources: Resources[Settings]) -> bool:
    async def postgres() -> None:
        async with resources.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    # Both are checked every time (not short-circuited), so each one's gauge
    # says its own state during an outage of the other.
    postgres_ok, redis_ok = await asyncio.gather(
        _reachable("postgres", postgres), _reachable("redis", resources.redis.ping)
    )
    if redis_ok:
        resources.redis_breaker.recovered()
    else:
        resources.redis_breaker.failed()
    return postgres_ok and redis_ok


async def _watch_health(
    resources: Resources[Settings], servicer: health.aio.HealthServicer, names: list[str], stopping: asyncio.Event
) -> None:
    last: int | None = None
    while not stopping.is_set():
        status = SERVING if await _dependencies_ok(resources) else NOT_SERVING
        if status == SERVING and last == NOT_SERVING:
            # Back from an outage: connections opened before it may be dead
            # (Redis restarted), and the at-most-once client cannot re-send a
            # command that fails on one. Drop the idle ones before serving.
            await resources.redis_at_most_once.connection_pool.disconnect(inuse_connections=False)
            if resources.redis_hot_path is not None:
                await resources.redis_hot_path.connection_pool.disconnect(inuse_connections=False)
        if status != last:
            for name in ["", *names]:
                await servicer.set(name, status)
            log.info("health is now %s", health_pb2.HealthCheckResponse.ServingStatus.Name(status))
            last = status
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), resources.settings.health_interval_s)


class RunningService:
    """One service's gRPC server, health, background jobs and clients:
    started by `serve` in its own process, or in-process by the service-level
    tests (tests/service/) on port 0."""

    def __init__(self, name: str, setup: Setup, settings: Settings) -> None:
        self.name, self.setup, self.settings = name, setup, settings
        self.port = 0
        self.stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, port: int | None = None) -> int:
        """Serves on `port` (default: the settings' port for this service; 0:
        any free port) and returns the port bound."""
        settings = self.settings
        breaker = CircuitBreaker("redis")
        self.resources = resources = Resources(
            settings=settings,
            engine=create_engine(settings),
            redis=create_redis(settings),
            redis_at_most_once=create_at_most_once_redis(settings),
            redis_breaker=breaker,
            redis_hot_path=create_hot_path_redis(settings, breaker),
        )
        tracing.instrument_engine(resources.engine)
        self.server = server = grpc.aio.server(
            interceptors=[ServerInterceptor()],
            options=[
                ("grpc.max_receive_message_length", settings.max_message_bytes),
                ("grpc.so_reuseport", 0),
                *METADATA_OPTIONS,
            ],
        )
        self.registration = registration = await self.setup(server, resources)
        self.health = health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            [*registration.services, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
        for service_name in ["", *registration.services]:
            await health_servicer.set(service_name, NOT_SERVING)

        wanted = getattr(settings, f"{self.name}_port") if port is None else port
        self.port = server.add_insecure_port(f"{settings.host}:{wanted}")
        await server.start()
        await health_servicer.set(LIVENESS_SERVICE, SERVING)
        self._tasks = [
            asyncio.create_task(_watch_health(resources, health_servicer, registration.services, self.stopping)),
            *[asyncio.create_task(job(), name=_job_name(job)) for job in registration.background],
        ]
        log.info(
            "%s service listening on %s:%d",
            self.name,
            settings.host,
            self.port,
            extra={"services": registration.services},
        )
        return self.port

    async def stop(self) -> None:
        """Health NOT_SERVING first (the gateway stops routing), then in-flight
        calls get the shutdown grace, then jobs and clients close."""
        self.stopping.set()
        log.info("shutting down: health NOT_SERVING, draining for up to %.1fs", self.settings.shutdown_grace_s)
        await self.health.enter_graceful_shutdown()
        await self.server.stop(self.settings.shutdown_grace_s)
        for task in self._tasks:
            task.cancel()
        # Bounded: a job that does not end when cancelled must not hold the
        # process (or a test run) forever; it is named, and left behind.
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_S)
            for task in stuck:
                log.error(
                    "background job %s did not stop within %.0f s of being cancelled", task.get_name(), STOP_TIMEOUT_S
                )
        for close in self.registration.on_close:
            try:
                await asyncio.wait_for(close(), STOP_TIMEOUT_S)
            except TimeoutError:
                log.error(
                    "closing %s took more than %.0f s; left behind",
                    getattr(close, "__qualname__", close),
                    STOP_TIMEOUT_S,
                )
        resources = self.resources
        await resources.redis.aclose()
        await resources.redis_at_most_once.aclose()
        if resources.redis_hot_path is not None:
            await resources.redis_hot_path.aclose()
        await resources.engine.dispose()
        log.info("%s service stopped", self.name)


def _tune_process() -> None:
    """Settings for a process that runs one service, not for a test process."""
    # Everything allocated so far (modules, descriptors, pools) lives as long
    # as the process: keep it out of the cyclic collector's scans. Young
    # passes every 5,000 net allocations (default 700: too frequent under
    # load), older passes as rarely as before. A young pass stalls every
    # request in flight for as long as it runs: at 50,000 each pass took
    # 25-250 ms under load, at 5,000 under 10 ms, for less collector time in
    # all (python_gc_pause_seconds; docs/benchmarks.md).
    gc.freeze()
    gc.set_threshold(5_000, 200, 20)
    time_gc_pauses()


async def serve(name: str, setup: Setup, settings: Settings | None = None) -> None:
    """Runs the service until SIGTERM or SIGINT."""
    settings = settings or SERVICE_SETTINGS[name].from_env()
    # Before any server, channel, engine or Redis client exists: the
    # instrumentation hooks their constructors. A no-op unless an OTLP
    # endpoint is set.
    if tracing.configure(name, settings.otlp_endpoint):
        log.info("tracing on: spans go to %s", settings.otlp_endpoint)
    service = RunningService(name, setup, settings)
    await service.start()
    _tune_process()
    serve_metrics(settings.metrics_port, settings.host)
    lag = asyncio.create_task(watch_loop_lag(), name="loop-lag")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.stopping.set)
    await service.stopping.wait()
    lag.cancel()
    await service.stop()


def _job_name(job: Callable[..., object]) -> str:
    """A background task's name: its function's, through functools.partial."""
    return str(getattr(job, "__name__", None) or getattr(getattr(job, "func", None), "__name__", "job"))


def main(name: str, setup: Setup) -> None:
    try:
        settings = SERVICE_SETTINGS[name].from_env()
    except ConfigError as exc:
        raise SystemExit(f"{name}: configuration error: {exc}") from None
    logs.configure(name, settings.log_level)
    uvloop.run(serve(name, setup, settings))
