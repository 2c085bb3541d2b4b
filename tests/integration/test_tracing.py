"""Tracing end to end: a stack of its own sends its spans to an OTLP
collector kept in this test's memory. One vote's trace must cover the
gateway, the vote service, its PostgreSQL and Redis calls, its calls to
other services, and the consumers that apply its event."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from devstack.stack import Stack
from tests.integration.conftest import auth, eventually, running_stack


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]


class InMemoryCollector(trace_service_pb2_grpc.TraceServiceServicer):
    """The OTLP/gRPC trace receiver, keeping every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self._lock = threading.Lock()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        received = []
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {a.key: _value(a.value) for a in span.attributes}
                    received.append(
                        Span(
                            service=resource.get("service.name", ""),
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            attributes=attributes,
                        )
                    )
        with self._lock:
            self.spans += received
        return trace_service_pb2.ExportTraceServiceResponse()

    def trace(self, trace_id: str) -> list[Span]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def find(self, service: str, name: str) -> list[Span]:
        with self._lock:
            return [s for s in self.spans if s.service == service and s.name == name]


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@pytest.fixture(scope="module")
def collector() -> Iterator[tuple[InMemoryCollector, int]]:
    received = InMemoryCollector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(received, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield received, port
    server.stop(0)


@pytest.fixture(scope="module")
def traced_stack(collector: tuple[InMemoryCollector, int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    _, port = collector
    endpoint = f"http://127.0.0.1:{port}"
    # Spans leave each process within 200 ms instead of the SDK's 5 s.
    with running_stack(
        tmp_path_factory.mktemp("traced"),
        redis_db=5,
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_BSP_SCHEDULE_DELAY="200",
    ) as running:
        yield running


VOTE_SERVICE = "aimusicstore-vote"
CAST_VOTE = "/aimusicstore.vote.v1.VoteService/CastVote"


def test_one_votes_trace_covers_the_gateway_the_services_their_stores_and_the_consumers(
    traced_stack: Stack, collector: tuple[InMemoryCollector, int]
) -> None:
    spans, _ = collector
    with httpx.Client(base_url=traced_stack.gateway_url, timeout=10) as api:
        agent_id = f"traced-{uuid.uuid4().hex[:8]}"
        key = api.post("/api/v1/agents", json={"id": agent_id, "name": "Traced"}).json()["api_key"]
        song = {"id": f"song-{uuid.uuid4().hex[:8]}", "title": "Trace", "artist": "T", "platform": "udio"}
        assert api.post("/api/v1/songs", json=song, headers=auth(key)).status_code == 200
        reply = api.post(
            "/api/v1/vote", json={"item_type": "song", "item_id": song["id"], "vote": "up"}, headers=auth(key)
        )
        assert reply.status_code == 200, reply.text

    (server_span,) = eventually(lambda: spans.find(VOTE_SERVICE, CAST_VOTE), 15)
    trace_id = server_span.trace_id

    def complete() -> list[Span] | None:
        # Spans arrive from each process in its own time (Envoy flushes every
        # 5 s, the reputation consumer lingers a second to batch): wait for
        # the last ones.
        found = spans.trace(trace_id)
        names = {s.name for s in found}
        consumers = {"apply vote event (ranking)", "apply vote event (reputation)"}
        from_gateway = any(s.service == "aimusicstore-gateway" for s in found)
        return found if from_gateway and consumers <= names and _has_store_calls(found) else None

    try:
        in_trace = eventually(complete, 20, interval_s=0.2)
    except AssertionError:
        found = spans.trace(trace_id)
        pytest.fail(f"the vote's trace is incomplete: {sorted({(s.service, s.name) for s in found})}")

    by_service: dict[str, list[Span]] = {}
    for span in in_trace:
        by_service.setdefault(span.service, []).append(span)
    # Envoy started the trace: the vote service's span has a parent from the gateway.
    gateway_ids = {s.span_id for s in by_service["aimusicstore-gateway"]}
    assert server_span.parent_id in gateway_ids
    vote_spans = by_service[VOTE_SERVICE]
    # The vote's statements and Redis commands (run in its micro-batch).
    assert any(s.attributes.get("db.system") in ("postgresql", "postgres") for s in vote_spans)
    assert any(s.attributes.get("db.system") == "redis" for s in vote_spans)
    # Its calls to other services (key verification, item check) are client spans in the trace.
    assert any(s.name.startswith("/aimusicstore.") and s.name != CAST_VOTE for s in vote_spans)
    # Both consumers applied the vote's event inside the same trace.
    assert any(s.name == "apply vote event (ranking)" for s in by_service["aimusicstore-ranking"])
    assert any(s.name == "apply vote event (reputation)" for s in by_service["aimusicstore-reputation"])


def _has_store_calls(found: list[Span]) -> bool:
    systems = {s.attributes.get("db.system") for s in found if s.service == VOTE_SERVICE}
    return "redis" in systems and bool(systems & {"postgresql", "postgres"})
