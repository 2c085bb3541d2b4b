"""Tracing helpers: off they do nothing; on, a consumer's work joins the vote's trace."""

from __future__ import annotations

import pytest

from services.common import tracing


def test_off_by_default_every_helper_is_a_no_op() -> None:
    assert not tracing.enabled()
    assert tracing.current_traceparent() == ""
    with tracing.applying_events("apply", ["00-" + "1" * 32 + "-" + "2" * 16 + "-01"]):
        pass
    assert not tracing.configure("vote", endpoint="")


def test_a_consumer_span_is_a_child_of_the_vote_that_caused_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    with provider.get_tracer("test").start_as_current_span("CastVote") as vote_span:
        traceparent = tracing.current_traceparent()
    assert traceparent.split("-")[1] == format(vote_span.get_span_context().trace_id, "032x")

    with tracing.applying_events("apply vote event", [traceparent, traceparent, ""]):
        inside = trace.get_current_span()
        assert inside.name == "apply vote event batch"  # type: ignore[attr-defined]
    spans = {span.name: span for span in exporter.get_finished_spans()}
    child = spans["apply vote event"]
    assert child.context.trace_id == vote_span.get_span_context().trace_id
    assert child.parent is not None and child.parent.span_id == vote_span.get_span_context().span_id
    batch = spans["apply vote event batch"]
    assert [link.context.span_id for link in batch.links] == [vote_span.get_span_context().span_id]


def test_a_batch_serving_several_calls_joins_the_first_calls_trace_and_links_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    monkeypatch.setattr(tracing, "_tracer", tracer)
    calls = []
    for name in ("first vote", "second vote"):
        with tracer.start_as_current_span(name) as span:
            calls.append((span.get_span_context(), tracing.current_traceparent()))

    with tracing.serving_batch("micro-batch", [calls[0][1], calls[1][1], ""]), tracer.start_as_current_span("INSERT"):
        assert trace.get_current_span().name == "INSERT"  # type: ignore[attr-defined]
    spans = {span.name: span for span in exporter.get_finished_spans()}
    batch, statement = spans["micro-batch"], spans["INSERT"]
    assert batch.context.trace_id == statement.context.trace_id == calls[0][0].trace_id
    assert batch.parent is not None and batch.parent.span_id == calls[0][0].span_id
    assert [link.context.span_id for link in batch.links] == [calls[1][0].span_id]
    assert statement.parent is not None and statement.parent.span_id == batch.context.span_id


def test_a_batch_outside_any_trace_is_a_root_span(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    with tracing.serving_batch("micro-batch", ["", ""]):
        pass
    (span,) = exporter.get_finished_spans()
    assert span.parent is None and not span.links
