"""Channels for service-to-service calls: every call gets a deadline."""

from __future__ import annotations

import grpc

from services.common.config import Settings
from services.common.interceptors import DeadlineClientInterceptor


def internal_channel(settings: Settings, service: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        settings.target(service),
        options=[
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 5_000),
            ("grpc.max_receive_message_length", settings.max_message_bytes),
        ],
        interceptors=[DeadlineClientInterceptor(settings.internal_deadline_s)],
    )
