"""Builds the Envoy configuration: the one source for the gateway.

`python -m gateway.envoy_config OUT.json` writes it from the environment
(GatewaySettings). One listener serves the JSON API (transcoded to gRPC),
native gRPC for every public service, /health (via the sidecar),
/openapi.json and /docs (files generated from the protos), with rate limits
per client address (gateway/rate_limits.py). What the protos
say (public services, streaming methods, http rules, cache rules) comes from
their descriptor set, through gateway/descriptors.py.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from gateway import descriptors, rate_limits, strict_json
from services.common import vocabulary
from services.common.config import GatewaySettings
from services.common.credentials import CLIENT_ADDRESS_KEY, SERVICE_CREDENTIAL_KEY
from services.common.healthcheck import LIVENESS_SERVICE

GENERATED = Path(__file__).resolve().parent / "generated"

API = descriptors.load()
# Public gRPC services and the backend that serves each: those with http
# rules. Internal services (ApiKeyService) have none: the gateway never
# routes them.
PUBLIC_SERVICES: dict[str, str] = API.public_services()
STREAMING_METHODS: list[str] = API.streaming_methods()
# Read responses that shared caches may keep, and for how long: the protos'
# cache option on each read (its comment there says why).
CACHE_CONTROL: dict[str, str] = API.cache_control()
REQUEST_TIMEOUT = "15s"
REQUEST_BODY_TIMEOUT = "10s"

_TEMPLATE_VARIABLE = re.compile(r"\{([^}=]+)(?:=([^}]*))?\}")


def _template_regex(template: str) -> str:
    """A google.api.http path template as an anchored regex (RE2 syntax)."""
    out, last = [], 0
    for match in _TEMPLATE_VARIABLE.finditer(template):
        out.append(re.escape(template[last : match.start()]))
        pattern = match.group(2)
        if pattern is None or pattern == "*":
            out.append("[^/]+")
        elif pattern == "**":
            out.append(".+")
        elif "*" in pattern:
            raise ValueError(f"unsupported path template variable in {template!r}")
        else:
            out.append(re.escape(pattern))
        last = match.end()
    out.append(re.escape(template[last:]))
    return "^" + "".join(out) + "$"


# What Envoy's edge cache may store (of the reads the protos mark
# edge_cached): the query strings each cached read is stored under, spelled
# exactly one way (parameters in alphabetical order, no leading zeros). The
# set is small and fixed, so the cache's size is bounded
# whatever clients send (Envoy's simple cache never evicts: a loop over
# random ?genre= values grew it until the gateway was killed). Any other
# query string of these reads (filters, a date, another spelling or limit)
# is transcoded and answered by the service, which keeps what it computes in
# bounded in-process caches; its Cache-Control still lets clients and CDNs
# keep it.
EDGE_CACHED_QUERIES: dict[str, dict[str, str]] = {
    # Parameter -> a regex of the values cached (1-50, no leading zero).
    "/aimusicstore.ranking.v1.RankingService/GetTrending": {"limit": "[1-9]|[1-4][0-9]|50"},
    "/aimusicstore.ranking.v1.RankingService/GetTopChart": {
        "item_type": "|".join(vocabulary.ITEM_TYPES),
        "limit": "10|20|25|50|100",
        "sort": "|".join(vocabulary.CHART_SORTS),
    },
}
# The path variables of the cached reads take these values in a 200 answer.
EDGE_CACHED_PATH_VALUES = {"period": "|".join(vocabulary.CHART_PERIODS)}


def _query_regex(params: dict[str, str]) -> str:
    """Every query string made of at most one of each parameter, in
    alphabetical order, with one of its listed values (or none at all)."""
    names = sorted(params)
    pairs = [f"{name}=({params[name]})" for name in names]
    alternatives = [pairs[i] + "".join(f"(&{p})?" for p in pairs[i + 1 :]) for i in range(len(pairs))]
    return r"(\?(" + "|".join(alternatives) + "))?"


def _path_template_regex(template: str) -> str:
    """The template as a regex of the paths the edge cache keeps: variables
    with a known set of values are restricted to it."""
    out, last = [], 0
    for match in _TEMPLATE_VARIABLE.finditer(template):
        out.append(re.escape(template[last : match.start()]))
        values = EDGE_CACHED_PATH_VALUES.get(match.group(1))
        out.append(f"({values})" if values else "[^/?]+")
        last = match.end()
    out.append(re.escape(template[last:]))
    return "".join(out)


def _get_bindings(method_path: str) -> list[str]:
    """The path templates of an edge-cached read (a GET: descriptors checks)."""
    return [binding.template for binding in API.method(method_path).bindings]


def _edge_cached_queries() -> dict[str, dict[str, str]]:
    """EDGE_CACHED_QUERIES, checked against the reads the protos mark edge_cached."""
    marked = API.edge_cached_methods()
    if sorted(marked) != sorted(EDGE_CACHED_QUERIES):
        raise ValueError(f"edge-cached reads {marked} and EDGE_CACHED_QUERIES {list(EDGE_CACHED_QUERIES)} differ")
    return EDGE_CACHED_QUERIES


def cached_read_paths() -> list[str]:
    """Regexes of the JSON GET paths the edge cache serves (read from the
    protos' http rules so they cannot drift); see edge_cached_requests."""
    return [_template_regex(t) for method in _edge_cached_queries() for t in _get_bindings(method)]


def edge_cached_requests() -> list[tuple[str, str]]:
    """(path regex, full :path regex with its query string) of each read the
    edge cache serves: only the bounded key set of EDGE_CACHED_QUERIES."""
    out = []
    for method, params in _edge_cached_queries().items():
        for template in _get_bindings(method):
            full = "^" + _path_template_regex(template) + _query_regex(params) + "$"
            out.append((_template_regex(template), full))
    return out


_TYPE = "@type"
_JSON = {"key": "content-type", "value": "application/json"}


def http_rules() -> list[tuple[str, str]]:
    """Every (HTTP method, path template) of the public services' http rules."""
    return [
        (binding.method.upper(), binding.template)
        for method in API.methods()
        for binding in method.bindings
        if not binding.custom
    ]


def sample_path(template: str) -> str:
    """A concrete path the template matches (each variable as 'x', or its literal pattern)."""
    return _TEMPLATE_VARIABLE.sub(lambda m: m.group(2) if m.group(2) and "*" not in m.group(2) else "x", template)


def allowed_methods() -> dict[str, list[str]]:
    """Path regex -> the methods some http rule serves on the paths it matches.

    A template's methods include those of any other template matching its
    paths too, so a method served there is never answered 405 here."""
    by_template: dict[str, set[str]] = {}
    for verb, template in http_rules():
        by_template.setdefault(template, set()).add(verb)
    allowed = {}
    for template in by_template:
        regex = _template_regex(template)
        methods = set()
        for other, verbs in by_template.items():
            if re.fullmatch(regex, sample_path(other)) or re.fullmatch(_template_regex(other), sample_path(template)):
                methods |= verbs
        allowed[regex] = sorted(methods)
    return allowed


# The gateway's own endpoints besides the API: read-only.
PLAIN_GET_PATHS = ("/health", "/openapi.json", "/docs", "/docs/reference", "/")
# The live feed: NDJSON from the transcoder, or Server-Sent Events from the
# sidecar for clients that accept them (browsers' EventSource).
EVENTS_PATH = "/api/v1/events"
WATCH_VOTES = "/aimusicstore.vote.v1.VoteService/WatchVotes"
SSE_CLUSTER = "sidecar_sse"
SSE_HEADROOM = 64


def _method_not_allowed_routes() -> list[dict[str, Any]]:
    """A known path with a method it does not take: 405 with an Allow header
    (the transcoder alone would answer 404, as for a path that does not exist)."""
    routes = []
    rules = allowed_methods() | {f"^{re.escape(path)}$": ["GET"] for path in PLAIN_GET_PATHS}
    for regex, methods in sorted(rules.items()):
        routes.append(
            {
                "match": {
                    "safe_regex": {"regex": regex},
                    "headers": [
                        {"name": ":method", "string_match": {"exact": m}, "invert_match": True} for m in methods
                    ],
                },
                "direct_response": {
                    "status": 405,
                    "body": {"inline_string": f"method not allowed on this path; it takes {', '.join(methods)}"},
                },
                "response_headers_to_add": [{"header": {"key": "allow", "value": ", ".join(methods)}}],
                "typed_per_filter_config": _filters_off(_BUFFER, _CACHE, _TRANSCODER),
            }
        )
    return routes


def _json_error(status: int, grpc_code: int, message: str) -> dict[str, Any]:
    return {
        "filter": {
            "status_code_filter": {
                "comparison": {"op": "EQ", "value": {"default_value": status, "runtime_key": f"unused_{status}"}}
            }
        },
        "body_format_override": {
            "json_format": {"code": grpc_code, "message": message},
            "content_type": "application/json",
        },
    }


def _local_reply_config() -> dict[str, Any]:
    # Replies Envoy makes itself (malformed JSON, unknown path or query
    # parameter, oversized body, backend down) get the same JSON error shape
    # as errors from the services: {"code": <grpc code>, "message": "..."}.
    body = "%LOCAL_REPLY_BODY%"
    return {
        "mappers": [
            # A circuit breaker tripped (UO: upstream overflow): the service is
            # at capacity, not down. Say so, and when to come back.
            {
                "filter": {"response_flag_filter": {"flags": ["UO"]}},
                "headers_to_add": [{"header": {"key": "retry-after", "value": "1"}}],
                "body_format_override": {
                    "json_format": {"code": 14, "message": "the service is at capacity; retry in a second"},
                    "content_type": "application/json",
                },
            },
            # A JSON body the strict check refused: its answer is the API's
            # JSON error already, with the field's BadRequest detail.
            strict_json.local_reply_mapper(),
            _json_error(400, 3, body),
            _json_error(401, 16, body),
            _json_error(403, 7, body),
            _json_error(404, 5, body),
            _json_error(405, 12, body),
            _json_error(413, 3, "request body is too large"),
            _json_error(415, 3, body),
            # Past a rate limit (the only 429 Envoy makes itself).
            *rate_limits.local_reply_mappers(),
            _json_error(431, 3, "request headers are too large"),
            _json_error(500, 13, body),
            _json_error(502, 14, "a backend service is unavailable; retry shortly"),
            _json_error(503, 14, "a backend service is unavailable; retry shortly"),
            _json_error(504, 4, "the request timed out; retry"),
        ]
    }


def _endpoint(target: str) -> dict[str, Any]:
    host, _, port = target.strip().rpartition(":")
    return {"endpoint": {"address": {"socket_address": {"address": host, "port_value": int(port)}}}}


def _cluster(
    name: str, target: str, max_requests: int, http2: bool = True, health_checked: bool = False
) -> dict[str, Any]:
    """`target` is host:port, or several separated by commas (processes of one
    service, balanced round robin; each needs its own port, as SO_REUSEPORT
    let Envoy's few HTTP/2 connections land on one process).

    `health_checked`: Envoy asks each process's liveness (gRPC health) every
    second, and a process that fails three in a row gets no requests until it
    answers again. A hung process is then refused at once (503, "a backend
    service is unavailable") instead of holding each request for the whole
    route timeout; with several processes, its traffic goes to the others."""
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STRICT_DNS",
        "connect_timeout": "1s",
        "dns_lookup_family": "V4_PREFERRED",
        # Explicit limits, not Envoy's silent defaults (1,024 of each): past
        # them a request is refused at once (503 + Retry-After, see
        # _local_reply_config) instead of queueing without bound.
        "circuit_breakers": {
            "thresholds": [
                {
                    "priority": "DEFAULT",
                    "max_connections": max_requests,
                    "max_pending_requests": max_requests,
                    "max_requests": max_requests,
                    "max_retries": 3,
                }
            ]
        },
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [_endpoint(t) for t in target.split(",") if t.strip()]}],
        },
    }
    if health_checked:
        cluster["health_checks"] = [
            {
                "timeout": "1s",
                "interval": "1s",
                # Envoy checks a host that has not been sent traffic yet only
                # every 60 s by default, and notices traffic only after its
                # next check: a process that hung before then would be found
                # a minute late.
                "no_traffic_interval": "1s",
                "unhealthy_threshold": 3,
                "healthy_threshold": 1,
                # Not the empty name: that one is NOT_SERVING while Redis is
                # down, when the services still take votes durably.
                "grpc_health_check": {"service_name": LIVENESS_SERVICE},
            }
        ]
        # Never route to a process known to be unhealthy. (Envoy's default
        # "panic" routes to every host once under half are healthy: with one
        # process per service, a hung one would get all traffic again.)
        cluster["common_lb_config"] = {"healthy_panic_threshold": {"value": 0}}
    if http2:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                _TYPE: "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    return cluster


