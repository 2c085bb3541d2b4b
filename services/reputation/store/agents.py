"""Agent rows and their API keys: registration, lookups, tier and flag, the
leaderboard and the agent lists."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from sqlalchemy import and_, case, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.errors import AlreadyExists, NotFound
from services.reputation.store.rows import AgentRow, AgentScore
from services.reputation.tables import agents, api_keys

_AGENT_COLUMNS = [getattr(agents.c, f) for f in AgentRow.__dataclass_fields__]
# The first key of the transaction locks counting one address's registrations
# (the second is the address's): any 32-bit number of our own.
_REGISTRATION_LOCKS = 0x52454741


class AgentStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # Reads run in autocommit: no BEGIN/ROLLBACK round trips around a
        # single SELECT (writes use engine.begin() and real transactions).
        self.reads = engine.execution_options(isolation_level="AUTOCOMMIT")
        # address key -> (its lock, registrations holding or awaiting it)
        self._address_locks: dict[bytes, tuple[asyncio.Lock, int]] = {}

    async def create_agent(
        self, agent_id: str, name: str, key_hash: bytes, counted: tuple[bytes, timedelta] | None = None
    ) -> AgentRow:
        """`counted`: the key of the client address and the window to count
        its registrations in; the new row's registration_crowd is how many it
        has then, this one included. One address's registrations are counted
        one after the other (a transaction lock on its key, across replicas),
        so two at once never both count as its n-th; in this process they
        queue before taking a connection, so that a burst from one address
        waits without holding the pool that key verification also uses."""
        if counted is None:
            return await self._insert_agent(agent_id, name, key_hash, None)
        async with self._registering(counted[0]):
            return await self._insert_agent(agent_id, name, key_hash, counted)

    async def _insert_agent(
        self, agent_id: str, name: str, key_hash: bytes, counted: tuple[bytes, timedelta] | None
    ) -> AgentRow:
        values: dict[str, object] = {"id": agent_id, "name": name}
        try:
            async with self.engine.begin() as conn:
                if counted is not None:
                    address, window = counted
                    lock = int.from_bytes(address[:4], "big", signed=True)
                    await conn.execute(select(func.pg_advisory_xact_lock(_REGISTRATION_LOCKS, lock)))
                    earlier = await conn.scalar(
                        select(func.count()).where(
                            agents.c.registration_address == address,
                            agents.c.created_at > func.now() - window,
                        )
                    )
                    values |= {"registration_address": address, "registration_crowd": int(earlier or 0) + 1}
                row = (await conn.execute(insert(agents).values(**values).returning(*_AGENT_COLUMNS))).one()
                await conn.execute(insert(api_keys).values(key_hash=key_hash, agent_id=agent_id))
        except IntegrityError:
            raise AlreadyExists(f"agent {agent_id!r} already exists; choose another id") from None
        return AgentRow(*row)

    @contextlib.asynccontextmanager
    async def _registering(self, address: bytes) -> AsyncIterator[None]:
        """One registration per address at a time in this process; the lock
        is forgotten when nobody holds or waits for it."""
        lock, users = self._address_locks.get(address, (asyncio.Lock(), 0))
        self._address_locks[address] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._address_locks[address]
            if users == 1:
                del self._address_locks[address]
            else:
                self._address_locks[address] = (lock, users - 1)

    async def get_agent(self, agent_id: str) -> AgentRow:
        async with self.reads.connect() as conn:
            row = (await conn.execute(select(*_AGENT_COLUMNS).where(agents.c.id == agent_id))).one_or_none()
        if row is None:
            raise NotFound(f"agent {agent_id!r} does not exist")
        return AgentRow(*row)

    async def agent_for_key(self, key_hash: bytes) -> AgentRow | None:
        """The agent whose live (not revoked) key has this hash."""
        query = (
            select(*_AGENT_COLUMNS)
            .join(api_keys, api_keys.c.agent_id == agents.c.id)
            .where(api_keys.c.key_hash == key_hash, api_keys.c.revoked_at.is_(None))
        )
        async with self.reads.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        return None if row is None else AgentRow(*row)

    async def update_agent(self, agent_id: str, tier: str | None, flagged: bool | None, flag_reason: str) -> AgentRow:
        """Sets what is not None; `flag_reason` is the reason a new flag gets."""
        values: dict[str, object] = {}
        if tier is not None:
            values["tier"] = tier
        if flagged is not None:
            values["flagged"] = flagged
            if flagged:
                # Keep the reason and time of an automatic flag; otherwise say who.
                values["flag_reason"] = func.coalesce(func.nullif(agents.c.flag_reason, ""), flag_reason)
                values["flagged_at"] = func.coalesce(agents.c.flagged_at, func.now())
                values["trusted_at"] = None  # a flag ends trust
            else:
                values["flag_reason"] = ""
                values["flagged_at"] = None
                # Only clearing an actual flag starts the flag cooldown.
                values["flag_cleared_at"] = case((agents.c.flagged, func.now()), else_=agents.c.flag_cleared_at)
        statement = update(agents).where(agents.c.id == agent_id).returning(*_AGENT_COLUMNS)
        # Nothing to change: still answer with the agent (a no-op SET).
        statement = statement.values(**values) if values else statement.values(id=agents.c.id)
        async with self.engine.begin() as conn:
            row = (await conn.execute(statement)).one_or_none()
        if row is None:
            raise NotFound(f"agent {agent_id!r} does not exist")
        return AgentRow(*row)

    async def replace_key(self, agent_id: str, new_hash: bytes) -> bytes | None:
        """Revokes the agent's live key and stores the new one; returns the old hash."""
        async with self.engine.begin() as conn:
            exists = (
                await conn.execute(select(agents.c.id).where(agents.c.id == agent_id).with_for_update())
            ).one_or_none()
            if exists is None:
                raise NotFound(f"agent {agent_id!r} does not exist")
            old = (
                await conn.execute(
                    update(api_keys)
                    .where(api_keys.c.agent_id == agent_id, api_keys.c.revoked_at.is_(None))
                    .values(revoked_at=func.now())
                    .returning(api_keys.c.key_hash)
                )
            ).one_or_none()
            await conn.execute(insert(api_keys).values(key_hash=new_hash, agent_id=agent_id))
        return None if old is None else old[0]

    async def flag(self, agent_id: str, reason: str) -> bool:
        """Flags the agent unless it already is; True when this call flagged it."""
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    update(agents)
                    .where(agents.c.id == agent_id, agents.c.flagged.is_(False))
                    .values(flagged=True, flag_reason=reason, flagged_at=func.now(), trusted_at=None)
                    .returning(agents.c.id)
                )
            ).one_or_none()
        return row is not None

    async def leaderboard(self, limit: int, after: tuple[int, str] | None) -> list[AgentRow]:
        """Highest reputation first, id breaks ties; `after` is the last (score, id) seen."""
        query = select(*_AGENT_COLUMNS).order_by(agents.c.reputation_score.desc(), agents.c.id).limit(limit)
        if after is not None:
            score, agent_id = after
            query = query.where(
                or_(
                    agents.c.reputation_score < score,
                    and_(agents.c.reputation_score == score, agents.c.id > agent_id),
                )
            )
        async with self.reads.connect() as conn:
            return [AgentRow(*row) for row in await conn.execute(query)]

    async def list_agents(self, flagged: bool | None, limit: int, after: tuple[datetime, str] | None) -> list[AgentRow]:
        """flagged=True: the flagged agents, newest flag first; otherwise the
        agents (unflagged only with False), newest first; id breaks ties.
        `after` is the last (flagged_at or created_at, id) seen."""
        at = agents.c.flagged_at if flagged else agents.c.created_at
        query = select(*_AGENT_COLUMNS).order_by(at.desc(), agents.c.id).limit(limit)
        if flagged is not None:
            # Plain `flagged`, not `IS true`: the queue's partial index is WHERE flagged.
            query = query.where(agents.c.flagged if flagged else ~agents.c.flagged)
        if after is not None:
            time, agent_id = after
            query = query.where(or_(at < time, and_(at == time, agents.c.id > agent_id)))
        async with self.reads.connect() as conn:
            return [AgentRow(*row) for row in await conn.execute(query)]

    async def all_scores(self) -> list[AgentScore]:
        """Every agent's reputation, flag and trust (for republishing every weight)."""
        async with self.reads.connect() as conn:
            result = await conn.execute(
                select(
                    agents.c.id,
                    agents.c.reputation_score,
                    agents.c.flagged,
                    agents.c.trusted_at.is_not(None),
                    agents.c.registration_crowd,
                )
            )
            return [AgentScore(*row) for row in result]

    async def count_flagged(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).where(agents.c.flagged))).scalar_one())
