"""Prometheus metrics shared by every service (one registry per process)."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

# The names and labels of go-grpc-prometheus / py-grpc-prometheus, which
# stock gRPC dashboards and alerts query.
_RPC_LABELS = ["grpc_type", "grpc_service", "grpc_method"]
RPC_STARTED = Counter("grpc_server_started_total", "RPCs started on the server", _RPC_LABELS)
RPC_TOTAL = Counter("grpc_server_handled_total", "RPCs completed on the server, by status", [*_RPC_LABELS, "grpc_code"])
RPC_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time from an RPC's start to its end on the server (a stream's whole life)",
    _RPC_LABELS,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


class RpcMetrics:
    """One method's metric children, resolved once: `.labels()` hashes its
    arguments on every call, which the hot path need not pay per RPC."""

    def __init__(self, full_method: str, grpc_type: str) -> None:
        service, _, name = full_method.strip("/").rpartition("/")
        self._labels = (grpc_type, service, name)
        self._started = RPC_STARTED.labels(*self._labels)
        self._seconds = RPC_SECONDS.labels(*self._labels)
        self._handled: dict[str, Any] = {}

    def started(self) -> None:
        self._started.inc()

    def finished(self, code_name: str, elapsed_s: float) -> None:
        handled = self._handled.get(code_name)
        if handled is None:
            handled = self._handled[code_name] = RPC_TOTAL.labels(*self._labels, code_name)
        handled.inc()
        self._seconds.observe(elapsed_s)


DEPENDENCY_UP = Gauge(
    "dependency_up", "1 while this process reaches the dependency (checked every health interval)", ["dependency"]
)


# What stalls a whole service at once: a blocked event loop, or a pause of
# the cyclic garbage collector. Every request waiting at that moment waits
# as long, so these explain latency spikes that no single RPC's code does.
_PAUSE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
LOOP_LAG_SECONDS = Histogram(
    "event_loop_lag_seconds",
    "How late the event loop ran a callback due now (sampled every 100 ms)",
    buckets=_PAUSE_BUCKETS,
)
GC_PAUSE_SECONDS = Histogram(
    "python_gc_pause_seconds", "Cyclic garbage collector passes", ["generation"], buckets=_PAUSE_BUCKETS
)

LOOP_LAG_SAMPLE_S = 0.1


async def watch_loop_lag() -> None:
    """Samples the event loop's lag forever (a background task of every service)."""
    while True:
        due = time.perf_counter() + LOOP_LAG_SAMPLE_S
        await asyncio.sleep(LOOP_LAG_SAMPLE_S)
        LOOP_LAG_SECONDS.observe(max(0.0, time.perf_counter() - due))


class _GcTimer:
    def __init__(self) -> None:
        self.started = 0.0
        self.observers = {generation: GC_PAUSE_SECONDS.labels(str(generation)) for generation in range(3)}

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.observers[info["generation"]].observe(time.perf_counter() - self.started)


def time_gc_pauses() -> None:
    """Records every collector pass's duration (idempotent)."""
    if not any(isinstance(callback, _GcTimer) for callback in gc.callbacks):
        gc.callbacks.append(_GcTimer())


def serve_metrics(port: int, host: str) -> None:
    """Exposes /metrics on its own port; 0 turns it off."""
    if port:
        start_http_server(port, addr=host)
