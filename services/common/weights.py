"""The trending-weight hash: kept by the reputation service, read by the ranking service.

A Redis hash: field = agent id, value = the weight one vote of that agent
carries in trending (services/reputation/formula.py:trending_weight). An agent
not in the hash (new, or not yet published) weighs DEFAULT_WEIGHT.
"""

WEIGHTS_KEY = "reputation:weights"
DEFAULT_WEIGHT = 1.0
