"""gateway/descriptors.py: what the gateway reads from the protos' descriptor set."""

from __future__ import annotations

import pytest
from google.api import annotations_pb2 as http_annotations
from google.protobuf import descriptor_pb2

from aimusicstore.api.v1 import annotations_pb2 as api_annotations
from gateway import descriptors
from gateway.descriptors import ApiDescriptors


def _method(
    name: str,
    *,
    get: str = "",
    post: str = "",
    cache_control: str = "",
    edge_cached: bool = False,
    streams: bool = False,
) -> descriptor_pb2.MethodDescriptorProto:
    method = descriptor_pb2.MethodDescriptorProto(
        name=name, input_type=".x.Req", output_type=".x.Resp", server_streaming=streams
    )
    rule = method.options.Extensions[http_annotations.http]
    if get:
        rule.get = get
    if post:
        rule.post, rule.body = post, "*"
    if cache_control or edge_cached:
        cache = method.options.Extensions[api_annotations.cache]
        cache.cache_control, cache.edge_cached = cache_control, edge_cached
    return method


def _api(package: str, **services: list[descriptor_pb2.MethodDescriptorProto]) -> ApiDescriptors:
    file = descriptor_pb2.FileDescriptorProto(name="x.proto", package=package)
    for name, methods in services.items():
        file.service.add(name=name).method.extend(methods)
    return ApiDescriptors.parse(descriptor_pb2.FileDescriptorSet(file=[file]).SerializeToString())


def test_services_with_http_rules_are_public_and_served_by_the_backend_their_package_names() -> None:
    api = _api(
        "aimusicstore.charts.v1",
        ChartService=[_method("GetChart", get="/api/v1/chart"), _method("Internal")],
        KeyService=[_method("Verify")],
    )
    assert api.public_services() == {"aimusicstore.charts.v1.ChartService": "charts"}
    # A public service routes every method by gRPC; only those with rules have bindings.
    assert [m.path for m in api.methods()] == [
        "/aimusicstore.charts.v1.ChartService/GetChart",
        "/aimusicstore.charts.v1.ChartService/Internal",
    ]
    assert api.method("/aimusicstore.charts.v1.ChartService/GetChart").bindings[0].template == "/api/v1/chart"
    with pytest.raises(KeyError):
        api.method("/aimusicstore.charts.v1.KeyService/Verify")


def test_other_packages_are_never_public() -> None:
    assert _api("google.longrunning", Operations=[_method("GetOperation", get="/v1/op")]).public_services() == {}


def test_streams_and_cache_rules_come_from_the_descriptor() -> None:
    api = _api(
        "aimusicstore.charts.v1",
        ChartService=[
            _method("GetChart", get="/api/v1/chart", cache_control="public, max-age=5", edge_cached=True),
            _method("GetItem", get="/api/v1/item", cache_control="no-cache"),
            _method("Watch", get="/api/v1/watch", streams=True),
            _method("Vote", post="/api/v1/vote"),
        ],
    )
    assert api.streaming_methods() == ["/aimusicstore.charts.v1.ChartService/Watch"]
    assert api.cache_control() == {
        "/aimusicstore.charts.v1.ChartService/GetChart": "public, max-age=5",
        "/aimusicstore.charts.v1.ChartService/GetItem": "no-cache",
    }
    assert api.edge_cached_methods() == ["/aimusicstore.charts.v1.ChartService/GetChart"]


@pytest.mark.parametrize(
    ("method", "error"),
    [
        (_method("Vote", post="/api/v1/vote", cache_control="no-cache"), "not a GET"),
        (_method("GetChart", get="/api/v1/chart", cache_control="no-cache", edge_cached=True), "without a max-age"),
        (_method("GetChart", get="/api/v1/chart", edge_cached=True), "without a cache_control"),
    ],
)
def test_a_cache_rule_that_cannot_hold_is_refused(method: descriptor_pb2.MethodDescriptorProto, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        _api("aimusicstore.charts.v1", ChartService=[method])


def test_a_package_that_does_not_name_its_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="backend"):
        _api("aimusicstore.v1", ChartService=[_method("GetChart", get="/api/v1/chart")])


def test_the_checkouts_protos_give_the_gateway_it_had_by_hand() -> None:
    """The tables envoy_config.py used to keep by hand, now read from the protos."""
    api = descriptors.load()
    assert api.public_services() == {
        "aimusicstore.vote.v1.VoteService": "vote",
        "aimusicstore.ranking.v1.CatalogService": "ranking",
        "aimusicstore.ranking.v1.RankingService": "ranking",
        "aimusicstore.reputation.v1.AgentService": "reputation",
    }
    assert api.streaming_methods() == [
        "/aimusicstore.vote.v1.VoteService/StreamVotes",
        "/aimusicstore.vote.v1.VoteService/WatchVotes",
    ]
    assert api.cache_control() == {
        "/aimusicstore.ranking.v1.RankingService/GetTrending": "public, max-age=1",
        "/aimusicstore.ranking.v1.RankingService/GetTopChart": "public, max-age=1",
        "/aimusicstore.ranking.v1.RankingService/GetItemHistory": "public, max-age=60",
        "/aimusicstore.ranking.v1.CatalogService/GetSong": "no-cache",
        "/aimusicstore.ranking.v1.CatalogService/GetTool": "no-cache",
        "/aimusicstore.vote.v1.VoteService/GetVoteCounts": "no-cache",
    }
    assert sorted(api.edge_cached_methods()) == [
        "/aimusicstore.ranking.v1.RankingService/GetTopChart",
        "/aimusicstore.ranking.v1.RankingService/GetTrending",
    ]