def _gateway_routes(generated: Path) -> list[dict[str, Any]]:
    """The public port: plain HTTP endpoints, native gRPC straight to the
    services, the edge-cached JSON reads to the transcoding listener behind
    the cache, and every other JSON call transcoded here (one pass through
    Envoy instead of two: votes are the hot path)."""
    routes: list[dict[str, Any]] = [
        {
            "match": {"path": "/health", "headers": [_method_is("GET")]},
            "route": {"cluster": "sidecar_http", "timeout": "3s"},
        },
        {
            "match": {"path": "/openapi.json", "headers": [_method_is("GET")]},
            "direct_response": {"status": 200, "body": {"filename": str(generated / "openapi.json")}},
            "response_headers_to_add": [{"header": _JSON}],
        },
        # The browser pages (the charts page, Swagger UI and their files)
        # come from the sidecar (gateway/pages.py).
        {"match": {"path": "/", "headers": [_method_is("GET")]}, "route": {"cluster": "sidecar_http", "timeout": "5s"}},
        {
            "match": {"path": "/docs", "headers": [_method_is("GET")]},
            "route": {"cluster": "sidecar_http", "timeout": "5s"},
        },
        {
            "match": {"prefix": "/assets/", "headers": [_method_is("GET")]},
            "route": {"cluster": "sidecar_http", "timeout": "5s"},
        },
        # The static reference generated from the protos, for readers without JavaScript.
        {
            "match": {"path": "/docs/reference", "headers": [_method_is("GET")]},
            "direct_response": {"status": 200, "body": {"filename": str(generated / "docs.html")}},
            "response_headers_to_add": [{"header": {"key": "content-type", "value": "text/html; charset=utf-8"}}],
        },
        # The live feed for browsers: Server-Sent Events from the sidecar
        # (gateway/sse.py), which watches the vote service itself. A cluster
        # of its own bounds how many are open (AIMUSICSTORE_GATEWAY_MAX_SSE_STREAMS).
        {
            "match": {
                "path": EVENTS_PATH,
                "headers": [
                    _method_is("GET"),
                    {"name": "accept", "string_match": {"contains": "text/event-stream", "ignore_case": True}},
                ],
            },
            "route": {"cluster": SSE_CLUSTER, "timeout": "0s", "idle_timeout": "3600s"},
        },
        {"match": {"prefix": "/grpc.health.v1.Health/"}, "route": {"cluster": "sidecar_grpc", "timeout": "3s"}},
        {"match": {"prefix": "/grpc.reflection."}, "route": {"cluster": "sidecar_grpc", "timeout": "0s"}},
    ]
    # Only the JSON API is buffered, cached and transcoded: gRPC streams
    # (reflection is bidirectional) must not be buffered, and direct
    # responses have no upstream.
    for route in routes:
        route["typed_per_filter_config"] = _filters_off(_BUFFER, _CACHE, _TRANSCODER)
    # Native gRPC, and where a JSON call lands once the transcoder has
    # rewritten it to its gRPC path (the route is matched again).
    for route in _grpc_routes(with_cache_control=True):
        filters = _filters_off(_BUFFER, _CACHE)
        if route["match"].get("path") == WATCH_VOTES:
            filters |= _NDJSON_ON_ROUTE
        routes.append(route | {"typed_per_filter_config": filters})
    # Cached reads go through the cache to the transcoding listener, which adds
    # their Cache-Control; no timeout here: that listener enforces its own.
    for regex, full_path in edge_cached_requests():
        routes.append(
            {
                "match": {
                    "safe_regex": {"regex": regex},
                    # :path, unlike the route's own path match, includes the query string.
                    "headers": [
                        _method_is("GET"),
                        {"name": ":path", "string_match": {"safe_regex": {"regex": full_path}}},
                    ],
                },
                "route": {"cluster": "api", "timeout": REQUEST_TIMEOUT},
                "typed_per_filter_config": _filters_off(_TRANSCODER) | _ONE_HOST_ON_ROUTE,
            }
        )
    routes += _method_not_allowed_routes()
    # Calls with a JSON body: transcoded here like every other JSON call,
    # once a Lua script has checked the body against the protos (unknown
    # fields and wrong JSON types are 400, which the transcoder lets
    # through: gateway/strict_json.py).
    routes += _strict_body_routes()
    # The NDJSON feed: transcoded here like any JSON call (then routed as
    # WatchVotes), its Content-Type made application/x-ndjson.
    routes.append(
        {
            "match": {"path": EVENTS_PATH, "headers": [_method_is("GET")]},
            "route": {"cluster": "api", "timeout": "0s", "idle_timeout": "3600s"},
            "typed_per_filter_config": _filters_off(_CACHE) | _NDJSON_ON_ROUTE,
        }
    )
    # Everything else under the JSON API is transcoded on this listener. The
    # live event stream has no request timeout (its gRPC route has none).
    routes.append(
        {
            "match": {"prefix": "/"},
            "route": {"cluster": "api", "timeout": "0s", "idle_timeout": "3600s"},
            "typed_per_filter_config": _filters_off(_CACHE),
        }
    )
    return routes


