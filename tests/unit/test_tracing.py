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
