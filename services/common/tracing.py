"""OpenTelemetry tracing: off unless an OTLP endpoint is configured.

Switched on by `OTEL_EXPORTER_OTLP_ENDPOINT` (the standard variable; the
SDK's own `OTEL_*` settings, such as `OTEL_TRACES_SAMPLER` and
`OTEL_BSP_SCHEDULE_DELAY`, apply too). Then every service traces:

- its gRPC server calls and its calls to other services (the W3C
  `traceparent` rides in gRPC metadata; Envoy starts the trace at the edge);
- its PostgreSQL statements (SQLAlchemy) and Redis commands;
- vote events: the producer writes the vote's `traceparent` into the event,
  and a consumer applying a batch opens, for each event, a span that is a
  child of the vote that caused it, so the projection's work joins the
  vote's trace.

Off, nothing here is imported beyond this module and every helper is a
no-op: tracing costs the hot path nothing unless it is on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

_tracer: Any = None


def enabled() -> bool:
    return _tracer is not None


def configure(service: str, endpoint: str, exporter: Any = None) -> bool:
    """Turns tracing on for this process when an endpoint (or, in tests, an
    exporter) is given; returns whether it is on. Call it before creating
    gRPC servers, channels, engines and Redis clients."""
    global _tracer
    if not endpoint and exporter is None:
        return False
    from opentelemetry import trace  # noqa: PLC0415 - only when tracing is on
    from opentelemetry.instrumentation.grpc import (  # noqa: PLC0415
        GrpcAioInstrumentorClient,
        GrpcAioInstrumentorServer,
    )
    from opentelemetry.instrumentation.redis import RedisInstrumentor  # noqa: PLC0415
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor  # noqa: PLC0415

    provider = TracerProvider(resource=Resource.create({"service.name": f"aimusicstore-{service}"}))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter  # noqa: PLC0415

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    GrpcAioInstrumentorServer().instrument()
    GrpcAioInstrumentorClient().instrument()
    RedisInstrumentor().instrument()
    _tracer = trace.get_tracer("aimusicstore")
    return True


def instrument_engine(engine: Any) -> None:
    """Traces an AsyncEngine's statements (no-op when tracing is off)."""
    if not enabled():
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor  # noqa: PLC0415

    # The instrumentation declares SQLAlchemy < 2.1 and silently does nothing
    # on 2.1 unless told to skip that check; its engine event hooks work on
    # 2.1 (tests/integration/test_tracing.py sees the vote's statements).
    SQLAlchemyInstrumentor().instrument(engine=engine.sync_engine, enable_commenter=False, skip_dep_check=True)


def current_traceparent() -> str:
    """The W3C traceparent of the span in progress ('' when off or none)."""
    if not enabled():
        return ""
    from opentelemetry import propagate  # noqa: PLC0415

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", "")


@contextlib.contextmanager
def applying_events(name: str, traceparents: Iterable[str]) -> Iterator[None]:
    """Around a consumer's batch: for each event's traceparent, a span that
    is a child of the vote that caused it, lasting as long as the batch; and
    one span for the batch itself, linked to those votes, which the batch's
    own statements and Redis commands are children of."""
    if not enabled():
        yield
        return
    from opentelemetry import propagate, trace  # noqa: PLC0415

    parents = [propagate.extract({"traceparent": t}) for t in dict.fromkeys(t for t in traceparents if t)]
    links = [trace.Link(trace.get_current_span(parent).get_span_context()) for parent in parents]
    with _tracer.start_as_current_span(f"{name} batch", links=links, attributes={"events": len(parents)}):
        event_spans = [_tracer.start_span(name, context=parent) for parent in parents]
        try:
            yield
        finally:
            for span in event_spans:
                span.end()


@contextlib.contextmanager
def serving_batch(name: str, traceparents: Iterable[str]) -> Iterator[None]:
    """Around work done once for several calls (a micro-batch of votes): a
    span that is a child of the first call's span and links to the others,
    so the statements and Redis commands it runs appear in the first call's
    trace and are one click away from the others'."""
    if not enabled():
        yield
        return
    from opentelemetry import propagate, trace  # noqa: PLC0415

    parents = [propagate.extract({"traceparent": t}) for t in dict.fromkeys(t for t in traceparents if t)]
    links = [trace.Link(trace.get_current_span(parent).get_span_context()) for parent in parents[1:]]
    context = parents[0] if parents else None
    with _tracer.start_as_current_span(name, context=context, links=links, attributes={"calls": len(parents)}):
        yield
