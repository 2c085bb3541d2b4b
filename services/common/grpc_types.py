"""Type names for grpc.aio that its stubs leave generic."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    import grpc

# What every servicer method and interceptor receives: our servicers are not
# generic over their messages, so Any for both.
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
