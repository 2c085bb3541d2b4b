"""The gateway's rate limits per client address, as generated for Envoy
(gateway/rate_limits.py). tests/integration/test_rate_limits.py drives them
through the real Envoy; test_envoy_config.py has the binary validate them."""

from __future__ import annotations

import re
from typing import Any

import pytest

from gateway import descriptors, rate_limits
from gateway.envoy_config import API, build
from gateway.rate_limits import REQUESTS_ONLY, Limit, is_read, write_classes
from services.common.config import GatewaySettings

SETTINGS = GatewaySettings(
    gateway_port=9999,
    api_port=9998,
    vote_target="vote:1",
    ranking_target="ranking:2",
    reputation_target="rep:3",
    xff_trusted_hops=1,
    rate_limit_registrations_per_min=10,
    rate_limit_submissions_per_min=30,
    rate_limit_votes_per_min=600,
    rate_limit_reads_per_min=6000,
    rate_limit_addresses=5000,
)
REGISTER = "/aimusicstore.reputation.v1.AgentService/RegisterAgent"


def _listeners(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        listener["name"]: listener["filter_chains"][0]["filters"][0]["typed_config"]
        for listener in config["static_resources"]["listeners"]
    }


def _limiters(hcm: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f["name"].removeprefix("aimusicstore.rate_limit_"): f["typed_config"]
        for f in hcm["http_filters"]
        if f["typed_config"]["@type"] == rate_limits.LOCAL_RATE_LIMIT
    }


def _counts(limiter: dict[str, Any], path: str) -> bool:
    """Whether the filter makes a descriptor for a request to this :path."""
    (action, _) = limiter["rate_limits"][0]["actions"]
    if "generic_key" in action:
        return True
    (header,) = action["header_value_match"]["headers"]
    return re.search(header["string_match"]["safe_regex"]["regex"], path) is not None


def test_each_limit_is_a_bucket_of_a_minutes_allowance_per_client_address() -> None:
    limiters = _limiters(_listeners(build(SETTINGS))["gateway"])
    assert list(limiters) == ["reads", "registrations", "submissions", "votes"]
    per_minute = {"reads": 6000, "registrations": 10, "submissions": 30, "votes": 600}
    for name, limiter in limiters.items():
        (descriptor,) = limiter["descriptors"]
        # An empty value is Envoy's wildcard: one bucket per address seen.
        assert descriptor["entries"] == [{"key": "limit", "value": name}, {"key": "masked_remote_address"}]
        want = per_minute[name]
        assert descriptor["token_bucket"] == {"max_tokens": want, "tokens_per_fill": want, "fill_interval": "60s"}
        (rule,) = limiter["rate_limits"]
        assert rule["actions"][1] == {"masked_remote_address": {"v4_prefix_mask_len": 32, "v6_prefix_mask_len": 64}}
        assert limiter["max_dynamic_descriptors"] == 5000
        # Envoy's default is to neither enable nor enforce.
        for key in ("filter_enabled", "filter_enforced"):
            assert limiter[key]["default_value"] == {"numerator": 100, "denominator": "HUNDRED"}
        assert limiter["rate_limited_as_resource_exhausted"] is True
        assert "token_bucket" not in limiter  # what no descriptor counts passes


@pytest.mark.parametrize(
    ("per_minute", "retry_after_s"), [(1, 60), (7, 9), (10, 6), (30, 2), (60, 1), (600, 1), (6000, 1)]
)
def test_retry_after_is_the_time_an_empty_bucket_takes_to_hold_one_request(per_minute: int, retry_after_s: int) -> None:
    limit = Limit("votes", per_minute, ("/x",))
    assert limit.retry_after_s == retry_after_s
    headers = {
        h["header"]["key"]: h["header"]["value"]
        for h in rate_limits.rate_limit_filter(limit, 1)["typed_config"]["response_headers_to_add"]
    }
    assert headers == {
        "retry-after": str(retry_after_s),
        "x-rate-limit": f"{per_minute} votes a minute per client address",
    }
    assert Limit("reads", 6000).policy == "6000 requests a minute per client address"


