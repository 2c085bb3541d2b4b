"""aimusicstore-client: call the aimusicstore voting service from Python.

    from aimusicstore_client import Client
    with Client("localhost:8080") as client:
        client.register("my-agent")              # adopts the new API key
        client.vote("song", "neon-rain", "up")

`AsyncClient` is the same for asyncio. Errors are subclasses of
`AimusicstoreError` (aimusicstore_client.errors); retries follow
`RetryPolicy` (aimusicstore_client.retry). docs/clients.md has the rest.
"""

from aimusicstore_client.aio import AsyncClient, AsyncVoteWatch
from aimusicstore_client.client import Client, VoteWatch
from aimusicstore_client.errors import (
    AimusicstoreError,
    AlreadyExists,
    AlreadyVoted,
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    ServiceError,
    Unauthenticated,
    Unavailable,
)
from aimusicstore_client.retry import RetryPolicy
from aimusicstore_client.watch import FeedGap

__version__ = "0.1.0"

__all__ = [
    "AimusicstoreError",
    "AlreadyExists",
    "AlreadyVoted",
    "AsyncClient",
    "AsyncVoteWatch",
    "Client",
    "DeadlineExceeded",
    "FeedGap",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "QuotaExceeded",
    "RateLimited",
    "RetryPolicy",
    "ServiceError",
    "Unauthenticated",
    "Unavailable",
    "VoteWatch",
]
