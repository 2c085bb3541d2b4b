from __future__ import annotations

import re
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from aimusicstore.api.v1 import annotations_pb2 as api_annotations
from gateway import descriptors, envoy_config
from gateway.envoy_config import (
    CACHE_CONTROL,
    EDGE_CACHED_QUERIES,
    PUBLIC_SERVICES,
    _template_regex,
    build,
    cached_read_paths,
    cors_policy,
    edge_cached_requests,
    http_rules,
    otlp_target,
    sample_path,
)
from services.common import vocabulary
from services.common.config import GatewaySettings
from services.common.errors import ConfigError
from services.common.healthcheck import LIVENESS_SERVICE

SETTINGS = GatewaySettings(
    gateway_port=9999, api_port=9998, vote_target="vote:1", ranking_target="ranking:2", reputation_target="rep:3"
)


def _listeners(config: dict) -> dict[str, dict]:
    return {
        listener["name"]: listener["filter_chains"][0]["filters"][0]["typed_config"]
        for listener in config["static_resources"]["listeners"]
    }


def _routes(hcm: dict) -> list[dict]:
    return hcm["route_config"]["virtual_hosts"][0]["routes"]


def _method_of(route: dict) -> str | None:
    for header in route["match"].get("headers", []):
        if header["name"] == ":method" and not header.get("invert_match"):
            return str(header["string_match"]["exact"])
    return None


def test_public_listener_caches_reads_and_transcodes_the_rest_itself() -> None:
    config = build(SETTINGS, Path("/gen"))
    gateway = _listeners(config)["gateway"]
    assert [f["name"] for f in gateway["http_filters"]] == [
        # Every request counts, edge-cached reads included (tests/unit/test_rate_limits.py).
        "aimusicstore.rate_limit_reads",
        "envoy.filters.http.buffer",
        "envoy.filters.http.lua",
        "envoy.filters.http.cache_v2",
        "envoy.filters.http.grpc_json_transcoder",
        # Writes, by the gRPC method the transcoder has turned each call into.
        "aimusicstore.rate_limit_registrations",
        "aimusicstore.rate_limit_submissions",
        "aimusicstore.rate_limit_votes",
        "envoy.filters.http.router",
    ]
    routes = _routes(gateway)
    cached = [r for r in routes if "safe_regex" in r["match"] and "route" in r and _method_of(r) == "GET"]
    assert {r["match"]["safe_regex"]["regex"] for r in cached} == set(cached_read_paths())
    for route in cached:  # through the cache to the transcoding listener
        assert route["route"]["cluster"] == "api"
        method, path = route["match"]["headers"]
        assert method == {"name": ":method", "string_match": {"exact": "GET"}}
        assert path["name"] == ":path" and path["string_match"]["safe_regex"]["regex"].endswith("$")
        assert set(route["typed_per_filter_config"]) == {
            "envoy.filters.http.grpc_json_transcoder",
            "envoy.filters.http.lua",  # one Host for every cached entry
        }
    # Every other JSON call is transcoded here, past a disabled cache.
    assert routes[-1]["match"] == {"prefix": "/"}
    assert list(routes[-1]["typed_per_filter_config"]) == ["envoy.filters.http.cache_v2"]
    addresses = {ln["name"]: ln["address"]["socket_address"] for ln in config["static_resources"]["listeners"]}
    assert addresses["gateway"]["port_value"] == 9999
    assert addresses["api"] == {"address": "127.0.0.1", "port_value": 9998}


def test_cached_read_paths_come_from_the_http_rules() -> None:
    paths = cached_read_paths()
    assert "^/api/v1/trending$" in paths
    assert "^/api/v1/top/[^/]+$" in paths
    # History is not kept at the edge: one entry per item would be unbounded.
    assert not any("history" in p or "/vote" in p for p in paths)


