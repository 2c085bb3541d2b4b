"""What the graduation rule reads (each probation agent's age, votes and
active days, counted set-based from the vote projection) and the trust it
grants. The rule itself is services/reputation/standing.py."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.reputation.standing import Activity, CandidateFilter


class Standings:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # Reads run in autocommit: no BEGIN/ROLLBACK round trips around a
        # single SELECT (writes use engine.begin() and real transactions).
        self.reads = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def probation_activity(self, candidates: CandidateFilter, only: list[str] | None = None) -> list[Activity]:
        """The activity of the agents on probation that pass the rule's
        necessary conditions (all of them, or those in `only`)."""
        params = {
            "created_before": candidates.created_before,
            "min_votes": candidates.min_votes,
            "cleared_before": candidates.cleared_before,
            "all": only is None,
            "ids": only or [],
        }
        async with self.reads.connect() as conn:
            rows = await conn.execute(_PROBATION_ACTIVITY, params)
            return [Activity(*row) for row in rows]

    async def mark_trusted(self, agent_ids: list[str]) -> list[str]:
        """Grants trust to these agents unless a flag came first; returns those it changed."""
        if not agent_ids:
            return []
        async with self.engine.begin() as conn:
            return list((await conn.execute(_MARK_TRUSTED, {"ids": agent_ids})).scalars())


# Only agents on probation that can pass: the partial index
# agents_probation_idx finds them by age, vote_count (which counts every live
# vote, so it is never below the earning ones) skips the idle ones before any
# vote is read, and the votes are then read through the projection's primary
# key (agent first). Active days are UTC calendar days.
_PROBATION_ACTIVITY = text(
    """
    WITH candidates AS (
        SELECT id, created_at, flagged, flag_cleared_at FROM reputation.agents
        WHERE trusted_at IS NULL AND NOT flagged
          AND created_at <= :created_before
          AND vote_count >= :min_votes
          AND (flag_cleared_at IS NULL OR flag_cleared_at <= :cleared_before)
          AND (:all OR id = ANY(:ids))
    )
    SELECT c.id, c.created_at,
           count(v.agent_id) AS votes,
           count(DISTINCT CAST(v.cast_at AT TIME ZONE 'UTC' AS date)) AS active_days,
           c.flagged, c.flag_cleared_at
    FROM candidates c
    LEFT JOIN reputation.votes v ON v.agent_id = c.id AND v.earns
    GROUP BY c.id, c.created_at, c.flagged, c.flag_cleared_at
    """
)

_MARK_TRUSTED = text(
    """
    UPDATE reputation.agents SET trusted_at = now()
    WHERE id = ANY(:ids) AND trusted_at IS NULL AND NOT flagged
    RETURNING id
    """
)
