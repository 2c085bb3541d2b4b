"""Channels for service-to-service calls: every call gets a deadline, and a
restarted peer is reconnected to within about a second.

gRPC's default reconnect backoff grows to 120 s: after a peer has been down
for a while, a channel would keep failing calls fast (UNAVAILABLE) for up to
two minutes after the peer is back. Inside one deployment a reconnect attempt
is cheap, so the backoff is capped at `MAX_RECONNECT_BACKOFF_MS`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import grpc

from services.common.config import Settings
from services.common.credentials import SERVICE_CREDENTIAL_KEY, service_credential
from services.common.errors import Unavailable
from services.common.interceptors import DeadlineClientInterceptor

log = logging.getLogger("peers")

INITIAL_RECONNECT_BACKOFF_MS = 100
MAX_RECONNECT_BACKOFF_MS = 1_000

PEER_OPTIONS: list[tuple[str, int]] = [
    # Peers are on the deployment's own network: never through an HTTP proxy.
    ("grpc.enable_http_proxy", 0),
    ("grpc.initial_reconnect_backoff_ms", INITIAL_RECONNECT_BACKOFF_MS),
    ("grpc.min_reconnect_backoff_ms", INITIAL_RECONNECT_BACKOFF_MS),
    ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
]


def peer_channel(
    target: str,
    options: Sequence[tuple[str, int]] = (),
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
) -> grpc.aio.Channel:
    """An insecure channel to another process of this deployment."""
    return grpc.aio.insecure_channel(target, options=[*PEER_OPTIONS, *options], interceptors=list(interceptors) or None)


def internal_channel(settings: Settings, service: str) -> grpc.aio.Channel:
    return peer_channel(
        settings.target(service),
        options=[
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 5_000),
            ("grpc.max_receive_message_length", settings.max_message_bytes),
        ],
        interceptors=[
            DeadlineClientInterceptor(
                settings.internal_deadline_s,
                (SERVICE_CREDENTIAL_KEY, service_credential(settings.admin_key, settings.service_token)),
            )
        ],
    )


def peer_unavailable(action: str, peer: str, exc: grpc.aio.AioRpcError) -> Unavailable:
    """The answer when a call to another service failed: retryable, saying
    whether the peer was unreachable or too slow (under overload the internal
    deadline runs out first). Logged here, as the client sees only a 503."""
    log.warning("call to the %s failed: %s", peer, exc.code().name)
    reason = "did not answer in time" if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED else "is unreachable"
    return Unavailable(f"cannot {action} right now (the {peer} {reason}); retry")