def _strict_body_routes() -> list[dict[str, Any]]:
    """One route per http rule with a body (POST, PATCH), routed as the
    catch-all below, with its body checked first by a Lua script generated
    for the rule's body message (the buffer filter before it has read the
    whole body; the transcoder after it sees only checked bodies)."""
    routes = []
    for check in strict_json.body_checks(API):
        routes.append(
            {
                "match": {"safe_regex": {"regex": check.path_regex}, "headers": [_method_is(check.verb)]},
                "route": {"cluster": "api", "timeout": "0s", "idle_timeout": "3600s"},
                "typed_per_filter_config": _filters_off(_CACHE)
                | _lua_on_route(strict_json.lua_script(API, check.message)),
            }
        )
    return routes


# JSON bodies are buffered at the edge so an oversized one is refused (413)
# before it travels further, and cacheable JSON reads are cached; routes turn
# off the filters that do not apply to them.
_BUFFER = "envoy.filters.http.buffer"
_CACHE = "envoy.filters.http.cache_v2"
_TRANSCODER = "envoy.filters.http.grpc_json_transcoder"
# A Lua filter with no script of its own; routes give it theirs. On the
# edge-cached routes it sets the Host to one name before the cache keys the
# request by it (Envoy's header mutation filters refuse to touch the Host);
# on the routes that take a JSON body it checks the body (strict_json); on
# the live feed's it relabels the answer (_NDJSON_ON_ROUTE).
_LUA = "envoy.filters.http.lua"


