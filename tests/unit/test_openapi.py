"""gateway/openapi.py: the OpenAPI document and HTML page generated from the protos.

The descriptor set is built on the fly from protos/ with grpc_tools.protoc,
using the same include paths as scripts/gen_protos.py.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from gateway import openapi

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = "#/components/schemas/"


def _gen_protos_module():
    spec = importlib.util.spec_from_file_location("_gen_protos", ROOT / "scripts" / "gen_protos.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def descriptor_set(tmp_path_factory) -> Path:
    from grpc_tools import protoc

    gen = _gen_protos_module()
    protos = ROOT / "protos"
    sources = sorted(str(p.relative_to(protos)) for p in protos.rglob("*.proto"))
    out = tmp_path_factory.mktemp("descriptors") / "descriptors.binpb"
    args = [
        "protoc",
        *(f"-I{d}" for d in gen._include_dirs()),
        f"--descriptor_set_out={out}",
        "--include_imports",
        "--include_source_info",
        *sources,
    ]
    assert protoc.main(args) == 0
    return out


@pytest.fixture(scope="module")
def spec(descriptor_set) -> dict:
    return openapi.build(descriptor_set.read_bytes())


def _schema(spec: dict, schema: dict) -> dict:
    """Follows $ref (and single-element allOf wrappers) to the schema itself."""
    while True:
        if "$ref" in schema:
            assert schema["$ref"].startswith(SCHEMAS)
            schema = spec["components"]["schemas"][schema["$ref"][len(SCHEMAS) :]]
        elif len(schema.get("allOf", ())) == 1:
            schema = schema["allOf"][0]
        else:
            return schema


def _json_schema(op: dict, status: str = "200") -> dict:
    return op["responses"][status]["content"]["application/json"]["schema"]


def _operations(spec: dict):
    for path, item in spec["paths"].items():
        for method, op in item.items():
            yield path, method, op


def test_document_header(spec):
    assert spec["openapi"] == "3.0.3"
    assert spec["info"]["title"] == "aimusicstore API"
    assert spec["info"]["version"] == "v1"
    assert "gateway/openapi.py" in spec["info"]["description"]
    assert spec["servers"] == [{"url": "/"}]
    bearer = spec["components"]["securitySchemes"]["bearerAuth"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")


def test_cast_vote_body_is_the_request_message(spec):
    op = spec["paths"]["/api/v1/vote"]["post"]
    assert op["operationId"] == "VoteService_CastVote"
    assert op["tags"] == ["VoteService"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": SCHEMAS + "CastVoteRequest"}
    request = spec["components"]["schemas"]["CastVoteRequest"]
    assert request["required"] == ["item_type", "item_id", "vote"]
    assert request["properties"]["rating"] == {
        "type": "integer",
        "format": "int32",
        "description": "1-5, tools only.",
    }
    assert _json_schema(op) == {"$ref": SCHEMAS + "CastVoteResponse"}
    assert op["summary"] == "Records the calling agent's vote."
    # Voting needs an agent's key (services/common/access.py).
    assert op["security"] == [{"bearerAuth": []}]
    assert op["x-requires-key"] == "agent"
    assert "Requires an agent's API key" in op["description"]
    assert "401" in op["responses"]
    assert op["responses"]["default"]["content"]["application/json"]["schema"] == {"$ref": SCHEMAS + "Error"}


def test_response_body_selects_the_field(spec):
    op = spec["paths"]["/api/v1/songs/{song_id}"]["get"]
    assert _json_schema(op) == {"$ref": SCHEMAS + "Song"}
    assert op["parameters"] == [{"name": "song_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    assert "requestBody" not in op


def test_body_field_is_the_fields_message(spec):
    op = spec["paths"]["/api/v1/songs"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"] == {"$ref": SCHEMAS + "Song"}
    assert op["requestBody"]["required"] is True
    assert "parameters" not in op


def test_body_star_leaves_out_path_fields(spec):
    op = spec["paths"]["/api/v1/agents/{agent_id}"]["patch"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"tier", "flagged"}
    assert [p["name"] for p in op["parameters"]] == ["agent_id"]
    # Nothing but the path parameter: no body at all.
    assert "requestBody" not in spec["paths"]["/api/v1/agents/{agent_id}/keys"]["post"]


def test_additional_bindings_and_literal_variables(spec):
    songs = spec["paths"]["/api/v1/songs/{item_id}/history"]["get"]
    tools = spec["paths"]["/api/v1/tools/{item_id}/history"]["get"]
    assert songs["operationId"] == "RankingService_GetItemHistory"
    assert tools["operationId"] == "RankingService_GetItemHistory_2"
    for op in (songs, tools):
        # `collection` is fixed by the path, so it is no parameter at all.
        assert [(p["name"], p["in"]) for p in op["parameters"]] == [
            ("item_id", "path"),
            ("days", "query"),
        ]
    assert not any("{collection" in path for path in spec["paths"])


def test_internal_services_are_absent(spec):
    text = json.dumps(spec)
    assert "VerifyApiKey" not in text
    assert "ApiKeyService" not in text
    assert "ApiKeyService" not in [t["name"] for t in spec["tags"]]


def test_field_types_and_behaviors(spec):
    song = spec["components"]["schemas"]["Song"]["properties"]
    assert song["up_votes"]["type"] == "integer"
    assert song["up_votes"]["format"] == "int32"
    assert song["created_at"]["type"] == "string"
    assert song["created_at"]["format"] == "date-time"
    assert song["created_at"]["readOnly"] is True
    assert "readOnly" not in song["title"]
    assert spec["components"]["schemas"]["Song"]["required"] == ["title", "artist", "platform"]
    assert song["score"]["description"] == "up_votes - down_votes."
    tool = spec["components"]["schemas"]["Tool"]["properties"]
    assert tool["pricing"]["type"] == "object"
    assert tool["features"] == {"type": "array", "items": {"type": "string"}}
    assert tool["rating"]["type"] == "number"
    agent = spec["components"]["schemas"]["Agent"]["properties"]
    assert agent["flagged"]["type"] == "boolean"
    assert spec["components"]["schemas"]["DeleteSongResponse"] == {"type": "object"}


def test_query_parameters(spec):
    op = spec["paths"]["/api/v1/songs"]["get"]
    params = {p["name"]: p for p in op["parameters"]}
    assert set(params) == {"page_size", "page_token", "platform", "genre", "mood", "q"}
    assert all(p["in"] == "query" for p in params.values())
    assert params["page_size"]["schema"] == {"type": "integer", "format": "int32"}
    assert params["page_size"]["description"] == "Default 20, at most 100."
    top = spec["paths"]["/api/v1/top/{period}"]["get"]
    assert top["parameters"][0] == {
        "name": "period",
        "in": "path",
        "required": True,
        "description": '"daily", "weekly", "monthly" or "all_time".',
        "schema": {"type": "string", "enum": ["daily", "weekly", "monthly", "all_time"]},
    }


def test_enumerated_string_fields_list_their_values(spec):
    """From services/common/vocabulary.py, wherever the field appears."""
    schemas = spec["components"]["schemas"]
    cast = schemas["CastVoteRequest"]["properties"]
    assert cast["item_type"]["enum"] == ["song", "tool"]
    assert cast["vote"]["enum"] == ["up", "down"]
    assert schemas["ChartEntry"]["properties"]["movement"]["enum"] == ["up", "down", "same", "new"]
    assert schemas["Agent"]["properties"]["tier"]["enum"] == ["free", "pro", "enterprise"]
    assert schemas["WatchVotesResponse"]["properties"]["type"]["enum"] == ["vote", "retract"]
    top = {p["name"]: p for p in spec["paths"]["/api/v1/top/{period}"]["get"]["parameters"]}
    assert top["sort"]["schema"] == {"type": "string", "enum": ["score", "best", "controversial"]}
    assert top["item_type"]["schema"]["enum"] == ["song", "tool"]
    counts = spec["paths"]["/api/v1/votes/{item_type}/{item_id}"]["get"]["parameters"]
    assert counts[0]["name"] == "item_type" and counts[0]["schema"]["enum"] == ["song", "tool"]
    # Free text stays free, and a message field named like a set is no enum.
    assert "enum" not in schemas["Song"]["properties"]["title"]
    assert "enum" not in top["genre"]["schema"]
    assert "enum" not in str(schemas["CastVoteResponse"]["properties"]["vote"])


def test_cache_rules_become_cache_control_headers(spec):
    """The protos' cache option, the same the gateway sets on the answers."""

    def header(path: str, method: str = "get") -> dict | None:
        return spec["paths"][path][method]["responses"]["200"].get("headers", {}).get("Cache-Control")

    trending = header("/api/v1/trending")
    assert trending is not None and trending["schema"] == {"type": "string", "enum": ["public, max-age=1"]}
    assert "own cache" in trending["description"]
    history = header("/api/v1/songs/{item_id}/history")
    assert history is not None and history["schema"]["enum"] == ["public, max-age=60"]
    assert "own cache" not in history["description"]
    assert header("/api/v1/songs/{song_id}")["schema"]["enum"] == ["no-cache"]
    assert header("/api/v1/vote", "post") is None
    assert header("/api/v1/songs") is None


