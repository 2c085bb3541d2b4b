"""services/common/access.py, the table of which methods need a key, against
the servicers: a public method authenticates (asks its Authenticator for the
caller) exactly when the table lists it."""

from __future__ import annotations

import ast
from pathlib import Path

from gateway import descriptors
from services.common.access import KEY_REQUIRED, WHO_TEXT

ROOT = Path(__file__).resolve().parents[2]
SERVICERS = {
    "aimusicstore.vote.v1.VoteService": ("services/vote/servicer.py", "VoteService"),
    "aimusicstore.ranking.v1.CatalogService": ("services/ranking/servicer.py", "CatalogService"),
    "aimusicstore.ranking.v1.RankingService": ("services/ranking/servicer.py", "RankingService"),
    "aimusicstore.reputation.v1.AgentService": ("services/reputation/servicer.py", "AgentService"),
}


def _authenticating_methods() -> dict[str, bool]:
    """`/package.Service/Method` -> whether the servicer's method calls `self.auth.caller`."""
    found = {}
    for service, (path, class_name) in SERVICERS.items():
        tree = ast.parse((ROOT / path).read_text())
        cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
        for fn in cls.body:
            if isinstance(fn, ast.AsyncFunctionDef | ast.FunctionDef) and fn.name[0].isupper():
                calls = any(
                    isinstance(node, ast.Attribute)
                    and node.attr == "caller"
                    and isinstance(node.value, ast.Attribute)
                    and node.value.attr == "auth"
                    for node in ast.walk(fn)
                )
                found[f"/{service}/{fn.name}"] = calls
    return found


def test_the_table_lists_exactly_the_methods_that_authenticate() -> None:
    implemented = _authenticating_methods()
    assert implemented, "no servicer methods found"
    authenticating = {m for m, calls in implemented.items() if calls}
    assert authenticating - set(KEY_REQUIRED) == set(), "authenticates but is not in KEY_REQUIRED"
    # Methods listed before they are implemented (or served elsewhere) are not checked here.
    listed_and_implemented = {m for m in KEY_REQUIRED if m in implemented}
    assert listed_and_implemented - authenticating == set(), "listed but does not authenticate"


def test_every_listed_method_is_a_public_method_with_a_known_requirement() -> None:
    public = {m.path for m in descriptors.load().methods()} | {
        f"/{m}" for m in descriptors.load().streaming_methods() if not m.startswith("/")
    }
    api = descriptors.load()
    every_method = {f"/{s.full_name}/{m.name}" for s in api.services for m in s.methods}
    for method, who in KEY_REQUIRED.items():
        assert method in every_method | public, method
        assert who in WHO_TEXT
