"""The gateway itself: health, docs, reflection and routing, through Envoy."""

from __future__ import annotations

import signal

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from aimusicstore.reputation.v1 import (
    api_key_service_pb2,
    api_key_service_pb2_grpc,
    moderation_service_pb2,
    moderation_service_pb2_grpc,
)
from aimusicstore.vote.v1 import vote_ledger_service_pb2, vote_ledger_service_pb2_grpc
from devstack.stack import Stack
from gateway.envoy_config import PUBLIC_SERVICES
from services.common.credentials import SERVICE_CREDENTIAL_KEY, service_credential
from tests.integration.conftest import eventually, vote_service_metrics

pytestmark = pytest.mark.integration


def test_health_is_200_and_names_every_service(api: httpx.Client) -> None:
    reply = api.get("/health")
    assert reply.status_code == 200
    body = reply.json()
    assert body["status"] == "healthy"
    assert body["services"] == {"ranking": "SERVING", "reputation": "SERVING", "vote": "SERVING"}


def test_openapi_and_docs_are_served(api: httpx.Client) -> None:
    spec = api.get("/openapi.json")
    assert spec.status_code == 200
    assert spec.headers["content-type"].startswith("application/json")
    paths = spec.json()["paths"]
    assert "/api/v1/vote" in paths and "post" in paths["/api/v1/vote"]
    # /docs is Swagger UI over that document; the static reference is beside it.
    docs = api.get("/docs")
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]
    assert "swagger-ui-bundle.js" in docs.text
    reference = api.get("/docs/reference")
    assert reference.status_code == 200 and "/api/v1/vote" in reference.text


def test_reflection_lists_every_public_service_and_no_internal_one(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    names = {s.name for reply in replies for s in reply.list_services_response.service}
    assert set(PUBLIC_SERVICES) <= names
    assert "aimusicstore.reputation.v1.ApiKeyService" not in names


def test_reflection_serves_descriptors_through_the_gateway(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol="aimusicstore.vote.v1.VoteService")
    reply = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=5)))
    assert reply.file_descriptor_response.file_descriptor_proto, reply