def test_server_streaming_is_ndjson(spec):
    op = spec["paths"]["/api/v1/events"]["get"]
    content = op["responses"]["200"]["content"]
    # NDJSON first (the default); browsers may ask for Server-Sent Events.
    assert list(content) == ["application/x-ndjson", "text/event-stream"]
    assert content["application/x-ndjson"]["schema"] == {"$ref": SCHEMAS + "WatchVotesResponse"}
    assert "newline-delimited JSON" in op["description"]


def test_gateway_endpoints(spec):
    health = spec["paths"]["/health"]["get"]["responses"]
    assert health["200"]["content"]["application/json"]["example"]["status"] == "healthy"
    assert health["503"]["content"]["application/json"]["example"]["status"] == "unhealthy"
    assert "text/html" in spec["paths"]["/docs"]["get"]["responses"]["200"]["content"]
    assert "/openapi.json" in spec["paths"]


def test_document_is_consistent(spec):
    ids = [op["operationId"] for _, _, op in _operations(spec)]
    assert len(ids) == len(set(ids))
    refs = re.findall(r'"\$ref": "([^"]+)"', json.dumps(spec))
    assert refs
    for ref in refs:
        assert ref.startswith(SCHEMAS)
        assert ref[len(SCHEMAS) :] in spec["components"]["schemas"]
    for path, _, op in _operations(spec):
        declared = set(re.findall(r"\{([^}]+)\}", path))
        in_path = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert declared == in_path, path
    tags = {t["name"] for t in spec["tags"]}
    assert all(op["tags"][0] in tags for _, _, op in _operations(spec))


