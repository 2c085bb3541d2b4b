"""Telling the other services' caches that a key was revoked or an agent
changed (Redis pub/sub and revocation markers), and the durable retry of
revocations that could not reach Redis when they were made."""

from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import auth
from services.reputation.tables import api_keys

log = logging.getLogger("reputation.store")


class Announcements:
    def __init__(self, engine: AsyncEngine, redis: Redis) -> None:
        self.engine = engine
        # Reads run in autocommit: no BEGIN/ROLLBACK round trips around a
        # single SELECT (writes use engine.begin() and real transactions).
        self.reads = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.redis = redis

    async def announce_key_revoked(self, key_hash: bytes) -> bool:
        """Sets the key's revocation marker and announces it; records that it
        did. False when Redis could not be reached: announce_pending_revocations
        tries again until it is."""
        try:
            await auth.announce_key_revoked(self.redis, key_hash)
        except RedisError:
            log.warning("could not announce a revoked key yet; retrying until Redis answers")
            return False
        async with self.engine.begin() as conn:
            await conn.execute(
                update(api_keys).where(api_keys.c.key_hash == key_hash).values(revocation_announced_at=func.now())
            )
        return True

    async def announce_pending_revocations(self, limit: int = 500) -> int:
        """Announces revocations that have not reached Redis yet (oldest first); returns how many did."""
        async with self.reads.connect() as conn:
            pending = (
                (
                    await conn.execute(
                        select(api_keys.c.key_hash)
                        .where(api_keys.c.revoked_at.is_not(None), api_keys.c.revocation_announced_at.is_(None))
                        .order_by(api_keys.c.revoked_at)
                        .limit(limit)
                    )
                )
                .scalars()
                .all()
            )
        done = 0
        for key_hash in pending:
            if not await self.announce_key_revoked(key_hash):
                break
            done += 1
        if done:
            log.info("announced %d revocations that had not reached Redis", done)
        return done

    async def announce_agent_changed(self, agent_id: str, *, flag_cleared: bool = False) -> None:
        try:
            await auth.announce_agent_changed(self.redis, agent_id, flag_cleared=flag_cleared)
        except RedisError:
            log.warning("could not announce an agent change; other services see it within their cache TTL")