def _lua_on_route(script: str) -> dict[str, Any]:
    return {
        _LUA: {
            _TYPE: "type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute",
            "source_code": {"inline_string": script},
        }
    }


_ONE_HOST_ON_ROUTE = _lua_on_route('function envoy_on_request(h) h:headers():replace(":authority", "aimusicstore") end')


# The transcoder labels every answer application/json, a stream of
# newline-delimited objects included. On the live feed's routes (the JSON
# path, and WatchVotes, where the call lands once transcoded: whichever the
# filter consults) a successful transcoded answer is relabelled
# application/x-ndjson, as the OpenAPI document says; errors stay JSON, and
# native gRPC (application/grpc) is left alone.
_NDJSON_ON_ROUTE = _lua_on_route(
    "function envoy_on_response(h)\n"
    "  local headers = h:headers()\n"
    '  local ct = headers:get("content-type")\n'
    '  if headers:get(":status") == "200" and ct ~= nil\n'
    '     and string.find(ct, "application/json", 1, true) == 1 then\n'
    '    headers:replace("content-type", "application/x-ndjson")\n'
    "  end\n"
    "end\n"
)


def _filters_off(*names: str) -> dict[str, Any]:
    return {name: {_TYPE: "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True} for name in names}


def _streams(backend: str) -> str:
    return f"{backend}_streams"


def _method_is(method: str) -> dict[str, Any]:
    return {"name": ":method", "string_match": {"exact": method}}


def _grpc_routes(with_cache_control: bool) -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = []
    for method in STREAMING_METHODS:
        service = method.split("/")[1]
        routes.append(
            {
                "match": {"path": method},
                # No request timeout for a live stream; an idle one is closed
                # after an hour. Streams have a cluster (and so a circuit
                # breaker budget) of their own.
                "route": {"cluster": _streams(PUBLIC_SERVICES[service]), "timeout": "0s", "idle_timeout": "3600s"},
            }
        )
    if with_cache_control:
        for method, cache_control in CACHE_CONTROL.items():
            service = method.split("/")[1]
            routes.append(
                {
                    "match": {"path": method},
                    "route": {"cluster": PUBLIC_SERVICES[service], "timeout": REQUEST_TIMEOUT},
                    "response_headers_to_add": [
                        {
                            "header": {"key": "cache-control", "value": cache_control},
                            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                        }
                    ],
                }
            )
    for service, backend in PUBLIC_SERVICES.items():
        routes.append({"match": {"prefix": f"/{service}/"}, "route": {"cluster": backend, "timeout": REQUEST_TIMEOUT}})
    return routes


def _api_routes() -> list[dict[str, Any]]:
    """The transcoding listener: requests arrive here already turned into gRPC paths."""
    routes = _grpc_routes(with_cache_control=True)
    routes.append(
        {
            "match": {"prefix": "/"},
            "direct_response": {"status": 404, "body": {"inline_string": "no such endpoint; see /docs for the API"}},
        }
    )
    return routes


# One JSON object per request on Envoy's stdout (`make run`: its log file;
# containers: the runtime's log). x_request_id is the id the services put in
# their own log lines (Envoy makes one when the client sends none), so one
# request can be followed from the edge through every service.
ACCESS_LOG_FORMAT = {
    "time": "%START_TIME%",
    "x_request_id": "%REQ(X-REQUEST-ID)%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "protocol": "%PROTOCOL%",
    "status": "%RESPONSE_CODE%",
    "grpc_status": "%GRPC_STATUS(NUMBER)%",
    "flags": "%RESPONSE_FLAGS%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "bytes_in": "%BYTES_RECEIVED%",
    "bytes_out": "%BYTES_SENT%",
    "duration_ms": "%DURATION%",
    "upstream_ms": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    "upstream": "%UPSTREAM_CLUSTER%",
    "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    "user_agent": "%REQ(USER-AGENT)%",
    "traceparent": "%REQ(TRACEPARENT)%",
}


def _access_log() -> list[dict[str, Any]]:
    return [
        {
            "name": "envoy.access_loggers.stdout",
            "typed_config": {
                _TYPE: "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                "log_format": {"json_format": ACCESS_LOG_FORMAT, "json_format_options": {"sort_properties": False}},
            },
        }
    ]


OTLP_CLUSTER = "otlp_collector"


def _tracing() -> dict[str, Any]:
    """Envoy starts each request's trace (W3C traceparent, passed on to the
    services, whose spans join it) and sends its spans to the collector."""
    return {
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                _TYPE: "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                "grpc_service": {"envoy_grpc": {"cluster_name": OTLP_CLUSTER}, "timeout": "1s"},
                "service_name": "aimusicstore-gateway",
            },
        },
        "spawn_upstream_span": True,
    }


