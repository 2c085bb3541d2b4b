"""Who is calling: the admin key, an agent's API key, or nobody.

The admin key comes from settings and is compared in constant time. Agent
keys are verified by a function the service supplies (the reputation
service checks its own table; the others call its ApiKeyService) and the
answer is cached briefly in-process, keyed by the key's hash, so the
internal call leaves the hot path.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import cast

import grpc
from cachetools import TTLCache
from redis.asyncio import Redis
from redis.exceptions import RedisError

from aimusicstore.reputation.v1 import api_key_service_pb2, api_key_service_pb2_grpc
from services.common.caches import RevalidatingCache
from services.common.channels import peer_unavailable
from services.common.errors import Unauthenticated, Unavailable
from services.common.grpc_types import Context
from services.common.pubsub import AUTH_CHANNEL, subscribe_forever
from services.common.singleflight import SingleFlight

ADMIN_ID = "admin"
# Agent ids no one may register: the admin's id (the `submitted_by` of what
# the admin creates) and the names the service speaks under, which an agent
# could otherwise use to pass for it in charts, reviews and logs.
RESERVED_AGENT_IDS = frozenset(
    {
        ADMIN_ID,
        "administrator",
        "root",
        "system",
        "aimusicstore",
        "vote",
        "ranking",
        "reputation",
        "gateway",
        "anonymous",
    }
)

# How the reputation service tells every other service's cache that a key was
# revoked or an agent changed (tier, flag): a pub/sub message for the caches,
# plus a marker key that the vote path checks in the same Redis call as the
# quota, so a rotated key fails at once even if a message was missed.
REVOKED_KEY = "auth:revoked:{key_hash}"
REVOKED_TTL_S = 3600

log = logging.getLogger("auth")


@dataclass(frozen=True)
class Caller:
    agent_id: str
    is_admin: bool = False
    tier: str = "free"
    flagged: bool = False
    # Hash of the API key this caller used (empty for the admin key).
    key_hash: bytes = b""


ADMIN = Caller(agent_id=ADMIN_ID, is_admin=True, tier="enterprise")

KeyVerifier = Callable[[str], Awaitable[Caller | None]]


def hash_api_key(api_key: str) -> bytes:
    """Keys are 256-bit random, so a plain SHA-256 is a safe lookup hash."""
    return hashlib.sha256(api_key.encode()).digest()


def bearer_token(context: Context) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("Authorization must be 'Bearer <api_key>'")
            return token.strip()
    return None


class Authenticator:
    def __init__(
        self,
        admin_key: str,
        verify: KeyVerifier,
        cache_ttl_s: float,
        revocations: Redis | None = None,
        cache_grace_s: float = 600.0,
        redis_away: Callable[[], bool] | None = None,
    ) -> None:
        self._admin_key = admin_key.encode()
        self._verify = verify
        # When given, a cached key is also checked against the revocation
        # markers, so a rotated key fails at once even before the
        # invalidation message arrives. (Casting a vote checks the marker in
        # its quota call instead: check_revoked=False.)
        self._revocations = revocations
        # Verified callers by key hash. Past its TTL an entry is still served
        # while one background call re-verifies it (for up to cache_grace_s):
        # a vote never waits on the reputation service for a known key.
        self._callers: RevalidatingCache[bytes, Caller] = RevalidatingCache(
            "API key", maxsize=100_000, ttl_s=cache_ttl_s, grace_s=cache_grace_s
        )
        # Keys found invalid, briefly: a client retrying a bad key must not
        # cost an internal call and a query each time. Short, so a key that
        # was just issued is never refused for long.
        self._invalid: TTLCache[bytes, bool] = TTLCache(maxsize=100_000, ttl=1.0)
        # While Redis is away (redis_away(): the Redis circuit breaker is
        # open) no revocation marker can be read, so a cached answer could
        # accept a key rotated meanwhile: keys are then verified again with
        # the reputation service (which reads PostgreSQL), at most once a
        # second per key, all concurrent callers sharing one call.
        self._redis_away = redis_away
        self._recently_verified: TTLCache[bytes, Caller | None] = TTLCache(maxsize=100_000, ttl=1.0)
        self._verifying = SingleFlight()

    async def caller(self, context: Context, *, check_revoked: bool = True) -> Caller:
        """The authenticated caller; UNAUTHENTICATED when there is none.

        check_revoked=False skips the per-call Redis check of a cached key's
        revocation marker, for a caller that checks the marker itself in the
        same round trip as its own work (the vote admission script does)."""
        caller = await self.optional_caller(context, check_revoked=check_revoked)
        if caller is None:
            raise Unauthenticated("this call needs an API key: send 'Authorization: Bearer <api_key>'")
        return caller

    async def optional_caller(self, context: Context, *, check_revoked: bool = True) -> Caller | None:
        token = bearer_token(context)
        if token is None:
            return None
        if hmac.compare_digest(token.encode(), self._admin_key):
            return ADMIN
        if len(token) > 256:
            raise Unauthenticated("the API key is not valid")
        key_hash = hash_api_key(token)
        if key_hash in self._invalid:
            raise Unauthenticated("the API key is not valid (revoked, rotated or never issued)")

        async def verify() -> Caller | None:
            found = await self._verify(token)
            return None if found is None else replace(found, key_hash=key_hash)

        if self._redis_away is not None and self._redis_away():
            caller = await self._verify_while_redis_away(key_hash, verify)
        else:
            caller = await self._callers.get(key_hash, verify)
        if caller is None:
            self._invalid[key_hash] = True
            raise Unauthenticated("the API key is not valid (revoked, rotated or never issued)")
        if check_revoked and self._revocations is not None:
            try:
                revoked = await self._revocations.exists(REVOKED_KEY.format(key_hash=key_hash.hex()))
            except RedisError:
                revoked = False  # Redis away: the cache TTL still bounds a revoked key's life
            if revoked:
                self.forget(key_hash)
                raise Unauthenticated("the API key is not valid (revoked, rotated or never issued)")
        return caller

    async def _verify_while_redis_away(
        self, key_hash: bytes, verify: Callable[[], Awaitable[Caller | None]]
    ) -> Caller | None:
        if key_hash in self._recently_verified:
            return self._recently_verified[key_hash]

        async def verify_and_keep() -> Caller | None:
            try:
                found = await verify()
            except Unavailable:
                # The reputation service is away too: the cached answer is
                # all there is (its TTL bounds a revoked key's life).
                return await self._callers.get(key_hash, verify)
            self._recently_verified[key_hash] = found
            if found is None:
                self._callers.forget(key_hash)
            return found

        return cast(Caller | None, await self._verifying.do(key_hash, verify_and_keep))

    def forget(self, key_hash: bytes) -> None:
        self._callers.forget(key_hash)

    def forget_agent(self, agent_id: str) -> None:
        self._callers.forget_where(lambda caller: caller.agent_id == agent_id)

    async def listen(
        self,
        redis: Redis,
        on_agent_changed: Callable[[str], Awaitable[None]] | None = None,
        on_flag_cleared: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        """Drops cached callers as the reputation service announces changes
        (runs forever); `on_agent_changed` also hears of every agent change,
        `on_flag_cleared` of an admin clearing an agent's flag."""

        async def handle(message: str) -> None:
            kind, _, value = message.partition(":")
            if kind in ("agent", "flag-cleared"):
                self.forget_agent(value)
                if on_agent_changed is not None:
                    await on_agent_changed(value)
                if kind == "flag-cleared" and on_flag_cleared is not None:
                    await on_flag_cleared(value)
            elif kind == "key":
                self.forget(bytes.fromhex(value))

        # (Re)subscribed: announcements may have been missed meanwhile, so
        # every cached caller is re-verified on its next use.
        await subscribe_forever(redis, AUTH_CHANNEL, handle, on_subscribed=self._callers.expire_all)