def test_write_is_deterministic(descriptor_set, tmp_path):
    openapi.write(descriptor_set, tmp_path / "a")
    openapi.write(descriptor_set, tmp_path / "b")
    for name in ("openapi.json", "docs.html"):
        first = (tmp_path / "a" / name).read_bytes()
        assert first == (tmp_path / "b" / name).read_bytes()
        assert first.endswith(b"\n")
    text = (tmp_path / "a" / "openapi.json").read_text()
    doc = json.loads(text)
    assert text == json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_docs_page_is_self_contained(descriptor_set, tmp_path):
    openapi.write(descriptor_set, tmp_path)
    page = (tmp_path / "docs.html").read_text()
    assert not re.search(r"<script|<link|<img|@import|url\(|(src|href)=\"?https?:", page)
    assert "/api/v1/songs/{item_id}/history" in page
    assert "Records the calling agent&#x27;s vote." in page
    assert 'id="schema-CastVoteRequest"' in page
    assert "VerifyApiKey" not in page


def test_only_the_operations_that_need_a_key_are_marked_so(spec):
    from services.common.access import KEY_REQUIRED

    marked = {}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            marked[(method, path)] = op
            needs = op.get("x-grpc-method") in KEY_REQUIRED
            assert op["security"] == ([{"bearerAuth": []}] if needs else []), (method, path)
    assert marked[("get", "/api/v1/trending")]["security"] == []
    assert marked[("delete", "/api/v1/songs/{song_id}")]["x-requires-key"] == "admin"
    assert marked[("post", "/api/v1/songs")]["x-requires-key"] == "agent_or_admin"
    assert marked[("get", "/")]["security"] == [] and marked[("get", "/docs")]["security"] == []
    # Every listed method that the gateway routes is in the document.
    routed = {op.get("x-grpc-method") for op in marked.values()}
    public = {m for m in KEY_REQUIRED if "StreamVotes" not in m}  # no http rule: gRPC only
    assert public <= routed


def test_the_live_feed_documents_its_server_sent_events(spec):
    op = spec["paths"]["/api/v1/events"]["get"]
    assert set(op["responses"]["200"]["content"]) == {"application/x-ndjson", "text/event-stream"}
    assert "Last-Event-ID" in op["description"]