def otlp_target(endpoint: str) -> str:
    """OTEL_EXPORTER_OTLP_ENDPOINT (http://host:4317, or host:port) as host:port."""
    rest = endpoint.split("://", 1)[-1].rstrip("/")
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        return f"{rest}:4317"
    return rest


_CORS = "envoy.filters.http.cors"


def _preflight_routes() -> list[dict[str, Any]]:
    """CORS preflights (OPTIONS with Origin and Access-Control-Request-Method)
    first: the CORS filter answers them, but only on a route that forwards
    (not on the 405 direct responses). One from another origin is passed on
    to the sidecar, which refuses it without CORS headers."""
    return [
        {
            "match": {
                "prefix": "/",
                "headers": [
                    _method_is("OPTIONS"),
                    {"name": "origin", "present_match": True},
                    {"name": "access-control-request-method", "present_match": True},
                ],
            },
            "route": {"cluster": "sidecar_http", "timeout": "3s"},
            "typed_per_filter_config": _filters_off(_BUFFER, _CACHE, _TRANSCODER),
        }
    ]


def cors_policy(origins: list[str]) -> dict[str, Any]:
    """Other sites' pages (these origins; `*`: any) may read the public API
    and the live feed: GET, HEAD and their preflights. A request from any
    other origin gets no CORS headers, so browsers keep its answer from the
    page; the service's own pages are same-origin and need none."""
    matchers = [{"safe_regex": {"regex": ".*"}} if o == "*" else {"exact": o} for o in origins]
    return {
        _TYPE: "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
        "allow_origin_string_match": matchers,
        "allow_methods": "GET, HEAD, OPTIONS",
        # EventSource sends Last-Event-ID when it reconnects.
        "allow_headers": "last-event-id, cache-control",
        "expose_headers": "retry-after, x-request-id",
        "max_age": "600",
    }