def remote_key_verifier(channel: grpc.aio.Channel) -> KeyVerifier:
    """Verifies agent keys by calling the reputation service's ApiKeyService."""
    stub = api_key_service_pb2_grpc.ApiKeyServiceStub(channel)

    async def verify(api_key: str) -> Caller | None:
        try:
            reply = await stub.VerifyApiKey(api_key_service_pb2.VerifyApiKeyRequest(api_key=api_key))
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise peer_unavailable("verify the API key", "reputation service", exc) from exc
        return Caller(agent_id=reply.agent_id, tier=reply.tier, flagged=reply.flagged)

    return verify


async def announce_key_revoked(redis: Redis, key_hash: bytes) -> None:
    await redis.set(REVOKED_KEY.format(key_hash=key_hash.hex()), 1, ex=REVOKED_TTL_S)
    await redis.publish(AUTH_CHANNEL, f"key:{key_hash.hex()}")


async def announce_agent_changed(redis: Redis, agent_id: str, *, flag_cleared: bool = False) -> None:
    """`flag_cleared`: an admin cleared the agent's flag, which also forgives
    the votes that broke a rule (the vote service forgets its rule windows)."""
    await redis.publish(AUTH_CHANNEL, f"{'flag-cleared' if flag_cleared else 'agent'}:{agent_id}")
