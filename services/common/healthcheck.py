"""Container health probe: `python -m services.common.healthcheck HOST:PORT [SERVICE]`.

Asks the server's grpc.health.v1.Health/Check (the empty service name, the
default, means the whole server) with a deadline. Exits 0 when the answer
is SERVING and 1 otherwise (NOT_SERVING, unreachable, timed out), printing
why on stderr. compose.yaml uses it; Kubernetes uses its own `grpc` probe.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING

# A health "service" each server answers SERVING from its start until it
# begins shutting down, whatever the state of PostgreSQL and Redis: the
# process is up and its event loop answers. The gateway's active health
# checks and Kubernetes' probes ask it, so a hung process stops getting
# traffic within seconds, while a Redis outage (during which votes are still
# accepted durably) does not take a service out of rotation. The empty name
# ("the whole server") stays the dependency-aware answer /health reports.
LIVENESS_SERVICE = "aimusicstore.liveness"


def check(target: str, service: str = "", timeout_s: float = 2.0) -> tuple[bool, str]:
    """(serving?, what the server said or why it could not be asked)."""
    # No HTTP proxy from the environment for a probe of a local port.
    with grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0)]) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
        except grpc.RpcError as exc:
            return False, f"{exc.code().name}: {exc.details()}"
    return reply.status == SERVING, health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.common.healthcheck", description="Exit 0 when a gRPC server is SERVING."
    )
    parser.add_argument("target", help="HOST:PORT, e.g. 127.0.0.1:50051")
    parser.add_argument("service", nargs="?", default="", help="service name (default: the whole server)")
    parser.add_argument("--timeout", type=float, default=2.0, help="deadline in seconds (default 2)")
    args = parser.parse_args(argv)
    ok, detail = check(args.target, args.service, args.timeout)
    if not ok:
        print(f"{args.target} {args.service or '(server)'}: {detail}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