@pytest.mark.parametrize(
    ("url", "cached"),
    [
        ("/api/v1/trending", True),
        ("/api/v1/trending?limit=1", True),
        ("/api/v1/trending?limit=50", True),
        ("/api/v1/trending?limit=51", False),
        ("/api/v1/trending?limit=07", False),
        ("/api/v1/trending?limit=5&limit=6", False),
        ("/api/v1/trending?genre=rock", False),
        ("/api/v1/trending?", False),
        ("/api/v1/top/daily", True),
        ("/api/v1/top/all_time?item_type=tool&limit=25&sort=best", True),
        ("/api/v1/top/weekly?limit=100&sort=controversial", True),
        ("/api/v1/top/monthly?item_type=song&sort=score", True),
        ("/api/v1/top/weekly?sort=best&item_type=tool", False),  # not alphabetical
        ("/api/v1/top/weekly?limit=33", False),
        ("/api/v1/top/weekly?date=2026-01-01", False),
        ("/api/v1/top/yearly", False),
        ("/api/v1/top/daily?genre=rock", False),
    ],
)
def test_the_edge_caches_a_fixed_set_of_urls(url: str, cached: bool) -> None:
    """RE2 and Python agree on these regexes (no look-around, no back-references)."""
    matched = [
        (path, full)
        for path, full in edge_cached_requests()
        if re.match(path, url.split("?")[0]) and re.match(full, url)
    ]
    assert bool(matched) == cached


def test_the_edge_cache_keeps_every_value_of_the_vocabulary() -> None:
    cached = edge_cached_requests()
    for period in vocabulary.CHART_PERIODS:
        for item_type in vocabulary.ITEM_TYPES:
            for sort in vocabulary.CHART_SORTS:
                url = f"/api/v1/top/{period}?item_type={item_type}&sort={sort}"
                assert any(re.match(path, url.split("?")[0]) and re.match(full, url) for path, full in cached), url


def test_the_edge_cached_reads_are_those_the_protos_mark() -> None:
    assert sorted(EDGE_CACHED_QUERIES) == sorted(descriptors.load().edge_cached_methods())


def test_a_read_marked_edge_cached_without_its_cached_queries_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(descriptors.DESCRIPTOR_SET.read_bytes())
    (chart,) = [
        method
        for file in descriptor_set.file
        for service in file.service
        for method in service.method
        if method.name == "GetTopChart"
    ]
    chart.options.Extensions[api_annotations.cache].edge_cached = False
    monkeypatch.setattr(envoy_config, "API", descriptors.ApiDescriptors(descriptor_set))
    with pytest.raises(ValueError, match="EDGE_CACHED_QUERIES"):
        build(SETTINGS)


def test_path_templates_become_anchored_regexes() -> None:
    assert _template_regex("/api/v1/{collection=songs}/{item_id}/history") == "^/api/v1/songs/[^/]+/history$"
    assert _template_regex("/files/{path=**}") == "^/files/.+$"
    with pytest.raises(ValueError, match="unsupported"):
        _template_regex("/api/v1/{name=items/*}")


def test_every_public_service_is_transcoded_and_routed_to_its_backend() -> None:
    listeners = _listeners(build(SETTINGS, Path("/gen")))
    api = listeners["api"]
    transcoder = api["http_filters"][0]["typed_config"]
    assert sorted(transcoder["services"]) == sorted(PUBLIC_SERVICES)
    for hcm in (
        listeners["gateway"],
        listeners["api"],
    ):  # native gRPC on the public port, transcoded gRPC on the API port
        prefixes = {r["match"].get("prefix"): r.get("route", {}).get("cluster") for r in _routes(hcm)}
        for service, backend in PUBLIC_SERVICES.items():
            assert prefixes[f"/{service}/"] == backend


def test_cacheable_reads_carry_cache_control() -> None:
    api = _listeners(build(SETTINGS))["api"]
    by_path = {r["match"].get("path"): r for r in _routes(api)}
    for method, value in CACHE_CONTROL.items():
        header = by_path[method]["response_headers_to_add"][0]["header"]
        assert header == {"key": "cache-control", "value": value}
    assert CACHE_CONTROL["/aimusicstore.ranking.v1.RankingService/GetTrending"] == "public, max-age=1"


def test_internal_services_have_no_route() -> None:
    internal = ("ApiKeyService", "ModerationService", "VoteLedgerService")
    for hcm in _listeners(build(SETTINGS)).values():
        assert not any(name in str(r["match"]) for r in _routes(hcm) for name in internal)
    assert "aimusicstore.reputation.v1.ApiKeyService" not in PUBLIC_SERVICES
    assert "aimusicstore.vote.v1.VoteLedgerService" not in PUBLIC_SERVICES


def test_transcoder_options_follow_the_contract() -> None:
    transcoder = _listeners(build(SETTINGS))["api"]["http_filters"][0]["typed_config"]
    assert transcoder["print_options"]["preserve_proto_field_names"] is True
    assert transcoder["print_options"]["always_print_primitive_fields"] is True
    assert transcoder["print_options"]["stream_newline_delimited"] is True
    assert transcoder["request_validation_options"]["reject_unknown_query_parameters"] is True
    assert transcoder["convert_grpc_status"] is True
    assert transcoder["max_request_body_size"] == SETTINGS.max_request_bytes


