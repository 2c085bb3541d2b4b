"""The vote-weight hashes: kept by the reputation service, read by the ranking service.

Two Redis hashes, field = agent id:

- CHART_WEIGHTS_KEY: what one vote of the agent counts in the charts (its
  standing weight: trusted 1, probation the configured `probation_weight`,
  flagged 0; services/reputation/formula.py);
- WEIGHTS_KEY: what one vote counts in trending: the standing weight times
  the reputation factor (formula.py:trending_weight).

An agent in neither hash (new, or not yet published) is on probation: both
its weights are `probation_weight` (Settings, shared by both services).
After a change of weights the reputation service announces the agent on the
auth channel, and the ranking service re-weighs the agent's past votes.
"""

WEIGHTS_KEY = "reputation:weights"
CHART_WEIGHTS_KEY = "reputation:chart-weights"
