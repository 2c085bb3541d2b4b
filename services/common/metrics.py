"""Prometheus metrics shared by every service (one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

RPC_TOTAL = Counter("grpc_server_handled_total", "RPCs completed", ["method", "code"])
RPC_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "RPC latency",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


def serve_metrics(port: int, host: str) -> None:
    """Exposes /metrics on its own port; 0 turns it off."""
    if port:
        start_http_server(port, addr=host)
