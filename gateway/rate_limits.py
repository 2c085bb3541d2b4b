"""Rate limits per client address, kept by Envoy's local rate limit filter
(docs/integrity.md, "Rate limits").

Each limit is a token bucket per client address that holds one minute's
allowance and refills continuously (N a minute: N at once, then one every
60/N seconds). Four limits:

- reads: every request from the address, whatever it is: a read (the
  edge-cached ones too), a write, /health... It bounds an address's whole
  traffic, so it is counted first in the chain, before the edge cache
  answers anything.
- registrations, submissions, votes: the writes of that kind, on top of
  the first. They are told apart by the gRPC method a request calls, so
  they are counted after the JSON transcoder, which has by then turned a
  JSON call into its gRPC method: the same rule for both protocols, and no
  spelling of a URL the transcoder accepts escapes it.

The client address is the trusted one the connection manager settles
(`use_remote_address` and `xff_num_trusted_hops`, in envoy_config.py): the
peer's, or the one that many `X-Forwarded-For` entries from the right.
IPv6 clients are counted per /64, the block one host usually has.

Past a limit Envoy answers itself: 429 with `Retry-After` and the JSON
error body (gRPC: RESOURCE_EXHAUSTED), each limit's filter adding the
headers the local reply mapper builds the message from.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from gateway.descriptors import ApiDescriptors, Method
from services.common.config import GatewaySettings

_TYPE = "@type"
LOCAL_RATE_LIMIT = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
# Added by each limit's filter to its 429, read by the local reply mapper.
POLICY_HEADER = "x-rate-limit"
RESOURCE_EXHAUSTED = 8

READS = "reads"
# The writes with a limit of their own, by gRPC method (JSON calls are
# counted once transcoded to theirs). Every vote method that is not a read
# is a vote: a batch or streaming vote method is counted without a change.
REGISTRATIONS = ("/aimusicstore.reputation.v1.AgentService/RegisterAgent",)
SUBMISSIONS = (
    "/aimusicstore.ranking.v1.CatalogService/CreateSong",
    "/aimusicstore.ranking.v1.CatalogService/CreateTool",
)
VOTE_SERVICE = "aimusicstore.vote.v1.VoteService"
# Writes counted only as requests: the admin's (deleting items, changing an
# agent) and an agent's own key rotation, none of which adds to the charts.
REQUESTS_ONLY = (
    "/aimusicstore.reputation.v1.AgentService/UpdateAgent",
    "/aimusicstore.reputation.v1.AgentService/RotateKey",
    "/aimusicstore.ranking.v1.CatalogService/DeleteSong",
    "/aimusicstore.ranking.v1.CatalogService/DeleteTool",
)


@dataclass(frozen=True)
class Limit:
    name: str  # also what one request it counts is called, in the plural
    per_minute: int
    # gRPC paths of the methods it counts; empty: every request.
    paths: tuple[str, ...] = ()

    @property
    def retry_after_s(self) -> int:
        """Seconds until an emptied bucket holds one request again."""
        return max(1, math.ceil(60 / self.per_minute))

    @property
    def policy(self) -> str:
        what = "requests" if self.name == READS else self.name
        return f"{self.per_minute} {what} a minute per client address"


def is_read(method: Method) -> bool:
    return any(binding.method == "get" for binding in method.bindings)


def write_classes(api: ApiDescriptors) -> dict[str, tuple[str, ...]]:
    """The writes each write limit counts, checked against the protos: a
    write method of no class and not listed in REQUESTS_ONLY is an error, so
    a new one cannot go unlimited by oversight."""
    votes = tuple(m.path for m in api.methods() if m.service == VOTE_SERVICE and not is_read(m))
    classes = {"registrations": REGISTRATIONS, "submissions": SUBMISSIONS, "votes": votes}
    known = {m.path for m in api.methods()}
    for path in [p for paths in classes.values() for p in paths] + list(REQUESTS_ONLY):
        if path not in known:
            raise ValueError(f"rate limits name {path}, which is not a public method")
    counted = {p for paths in classes.values() for p in paths} | set(REQUESTS_ONLY)
    for method in api.methods():
        if not is_read(method) and method.path not in counted:
            raise ValueError(f"write {method.path} has no rate limit: give it one in gateway/rate_limits.py")
    return classes


def limits(settings: GatewaySettings, api: ApiDescriptors) -> tuple[Limit, list[Limit]]:
    """The limit on every request, and the write limits."""
    per_minute = {
        "registrations": settings.rate_limit_registrations_per_min,
        "submissions": settings.rate_limit_submissions_per_min,
        "votes": settings.rate_limit_votes_per_min,
    }
    writes = [Limit(name, per_minute[name], paths) for name, paths in write_classes(api).items()]
    return Limit(READS, settings.rate_limit_reads_per_min), writes


def _on(name: str, what: str) -> dict[str, Any]:
    # The filter's own default is off (0%): on for every request, which the
    # admin runtime layer may still change.
    return {"default_value": {"numerator": 100, "denominator": "HUNDRED"}, "runtime_key": f"{name}_{what}"}


def _descriptor_action(limit: Limit) -> dict[str, Any]:
    if not limit.paths:
        return {"generic_key": {"descriptor_key": "limit", "descriptor_value": limit.name}}
    regex = "^(" + "|".join(re.escape(path) for path in limit.paths) + ")$"
    return {
        "header_value_match": {
            "descriptor_key": "limit",
            "descriptor_value": limit.name,
            "headers": [{"name": ":path", "string_match": {"safe_regex": {"regex": regex}}}],
        }
    }


def rate_limit_filter(limit: Limit, tracked_addresses: int) -> dict[str, Any]:
    """One limit's filter: a bucket per client address (an empty descriptor
    value is Envoy's wildcard: one bucket per value seen, the least recently
    seen forgotten past `tracked_addresses`). A request it does not count
    passes (no default bucket)."""
    name = f"rate_limit_{limit.name}"
    return {
        "name": f"aimusicstore.{name}",
        "typed_config": {
            _TYPE: LOCAL_RATE_LIMIT,
            "stat_prefix": name,
            "filter_enabled": _on(name, "enabled"),
            "filter_enforced": _on(name, "enforced"),
            "rate_limited_as_resource_exhausted": True,
            "max_dynamic_descriptors": tracked_addresses,
            "rate_limits": [
                {
                    "actions": [
                        _descriptor_action(limit),
                        {"masked_remote_address": {"v4_prefix_mask_len": 32, "v6_prefix_mask_len": 64}},
                    ]
                }
            ],
            "descriptors": [
                {
                    "entries": [{"key": "limit", "value": limit.name}, {"key": "masked_remote_address"}],
                    "token_bucket": {
                        "max_tokens": limit.per_minute,
                        "tokens_per_fill": limit.per_minute,
                        "fill_interval": "60s",
                    },
                }
            ],
            "response_headers_to_add": [
                {"header": {"key": "retry-after", "value": str(limit.retry_after_s)}},
                {"header": {"key": POLICY_HEADER, "value": limit.policy}},
            ],
        },
    }


def filters(settings: GatewaySettings, api: ApiDescriptors) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The filter that goes first in the public listener's chain, and those
    that go right after the JSON transcoder."""
    every_request, writes = limits(settings, api)
    return (
        rate_limit_filter(every_request, settings.rate_limit_addresses),
        [rate_limit_filter(limit, settings.rate_limit_addresses) for limit in writes],
    )