def test_clusters_point_at_the_configured_targets() -> None:
    clusters = {c["name"]: c for c in build(SETTINGS)["static_resources"]["clusters"]}
    address = clusters["ranking"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert address["socket_address"] == {"address": "ranking", "port_value": 2}
    assert "http2_protocol_options" in str(clusters["vote"])


def test_local_replies_are_json_with_a_grpc_code() -> None:
    for hcm in _listeners(build(SETTINGS)).values():
        mappers = hcm["local_reply_config"]["mappers"]
        by_status = {
            m["filter"]["status_code_filter"]["comparison"]["value"]["default_value"]: m
            for m in mappers
            if "status_code_filter" in m["filter"]
        }
        assert by_status[413]["body_format_override"]["json_format"]["code"] == 3
        assert by_status[503]["body_format_override"]["json_format"]["code"] == 14
        # Overload is told apart from an outage, and comes first (first match wins).
        assert mappers[0]["filter"] == {"response_flag_filter": {"flags": ["UO"]}}
        assert mappers[0]["headers_to_add"] == [{"header": {"key": "retry-after", "value": "1"}}]


def test_every_cluster_has_explicit_circuit_breakers() -> None:
    settings = GatewaySettings(
        **{**SETTINGS.__dict__, "max_requests_per_service": 77, "max_live_streams": 5, "max_sse_streams": 3}
    )
    clusters = {c["name"]: c for c in build(settings)["static_resources"]["clusters"]}
    assert "sidecar_sse" in clusters
    for name, cluster in clusters.items():
        (limits,) = cluster["circuit_breakers"]["thresholds"]
        want = (
            5 if name.endswith("_streams") else 3 + 64 if name == "sidecar_sse" else 4 if name == "envoy_admin" else 77
        )
        assert limits["max_requests"] == limits["max_pending_requests"] == want, name


def test_service_processes_are_health_checked_on_liveness_and_never_routed_when_unhealthy() -> None:
    clusters = {c["name"]: c for c in build(SETTINGS)["static_resources"]["clusters"]}
    for name in ["vote", "ranking", "reputation", "vote_streams"]:
        (check,) = clusters[name]["health_checks"]
        # Liveness, not the empty name: that one is NOT_SERVING during a Redis
        # outage, when the services still take votes.
        assert check["grpc_health_check"] == {"service_name": LIVENESS_SERVICE}, name
        assert check["no_traffic_interval"] == check["interval"] == "1s", name
        assert clusters[name]["common_lb_config"] == {"healthy_panic_threshold": {"value": 0}}, name
    for name in ["sidecar_grpc", "sidecar_http", "api"]:
        assert "health_checks" not in clusters[name], name


def test_live_streams_have_a_cluster_of_their_own() -> None:
    config = build(SETTINGS)
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    assert clusters["vote_streams"]["load_assignment"]["endpoints"] == clusters["vote"]["load_assignment"]["endpoints"]
    for hcm in (_listeners(config)["gateway"], _listeners(config)["api"]):
        watch = [r for r in _routes(hcm) if r["match"].get("path") == "/aimusicstore.vote.v1.VoteService/WatchVotes"]
        assert [r["route"]["cluster"] for r in watch] == ["vote_streams"]


def test_a_service_may_run_as_several_processes() -> None:
    settings = GatewaySettings(**{**SETTINGS.__dict__, "vote_target": "vote-a:1, vote-b:2"})
    clusters = {c["name"]: c for c in build(settings)["static_resources"]["clusters"]}
    for name in ("vote", "vote_streams"):
        endpoints = clusters[name]["load_assignment"]["endpoints"][0]["lb_endpoints"]
        addresses = [e["endpoint"]["address"]["socket_address"] for e in endpoints]
        assert addresses == [{"address": "vote-a", "port_value": 1}, {"address": "vote-b", "port_value": 2}]


def _answered_405(config: dict, method: str, path: str) -> dict | None:
    for route in _routes(_listeners(config)["gateway"]):
        if route.get("direct_response", {}).get("status") != 405:
            continue
        refused = [h["string_match"]["exact"] for h in route["match"]["headers"]]
        if re.fullmatch(route["match"]["safe_regex"]["regex"], path) and method not in refused:
            return route
    return None


def test_no_method_an_http_rule_serves_is_refused_405() -> None:
    config = build(SETTINGS)
    rules = http_rules()
    assert ("POST", "/api/v1/vote") in rules and len(rules) > 15
    for method, template in rules:
        assert _answered_405(config, method, sample_path(template)) is None, (method, template)


def test_a_known_path_with_another_method_is_405_with_allow() -> None:
    config = build(SETTINGS)
    route = _answered_405(config, "PUT", "/api/v1/vote")
    assert route is not None
    assert route["response_headers_to_add"] == [{"header": {"key": "allow", "value": "POST"}}]
    route = _answered_405(config, "POST", "/api/v1/songs/abc")
    assert route is not None
    assert route["response_headers_to_add"][0]["header"]["value"] == "DELETE, GET"
    assert _answered_405(config, "GET", "/api/v1/no-such-thing") is None


def _with(**changes: object) -> GatewaySettings:
    return GatewaySettings(**{**SETTINGS.__dict__, **changes})


def test_admin_interface_is_never_on_a_network_address_unless_asked_and_then_on_loopback() -> None:
    assert "admin" not in build(_with(metrics_port=0))
    # The stats listener needs it: a socket in the abstract namespace.
    assert build(SETTINGS)["admin"]["address"] == {"pipe": {"path": "@aimusicstore-envoy-admin-9999"}}
    config = build(_with(admin_port=9901))
    assert config["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 9901}


def test_stats_listener_serves_prometheus_stats_and_no_other_admin_page() -> None:
    config = build(_with(metrics_port=9901))
    listener = next(x for x in config["static_resources"]["listeners"] if x["name"] == "stats")
    assert listener["address"]["socket_address"]["port_value"] == 9901
    routes = _routes(_listeners(config)["stats"])
    to_admin = [r for r in routes if "route" in r]
    assert {r["match"]["path"] for r in to_admin} == {"/stats/prometheus", "/metrics"}
    assert all(r["route"]["prefix_rewrite"] == "/stats/prometheus" for r in to_admin)
    assert all(r["match"]["headers"][0]["string_match"]["exact"] == "GET" for r in to_admin)
    assert routes[-1]["direct_response"]["status"] == 404
    assert "stats" not in _listeners(build(_with(metrics_port=0)))


def test_public_requests_are_access_logged_as_json_with_the_request_id() -> None:
    hcm = _listeners(build(SETTINGS))["gateway"]
    (log,) = hcm["access_log"]
    fields = log["typed_config"]["log_format"]["json_format"]
    assert fields["x_request_id"] == "%REQ(X-REQUEST-ID)%"
    assert {"status", "grpc_status", "duration_ms", "path", "flags"} <= set(fields)
    # Each request is logged once, where it enters.
    assert "access_log" not in _listeners(build(SETTINGS))["api"]
    assert "access_log" not in _listeners(build(_with(access_log=False)))["gateway"]


def test_tracing_is_on_only_with_an_otlp_endpoint() -> None:
    assert "tracing" not in _listeners(build(SETTINGS))["gateway"]
    config = build(_with(otlp_endpoint="http://collector:4317"))
    tracing = _listeners(config)["gateway"]["tracing"]
    assert tracing["provider"]["name"] == "envoy.tracers.opentelemetry"
    cluster = next(c for c in config["static_resources"]["clusters"] if c["name"] == "otlp_collector")
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert address["socket_address"] == {"address": "collector", "port_value": 4317}


@pytest.mark.parametrize(
    ("endpoint", "target"),
    [("http://collector:4317", "collector:4317"), ("collector:4318", "collector:4318"), ("http://otel/", "otel:4317")],
)
def test_otlp_endpoint_forms(endpoint: str, target: str) -> None:
    assert otlp_target(endpoint) == target


def test_the_binary_accepts_every_variant_of_the_config(tmp_path: Path) -> None:
    """Envoy's own validation (--mode validate): field names, types and
    extension names are checked by the binary the gateway runs."""
    import json
    import subprocess

    from devstack.embedded import envoy_bin

    variants = {
        "default": SETTINGS,
        "traced, admin on TCP": _with(otlp_endpoint="http://127.0.0.1:4317", admin_port=9901),
        "bare": _with(metrics_port=0, access_log=False),
        "behind two proxies, small limits": _with(
            xff_trusted_hops=2,
            rate_limit_registrations_per_min=1,
            rate_limit_submissions_per_min=7,
            rate_limit_votes_per_min=100_000,
            rate_limit_reads_per_min=1_000_000,
            rate_limit_addresses=1,
        ),
    }
    for name, settings in variants.items():
        path = tmp_path / "envoy.json"
        path.write_text(json.dumps(build(settings)))
        result = subprocess.run([envoy_bin(), "--mode", "validate", "-c", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, f"{name}: {result.stdout[-2000:]}{result.stderr[-2000:]}"


def test_the_gateway_strips_the_service_credential_from_what_clients_send() -> None:
    for hcm in _listeners(build(SETTINGS)).values():
        assert "x-aimusicstore-service" in hcm["route_config"]["request_headers_to_remove"]


def test_the_service_credential_is_derived_from_the_admin_key_unless_set() -> None:
    from services.common.credentials import service_credential

    derived = service_credential("admin-key-0123456789")
    assert derived == service_credential("admin-key-0123456789") != service_credential("another-admin-key-0123")
    assert "admin-key" not in derived and len(derived) == 64
    assert service_credential("admin-key-0123456789", "configured-token") == "configured-token"


def _gateway_hcm(settings: GatewaySettings) -> dict:
    return _listeners(build(settings))["gateway"]


def test_cors_is_off_unless_origins_are_configured() -> None:
    hcm = _gateway_hcm(SETTINGS)
    assert "envoy.filters.http.cors" not in [f["name"] for f in hcm["http_filters"]]
    assert "typed_per_filter_config" not in hcm["route_config"]["virtual_hosts"][0]


def test_configured_origins_may_read_and_preflight() -> None:
    settings = GatewaySettings.from_env(
        {"AIMUSICSTORE_CORS_ALLOWED_ORIGINS": "https://a.example, http://b.example:8000/"}
    )
    hcm = _gateway_hcm(settings)
    names = [f["name"] for f in hcm["http_filters"]]
    # After the per-address limit (preflights count), before the cache and the transcoder.
    assert names.index("envoy.filters.http.cors") == 1
    vhost = hcm["route_config"]["virtual_hosts"][0]
    policy = vhost["typed_per_filter_config"]["envoy.filters.http.cors"]
    assert policy["allow_origin_string_match"] == [{"exact": "https://a.example"}, {"exact": "http://b.example:8000"}]
    assert policy["allow_methods"] == "GET, HEAD, OPTIONS"
    first = vhost["routes"][0]
    assert first["match"]["headers"][0] == {"name": ":method", "string_match": {"exact": "OPTIONS"}}
    assert "route" in first  # forwarded, so the CORS filter answers it
    anyone = GatewaySettings.from_env({"AIMUSICSTORE_CORS_ALLOWED_ORIGINS": "*"})
    assert cors_policy(anyone.cors_origins())["allow_origin_string_match"] == [{"safe_regex": {"regex": ".*"}}]


@pytest.mark.parametrize("origin", ["example.com", "https://a.example/path", "ftp://a.example", "https://a b"])
def test_a_malformed_origin_is_refused_at_start(origin: str) -> None:
    with pytest.raises(ConfigError, match="AIMUSICSTORE_CORS_ALLOWED_ORIGINS"):
        GatewaySettings.from_env({"AIMUSICSTORE_CORS_ALLOWED_ORIGINS": origin})


def test_browsers_feed_and_pages_go_to_the_sidecar_and_ndjson_is_relabelled() -> None:
    routes = _routes(_gateway_hcm(SETTINGS))
    sse = next(r for r in routes if r.get("route", {}).get("cluster") == "sidecar_sse")
    assert sse["match"]["path"] == "/api/v1/events"
    assert {"name": "accept", "string_match": {"contains": "text/event-stream", "ignore_case": True}} in sse["match"][
        "headers"
    ]
    assert sse["route"]["timeout"] == "0s"
    # Before the NDJSON route of the same path, which the transcoder serves.
    ndjson = next(r for r in routes if r["match"].get("path") == "/api/v1/events" and r is not sse)
    assert routes.index(sse) < routes.index(ndjson)
    for route in (ndjson, next(r for r in routes if r["match"].get("path") == envoy_config.WATCH_VOTES)):
        script = route["typed_per_filter_config"]["envoy.filters.http.lua"]["source_code"]["inline_string"]
        assert "application/x-ndjson" in script and '":status") == "200"' in script
    pages: dict[str, dict] = {}
    for r in routes:
        if "route" in r:  # the first route of each path is the one that serves it
            pages.setdefault(r["match"].get("path") or r["match"].get("prefix"), r)
    for path in ("/", "/docs", "/assets/"):
        assert pages[path]["route"]["cluster"] == "sidecar_http", path
    assert next(r for r in routes if r["match"].get("path") == "/docs/reference")["direct_response"]["status"] == 200
