"""The strict JSON body check's generated parts: which routes get it, the
schema each script carries, and how the gateway config wires it in. (What
the scripts answer is tested through Envoy in tests/integration/test_bad_input.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway import descriptors, envoy_config, strict_json
from services.common.config import GatewaySettings

API = descriptors.load()
SETTINGS = GatewaySettings(
    gateway_port=9999, api_port=9998, vote_target="vote:1", ranking_target="ranking:2", reputation_target="rep:3"
)
LUA = "envoy.filters.http.lua"


def _checks() -> dict[tuple[str, str], strict_json.BodyCheck]:
    return {(c.verb, c.template): c for c in strict_json.body_checks(API)}


def test_every_http_rule_with_a_body_is_checked_against_its_body_message() -> None:
    checks = _checks()
    with_body = {(b.method.upper(), b.template) for m in API.methods() for b in m.bindings if b.body and not b.custom}
    assert set(checks) == with_body
    assert checks["POST", "/api/v1/vote"].message == ".aimusicstore.vote.v1.CastVoteRequest"
    assert checks["POST", "/api/v1/votes:batchCreate"].message == ".aimusicstore.vote.v1.BatchCastVotesRequest"
    # `body: "song"`: the JSON body is the Song itself, not the request.
    assert checks["POST", "/api/v1/songs"].message == ".aimusicstore.ranking.v1.Song"
    assert checks["PATCH", "/api/v1/agents/{agent_id}"].message == ".aimusicstore.reputation.v1.UpdateAgentRequest"


def test_route_regexes_take_the_paths_the_transcoder_takes() -> None:
    checks = _checks()
    vote = checks["POST", "/api/v1/vote"].path_regex
    for path in ["/api/v1/vote", "/api/v1/vote/", "/api/v1/vote//"]:
        assert re.fullmatch(vote, path), path
    for path in ["/api/v1/votes", "/api/v1/vote/x", "/api/v1/votex"]:
        assert not re.fullmatch(vote, path), path
    patch = checks["PATCH", "/api/v1/agents/{agent_id}"].path_regex
    assert re.fullmatch(patch, "/api/v1/agents/a%2Fb/") and not re.fullmatch(patch, "/api/v1/agents/a/keys")


def test_two_rules_of_one_method_on_the_same_paths_are_refused() -> None:
    a = strict_json.BodyCheck("POST", "/api/v1/things/{id}", "/x.S/A", ".x.A")
    b = strict_json.BodyCheck("POST", "/api/v1/things/{name}", "/x.S/B", ".x.B")
    with pytest.raises(ValueError, match="also matched"):
        strict_json._check_unambiguous([a, b])
    strict_json._check_unambiguous([a, strict_json.BodyCheck("PATCH", b.template, b.grpc_path, b.message)])


def _schema_lines(message: str) -> set[str]:
    script = strict_json.lua_script(API, message)
    return {line for line in script.splitlines() if re.match(r"M\d+\[", line)}


def test_the_schema_knows_every_field_by_both_names_with_its_json_kind() -> None:
    vote = _schema_lines(".aimusicstore.vote.v1.CastVoteRequest")
    assert 'M0["item_type"] = {k="s"}' in vote and 'M0["itemType"] = {k="s"}' in vote
    assert 'M0["rating"] = {k="i32"}' in vote
    assert not any('"stars"' in line for line in vote)
    batch = _schema_lines(".aimusicstore.vote.v1.BatchCastVotesRequest")
    assert 'M0["votes"] = {k="l", e={k="m", m=M1}}' in batch  # a list of objects, each checked too
    assert 'M1["item_id"] = {k="s"}' in batch
    tool = _schema_lines(".aimusicstore.ranking.v1.Tool")
    assert 'M0["features"] = {k="l", e={k="s"}}' in tool
    assert 'M0["pricing"] = {k="obj"}' in tool  # a Struct: any object
    assert 'M0["created_at"] = {k="s"}' in tool  # a Timestamp: a string
    assert 'M0["rating"] = {k="f"}' in tool
    agent = _schema_lines(".aimusicstore.reputation.v1.UpdateAgentRequest")
    assert 'M0["flagged"] = {k="b"}' in agent


def test_body_routes_check_before_transcoding_and_route_like_every_json_call() -> None:
    config = envoy_config.build(SETTINGS, Path("/gen"))
    hcm = next(
        listener["filter_chains"][0]["filters"][0]["typed_config"]
        for listener in config["static_resources"]["listeners"]
        if listener["name"] == "gateway"
    )
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    scripts = {id(r): r.get("typed_per_filter_config", {}).get(LUA, {}).get("source_code", {}) for r in routes}
    checked = [r for r in routes if "envoy_on_request(handle)" in scripts[id(r)].get("inline_string", "")]
    assert len(checked) == len(_checks())
    catch_all = routes[-1]
    assert catch_all["match"] == {"prefix": "/"}
    for route in checked:
        assert route["route"] == catch_all["route"]
        # The buffer and the transcoder stay on; only the cache is off.
        assert set(route["typed_per_filter_config"]) == {"envoy.filters.http.cache_v2", LUA}
        assert routes.index(route) < len(routes) - 1
    # The Lua filter runs after the body is buffered and before the transcoder.
    names = [f["name"] for f in hcm["http_filters"]]
    assert (
        names.index("envoy.filters.http.buffer")
        < names.index(LUA)
        < names.index("envoy.filters.http.grpc_json_transcoder")
    )
    # Its answers keep their JSON: the first mapper that could match a 400.
    mappers = hcm["local_reply_config"]["mappers"]
    mine = mappers.index(strict_json.local_reply_mapper())
    first_400 = next(
        i
        for i, m in enumerate(mappers)
        if "status_code_filter" in m["filter"]
        and m["filter"]["status_code_filter"]["comparison"]["value"]["default_value"] == 400
    )
    assert mine < first_400
    assert strict_json.local_reply_mapper()["filter"]["metadata_filter"]["match_if_key_not_found"] is False
