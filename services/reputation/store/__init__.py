"""All SQL and Redis access of the reputation service, one class per concern:

- agents.AgentStore: agent rows, API keys, tiers, flags, the leaderboard;
- projection.VoteProjection: the vote projection and item scores built from
  the vote event stream, and the reputation recomputed from them;
- announcements.Announcements: telling other services (Redis pub/sub and
  markers) that a key was revoked or an agent changed;
- weights.TrendingWeights: the trending weights the ranking service reads.

They count and store; the rules they apply are in services/reputation/formula.py
and the domain class services/reputation/agents.py.
"""

from services.reputation.store.agents import AgentStore
from services.reputation.store.announcements import Announcements
from services.reputation.store.projection import VoteProjection
from services.reputation.store.rows import AgentRow, AgentScore
from services.reputation.store.weights import TrendingWeights

__all__ = ["AgentRow", "AgentScore", "AgentStore", "Announcements", "TrendingWeights", "VoteProjection"]