def _hcm(
    stat_prefix: str,
    routes: list[dict[str, Any]],
    filters: list[dict[str, Any]],
    *,
    cors: dict[str, Any] | None = None,
    access_log: bool = False,
    tracing: bool = False,
    xff_trusted_hops: int | None = None,
) -> dict[str, Any]:
    """`xff_trusted_hops`: on the public listener, the client address (access
    log, rate limits) is the peer's (0), or the N-th X-Forwarded-For entry
    from the right; None: a listener only the gateway itself calls."""
    router = {
        "name": "envoy.filters.http.router",
        "typed_config": {_TYPE: "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    }
    route_config: dict[str, Any] = {
        "name": stat_prefix,
        # Only our services present the service credential to each other.
        "request_headers_to_remove": [SERVICE_CREDENTIAL_KEY],
        "max_direct_response_body_size_bytes": 4 * 1024 * 1024,
        "virtual_hosts": [
            {"name": stat_prefix, "domains": ["*"], "routes": routes}
            | ({"typed_per_filter_config": {_CORS: cors}} if cors else {})
        ],
    }
    hcm = {
        _TYPE: "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": stat_prefix,
        "codec_type": "AUTO",
        "stream_idle_timeout": "300s",
        "request_headers_timeout": "10s",
        # The whole request (a JSON body is at most 64 KiB) within this, or
        # 408: a body that never completes held its stream for an hour on
        # the live-stream route. Disarmed once the request is complete, so
        # it never cuts a live event stream.
        "request_timeout": REQUEST_BODY_TIMEOUT,
        "max_request_headers_kb": 32,
        "common_http_protocol_options": {"max_headers_count": 100},
        "http2_protocol_options": {"max_concurrent_streams": 1000},
        "local_reply_config": _local_reply_config(),
        "route_config": route_config,
        "http_filters": [*filters, router],
    }
    if xff_trusted_hops is not None:
        hcm["use_remote_address"] = True
        hcm["xff_num_trusted_hops"] = xff_trusted_hops
        # An edge connection manager makes a new X-Request-Id for outside
        # requests unless told to keep the client's: the services log the
        # client's, as before (docs/operations.md).
        hcm["preserve_external_request_id"] = True
        # The services learn the client address from this header alone (a
        # registration is counted per address: docs/integrity.md), so the
        # edge sets it on every request, over any value the client sent.
        route_config["request_headers_to_add"] = [
            {
                "header": {"key": CLIENT_ADDRESS_KEY, "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                # Envoy skips a header whose value formats empty, which would
                # leave the client's own in place: set even when empty.
                "keep_empty_value": True,
            }
        ]
    if access_log:
        hcm["access_log"] = _access_log()
    if tracing:
        hcm["tracing"] = _tracing()
    return hcm


def _listener(name: str, host: str, port: int, hcm: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "address": {"socket_address": {"address": host, "port_value": port}},
        "per_connection_buffer_limit_bytes": 1024 * 1024,
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        ],
    }


ADMIN_CLUSTER = "envoy_admin"


def admin_address(settings: GatewaySettings) -> dict[str, Any] | None:
    """Where Envoy's admin interface listens: loopback TCP when an admin port
    is asked for; otherwise, when only the stats listener needs it, a socket
    in the abstract namespace (no file to create in a read-only container,
    reachable only from this network namespace); else nowhere."""
    if settings.admin_port:
        return {"socket_address": {"address": "127.0.0.1", "port_value": settings.admin_port}}
    if settings.metrics_port:
        return {"pipe": {"path": f"@aimusicstore-envoy-admin-{settings.gateway_port}"}}
    return None


def _stats_listener(settings: GatewaySettings, admin: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A listener that serves Envoy's Prometheus stats and nothing else of
    the admin interface (which can change Envoy's state: drain, quit...).
    GET /stats/prometheus, or /metrics, as scrapers expect."""
    to_admin = {"cluster": ADMIN_CLUSTER, "timeout": "5s", "prefix_rewrite": "/stats/prometheus"}
    routes: list[dict[str, Any]] = [
        {"match": {"path": path, "headers": [_method_is("GET")]}, "route": to_admin}
        for path in ("/stats/prometheus", "/metrics")
    ]
    routes.append(
        {
            "match": {"prefix": "/"},
            "direct_response": {"status": 404, "body": {"inline_string": "Envoy's stats are at /stats/prometheus"}},
        }
    )
    listener = _listener("stats", settings.gateway_host, settings.metrics_port, _hcm("stats", routes, []))
    cluster = {
        "name": ADMIN_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        # A scrape every few seconds; nothing else goes there.
        "circuit_breakers": {
            "thresholds": [
                {
                    "priority": "DEFAULT",
                    "max_connections": 4,
                    "max_pending_requests": 4,
                    "max_requests": 4,
                    "max_retries": 0,
                }
            ]
        },
        "load_assignment": {
            "cluster_name": ADMIN_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": admin}}]}],
        },
    }
    return listener, cluster


def build(settings: GatewaySettings, generated: Path = GENERATED) -> dict[str, Any]:
    """Two listeners. The public one caches (Envoy's HTTP cache filter, which
    honours the Cache-Control the API listener adds to trending and chart
    reads), so repeated reads never reach Python. The cache filter cannot
    store what a transcoder later in its own chain produces, so cacheable
    reads are transcoded on a second listener, on loopback, behind the cache;
    every other JSON call is transcoded on the public listener itself."""
    cache = {
        "name": _CACHE,
        "typed_config": {
            # CacheV2, not the older cache filter: when an entry expires it
            # sends one request upstream and holds the other readers of that
            # entry for its answer, where the old filter let every waiting
            # client miss at once (a stall of 64 requests queued in Python).
            _TYPE: "type.googleapis.com/envoy.extensions.filters.http.cache_v2.v3.CacheV2Config",
            "typed_config": {
                _TYPE: "type.googleapis.com/envoy.extensions.http.cache_v2.simple_http_cache.v3.SimpleHttpCacheV2Config"
            },
        },
    }
    # The edge cache keys entries by host as well as path: on the cached
    # routes the Host is made one fixed name before the cache sees it
    # (_ONE_HOST_ON_ROUTE), or a client varying it (any name reaches this
    # listener) would multiply the entries without bound. No-op elsewhere.
    one_host = {
        "name": _LUA,
        "typed_config": {
            _TYPE: "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
        },
    }
    body_limit = {
        "name": _BUFFER,
        "typed_config": {
            _TYPE: "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
            "max_request_bytes": settings.max_request_bytes,
        },
    }
    transcoder = {
        "name": _TRANSCODER,
        "typed_config": {
            _TYPE: "type.googleapis.com/envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
            "proto_descriptor": str(generated / "descriptors.binpb"),
            "services": sorted(PUBLIC_SERVICES),
            "convert_grpc_status": True,
            "max_request_body_size": settings.max_request_bytes,
            "print_options": {
                "add_whitespace": False,
                "always_print_primitive_fields": True,
                "always_print_enums_as_ints": False,
                "preserve_proto_field_names": True,
                "stream_newline_delimited": True,
            },
            "request_validation_options": {
                "reject_unknown_method": True,
                "reject_unknown_query_parameters": True,
                "reject_binding_body_field_collisions": True,
            },
        },
    }
    # Rate limits per client address (gateway/rate_limits.py): the one on
    # every request goes first, before the edge cache can answer; the write
    # limits right after the transcoder, which has given every JSON call
    # its gRPC method by then.
    every_request, writes = rate_limits.filters(settings, API)
    # CORS only when origins are configured: the filter answers preflights
    # and adds the headers for those origins (the policy: cors_policy).
    origins = settings.cors_origins()
    cors_filters = (
        [{"name": _CORS, "typed_config": {_TYPE: "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}}]
        if origins
        else []
    )
    limit = settings.max_requests_per_service
    targets = settings.targets()
    clusters = [_cluster(name, target, limit, health_checked=True) for name, target in targets.items()]
    clusters += [
        _cluster(_streams(backend), targets[backend], settings.max_live_streams, health_checked=True)
        for backend in sorted({PUBLIC_SERVICES[method.split("/")[1]] for method in STREAMING_METHODS})
    ]
    sidecar = settings.sidecar_target_host
    clusters.append(_cluster("sidecar_grpc", f"{sidecar}:{settings.sidecar_grpc_port}", limit))
    clusters.append(_cluster("sidecar_http", f"{sidecar}:{settings.sidecar_http_port}", limit, http2=False))
    # The sidecar refuses streams past max_sse_streams itself (503, Retry-After,
    # the API's JSON): over HTTP/1.1 Envoy's breaker would queue the next
    # request for a connection instead of refusing it. Envoy's bound is a
    # backstop above it, leaving room for the refusals.
    clusters.append(
        _cluster(
            SSE_CLUSTER,
            f"{sidecar}:{settings.sidecar_http_port}",
            settings.max_sse_streams + SSE_HEADROOM,
            http2=False,
        )
    )
    # The loopback transcoding listener: cached reads (one upstream request
    # per expired entry) and unknown JSON paths (answered 404 there).
    clusters.append(_cluster("api", f"127.0.0.1:{settings.api_port}", limit))
    config: dict[str, Any] = {
        # The edge-cached routes match their whole query string against one
        # regex each (edge_cached_requests): larger than RE2's default
        # program size limit of 100 in Envoy.
        "layered_runtime": {
            "layers": [
                {
                    "name": "static",
                    "static_layer": {
                        "re2.max_program_size.error_level": 1000,
                        "re2.max_program_size.warn_level": 1000,
                    },
                },
                # Envoy's admin interface may still override at run time.
                {"name": "admin", "admin_layer": {}},
            ]
        },
        "static_resources": {
            "listeners": [
                _listener(
                    "gateway",
                    settings.gateway_host,
                    settings.gateway_port,
                    _hcm(
                        "gateway",
                        (_preflight_routes() if origins else []) + _gateway_routes(generated),
                        [every_request, *cors_filters, body_limit, one_host, cache, transcoder, *writes],
                        cors=cors_policy(origins) if origins else None,
                        access_log=settings.access_log,
                        tracing=bool(settings.otlp_endpoint),
                        xff_trusted_hops=settings.xff_trusted_hops,
                    ),
                ),
                _listener("api", "127.0.0.1", settings.api_port, _hcm("api", _api_routes(), [transcoder])),
            ],
            "clusters": clusters,
        },
    }
    admin = admin_address(settings)
    if admin is not None:
        # Never on a public address: the admin interface can change Envoy's state.
        config["admin"] = {"address": admin}
    if settings.metrics_port and admin is not None:
        listener, cluster = _stats_listener(settings, admin)
        config["static_resources"]["listeners"].append(listener)
        clusters.append(cluster)
    if settings.otlp_endpoint:
        clusters.append(_cluster(OTLP_CLUSTER, otlp_target(settings.otlp_endpoint), limit))
    return config


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m gateway.envoy_config OUT.json")
    Path(sys.argv[1]).write_text(json.dumps(build(GatewaySettings.from_env()), indent=2) + "\n")


if __name__ == "__main__":
    main()