def test_writes_are_told_apart_by_their_grpc_method() -> None:
    limiters = _limiters(_listeners(build(SETTINGS))["gateway"])
    counted = {
        "registrations": [REGISTER],
        "submissions": [
            "/aimusicstore.ranking.v1.CatalogService/CreateSong",
            "/aimusicstore.ranking.v1.CatalogService/CreateTool",
        ],
        "votes": ["/aimusicstore.vote.v1.VoteService/CastVote", "/aimusicstore.vote.v1.VoteService/RetractVote"],
    }
    for name, paths in counted.items():
        for path in paths:
            assert [n for n, limiter in limiters.items() if _counts(limiter, path)] == ["reads", name], path
    # What the JSON transcoder is handed before it rewrites a call, or a
    # lookalike, is not a write: only the method the call becomes counts.
    for path in ["/api/v1/agents", REGISTER + "X", "/x" + REGISTER, "/aimusicstore.vote.v1.VoteService/GetVoteCounts"]:
        assert [n for n, limiter in limiters.items() if _counts(limiter, path)] == ["reads"], path


def test_the_json_writes_are_the_methods_counted() -> None:
    """POST /api/v1/agents is RegisterAgent, and so on: the JSON calls the limits are about."""
    bindings = {(b.method, b.template): m.path for m in API.methods() for b in m.bindings}
    assert bindings[("post", "/api/v1/agents")] == REGISTER
    classes = write_classes(API)
    assert bindings[("post", "/api/v1/songs")] in classes["submissions"]
    assert bindings[("post", "/api/v1/tools")] in classes["submissions"]
    assert bindings[("post", "/api/v1/vote")] in classes["votes"]
    assert bindings[("delete", "/api/v1/vote/{item_type}/{item_id}")] in classes["votes"]


def test_every_write_has_a_limit_of_its_own_or_is_listed_as_counted_only_as_a_request() -> None:
    classes = write_classes(API)
    writes = {m.path for m in API.methods() if not is_read(m)}
    assert writes == {p for paths in classes.values() for p in paths} | set(REQUESTS_ONLY)
    assert not any(is_read(API.method(p)) for paths in classes.values() for p in paths)


def test_a_new_write_without_a_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rate_limits, "REQUESTS_ONLY", REQUESTS_ONLY[1:])
    with pytest.raises(ValueError, match="has no rate limit"):
        write_classes(descriptors.load())
    monkeypatch.setattr(rate_limits, "REQUESTS_ONLY", (*REQUESTS_ONLY, "/aimusicstore.vote.v1.VoteService/Gone"))
    with pytest.raises(ValueError, match="not a public method"):
        write_classes(descriptors.load())


def test_the_client_address_is_the_peers_or_from_trusted_hops_on_the_public_listener_only() -> None:
    listeners = _listeners(build(SETTINGS))
    gateway = listeners["gateway"]
    assert gateway["use_remote_address"] is True and gateway["xff_num_trusted_hops"] == 1
    # The client's X-Request-Id is still the one the services log.
    assert gateway["preserve_external_request_id"] is True
    default = _listeners(build(GatewaySettings(**{**SETTINGS.__dict__, "xff_trusted_hops": 0})))["gateway"]
    assert default["xff_num_trusted_hops"] == 0
    # The loopback listeners are called by the gateway itself: no limits
    # there (every request would come from 127.0.0.1, counted twice).
    for name in ("api", "stats"):
        assert "use_remote_address" not in listeners[name] and not _limiters(listeners[name]), name


def test_past_a_limit_the_reply_is_the_json_error_or_resource_exhausted_for_grpc() -> None:
    mappers = _listeners(build(SETTINGS))["gateway"]["local_reply_config"]["mappers"]
    on_429 = [m for m in mappers if "429" in str(m["filter"])]
    grpc, json_reply = on_429
    _, content_type, not_transcoded = grpc["filter"]["and_filter"]["filters"]
    assert content_type["header_filter"]["header"]["string_match"] == {"prefix": "application/grpc"}
    # A JSON call refused after the transcoder has gRPC headers by then.
    assert not_transcoded["header_filter"]["header"] == {
        "name": "x-envoy-original-method",
        "present_match": True,
        "invert_match": True,
    }
    message = "too many requests: the limit is %RESP(x-rate-limit)%; retry in %RESP(RETRY-AFTER)% s"
    assert grpc["body_format_override"] == {"text_format_source": {"inline_string": message}}
    assert json_reply["body_format_override"] == {
        "json_format": {"code": 8, "message": message},
        "content_type": "application/json",
    }
    assert mappers.index(grpc) < mappers.index(json_reply)
