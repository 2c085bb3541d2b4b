"""Which public methods need a key, and whose: the one table of it.

The services enforce it (each method listed here asks its Authenticator for
the caller, and refuses the wrong kind of key in its domain code); the
gateway's OpenAPI document (gateway/openapi.py) marks these operations as
requiring a bearer key and every other public operation as taking none. A
unit test (tests/unit/test_access.py) checks this table against the
servicers: a method that authenticates and is missing here, or one listed
here that does not authenticate, fails it.
"""

from __future__ import annotations

from typing import Final, Literal

Who = Literal["agent", "agent_or_admin", "admin"]

# What each kind of requirement says in the API reference.
WHO_TEXT: Final[dict[str, str]] = {
    "agent": "an agent's API key (the admin key is refused: votes belong to agents)",
    "agent_or_admin": "an agent's API key or the admin key",
    "admin": "the admin key",
}

KEY_REQUIRED: Final[dict[str, Who]] = {
    "/aimusicstore.vote.v1.VoteService/CastVote": "agent",
    "/aimusicstore.vote.v1.VoteService/BatchCastVotes": "agent",
    "/aimusicstore.vote.v1.VoteService/StreamVotes": "agent",
    "/aimusicstore.vote.v1.VoteService/RetractVote": "agent",
    "/aimusicstore.ranking.v1.CatalogService/CreateSong": "agent_or_admin",
    "/aimusicstore.ranking.v1.CatalogService/DeleteSong": "admin",
    "/aimusicstore.ranking.v1.CatalogService/CreateTool": "admin",
    "/aimusicstore.ranking.v1.CatalogService/DeleteTool": "admin",
    "/aimusicstore.reputation.v1.AgentService/UpdateAgent": "admin",
    # That agent's own key, or the admin key.
    "/aimusicstore.reputation.v1.AgentService/RotateKey": "agent_or_admin",
    "/aimusicstore.reputation.v1.AgentService/ListAgents": "admin",
}


def requirement(method_path: str) -> Who | None:
    """Whose key the method needs (`/package.Service/Method`); None: no key."""
    return KEY_REQUIRED.get(method_path)
