"""All SQL and Redis access of the reputation service, one class per concern:

- agents.AgentStore: agent rows, API keys, tiers, flags, the leaderboard;
- projection.VoteProjection: the vote projection and item scores built from
  the vote event stream, and the reputation recomputed from them;
- announcements.Announcements: telling other services (Redis pub/sub and
  markers) that a key was revoked or an agent changed;
- standing.Standings: the activity the graduation rule reads, and the trust it grants;
- weights.VoteWeights: the chart and trending weights the ranking service reads.

They count and store; the rules they apply are in services/reputation/formula.py,
services/reputation/standing.py and the domain classes (agents.py, weighing.py).
"""

from services.reputation.store.agents import AgentStore
from services.reputation.store.announcements import Announcements
from services.reputation.store.projection import VoteProjection
from services.reputation.store.rows import AgentRow, AgentScore
from services.reputation.store.standing import Standings
from services.reputation.store.weights import VoteWeights

__all__ = ["AgentRow", "AgentScore", "AgentStore", "Announcements", "Standings", "VoteProjection", "VoteWeights"]