@pytest.mark.parametrize("service", sorted(PUBLIC_SERVICES))
def test_grpc_health_answers_for_each_public_service(channel: grpc.Channel, service: str) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_grpc_health_for_an_unknown_service_is_not_found(channel: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Check(health_pb2.HealthCheckRequest(service="aimusicstore.nope.v1.Nope"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_internal_services_are_not_routed(channel: grpc.Channel) -> None:
    stub = api_key_service_pb2_grpc.ApiKeyServiceStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.VerifyApiKey(api_key_service_pb2.VerifyApiKeyRequest(api_key="ams_x"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    ledger = vote_ledger_service_pb2_grpc.VoteLedgerServiceStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        ledger.CountItemVotes(vote_ledger_service_pb2.CountItemVotesRequest(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.RpcError) as caught:
        ledger.ListVoters(vote_ledger_service_pb2.ListVotersRequest(page_size=1), timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize("credential", [None, "guessed", "from-the-admin-key"])
def test_internal_methods_answer_only_callers_with_the_service_credential(stack: Stack, credential: str | None) -> None:
    """Inside the deployment, a process that is not one of our services
    (no credential, a wrong one) cannot verify keys or flag agents."""
    right = service_credential(stack.admin_key)
    metadata = [] if credential is None else [(SERVICE_CREDENTIAL_KEY, right if credential != "guessed" else "x" * 64)]
    with grpc.insecure_channel(f"127.0.0.1:{stack.ports['reputation']}") as direct:
        verify = api_key_service_pb2_grpc.ApiKeyServiceStub(direct).VerifyApiKey
        flag = moderation_service_pb2_grpc.ModerationServiceStub(direct).FlagAgent
        expected = (
            grpc.StatusCode.NOT_FOUND if credential == "from-the-admin-key" else grpc.StatusCode.PERMISSION_DENIED
        )
        with pytest.raises(grpc.RpcError) as caught:
            verify(api_key_service_pb2.VerifyApiKeyRequest(api_key="ams_x"), metadata=metadata, timeout=5)
        assert caught.value.code() == expected
        if credential != "from-the-admin-key":
            with pytest.raises(grpc.RpcError) as caught:
                flag(moderation_service_pb2.FlagAgentRequest(agent_id="x", reason="r"), metadata=metadata, timeout=5)
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_unknown_path_is_404_json(api: httpx.Client) -> None:
    reply = api.get("/api/v1/no-such-thing")
    assert reply.status_code == 404
    assert reply.json()["code"] == 5
    assert reply.json()["message"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/api/v1/vote", "POST"),
        ("GET", "/api/v1/vote", "POST"),
        ("DELETE", "/api/v1/trending", "GET"),
        ("POST", "/api/v1/songs/some-song", "DELETE, GET"),
        ("PUT", "/api/v1/agents/some-agent", "GET, PATCH"),
        ("POST", "/health", "GET"),
        ("POST", "/openapi.json", "GET"),
        ("DELETE", "/docs", "GET"),
    ],
)
def test_a_known_path_with_a_method_it_does_not_take_is_405(
    api: httpx.Client, method: str, path: str, allow: str
) -> None:
    reply = api.request(method, path, json={})
    assert reply.status_code == 405
    assert reply.headers["allow"] == allow
    assert reply.json() == {"code": 12, "message": f"method not allowed on this path; it takes {allow}"}


def test_health_names_a_service_that_is_down(stack: Stack, api: httpx.Client, channel: grpc.Channel) -> None:
    stack.stop_process("ranking")
    try:
        reply = eventually(lambda: (r := api.get("/health")).status_code == 503 and r, timeout_s=10)
        body = reply.json()
        assert body["status"] == "unhealthy"
        assert body["down"] == ["ranking"]
        assert body["services"]["vote"] == "SERVING"
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service="aimusicstore.ranking.v1.CatalogService"), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        reply = stub.Check(health_pb2.HealthCheckRequest(service="aimusicstore.vote.v1.VoteService"), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        # A request to the stopped service is a JSON 503, not a hang.
        down = api.get("/api/v1/songs/anything")
        assert down.status_code == 503
        assert down.json()["code"] == 14
    finally:
        stack.start_service("ranking")
    eventually(lambda: api.get("/health").status_code == 200, timeout_s=30)


def test_a_hung_service_is_refused_at_once_not_after_the_request_timeout(stack: Stack, api: httpx.Client) -> None:
    # A stopped (SIGSTOP) process still accepts connections, so only Envoy's
    # liveness checks tell it is hung: before them, every request to it
    # waited out the 15 s route timeout and got a 504.
    def refused_at_once() -> httpx.Response | None:
        try:
            reply = api.get("/api/v1/songs/anything", timeout=3)
        except httpx.TimeoutException:
            return None  # not yet out of rotation
        return reply if reply.status_code == 503 else None

    process = stack.procs["ranking"]
    process.send_signal(signal.SIGSTOP)
    try:
        refused = eventually(refused_at_once, timeout_s=20, interval_s=0.5)
        assert refused.json()["code"] == 14
        assert "unavailable" in refused.json()["message"]
    finally:
        process.send_signal(signal.SIGCONT)
    # Back in rotation once it answers a check again.
    eventually(lambda: api.get("/api/v1/songs/anything", timeout=5).status_code == 404, timeout_s=10, interval_s=0.2)


def test_services_export_event_loop_lag_and_gc_pauses(stack: Stack) -> None:
    def samples() -> dict[str, float]:
        return vote_service_metrics(stack)

    # The lag is sampled every 100 ms, so a running service has samples.
    eventually(lambda: samples().get("event_loop_lag_seconds_count", 0) >= 2, timeout_s=5)
    assert "python_gc_pause_seconds_count" in " ".join(samples())


def test_grpc_metrics_use_the_conventional_names_and_labels(stack: Stack, api: httpx.Client) -> None:
    """Stock gRPC dashboards query grpc_service/grpc_method/grpc_code (go-grpc-prometheus)."""
    api.get("/api/v1/votes/song/no-such-song")
    samples = vote_service_metrics(stack)
    handled = [
        name
        for name in samples
        if name.startswith("grpc_server_handled_total{")
        and 'grpc_service="aimusicstore.vote.v1.VoteService"' in name
        and 'grpc_method="GetVoteCounts"' in name
        and 'grpc_code="NOT_FOUND"' in name
        and 'grpc_type="unary"' in name
    ]
    assert handled, [name for name in samples if name.startswith("grpc_server_handled_total")]
    assert any(
        name.startswith("grpc_server_started_total{") and 'grpc_method="GetVoteCounts"' in name for name in samples
    )
    assert any(
        name.startswith("grpc_server_handling_seconds_bucket{") and 'grpc_method="GetVoteCounts"' in name
        for name in samples
    )