def local_reply_mappers() -> list[dict[str, Any]]:
    """The 429 Envoy makes past a limit (it makes no other): the JSON error
    body, or for a native gRPC call a plain message with RESOURCE_EXHAUSTED.
    The filter that refused added Retry-After and its policy. A JSON call
    refused after the transcoder carries gRPC request headers by then, and
    the X-Envoy-Original-Method the transcoder adds tells it apart."""
    message = f"too many requests: the limit is %RESP({POLICY_HEADER})%; retry in %RESP(RETRY-AFTER)% s"
    is_429 = {
        "status_code_filter": {"comparison": {"op": "EQ", "value": {"default_value": 429, "runtime_key": "unused_429"}}}
    }
    native_grpc = [
        {"header_filter": {"header": {"name": "content-type", "string_match": {"prefix": "application/grpc"}}}},
        {"header_filter": {"header": {"name": "x-envoy-original-method", "present_match": True, "invert_match": True}}},
    ]
    return [
        {
            "filter": {"and_filter": {"filters": [is_429, *native_grpc]}},
            "body_format_override": {"text_format_source": {"inline_string": message}},
        },
        {
            "filter": is_429,
            "body_format_override": {
                "json_format": {"code": RESOURCE_EXHAUSTED, "message": message},
                "content_type": "application/json",
            },
        },
    ]
