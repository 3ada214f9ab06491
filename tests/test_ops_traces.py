"""Traces worth reading: heartbeats do not drown them, OTEL_TRACES_SAMPLER is honoured."""

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pipelines.announce import Announcer
from pipelines.registry import RegisterService
from pipelines.telemetry import tracing


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure("memory://", SimpleSpanProcessor(exporter))
    try:
        yield exporter
    finally:
        tracing.shutdown()


async def test_one_heartbeat_a_minute_is_traced(settings, rpc, exported) -> None:
    hello = RegisterService(service_name="beating", version="1.0.0", instance_id="beating-1",
                            contracts=[])  # fmt: skip
    announcer = Announcer(hello, rpc, settings, on_refused=None)  # type: ignore[arg-type]
    for _ in range(5):
        await announcer._heartbeat()  # nothing consumes them here: refused, quietly
    beats = [s for s in exported.get_finished_spans() if "Heartbeat" in s.name]
    assert len(beats) == 1, [s.name for s in exported.get_finished_spans()]


def test_otel_traces_sampler_is_honoured(monkeypatch, exported) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    with tracing.tracer("sampled-out").start_as_current_span("work") as span:
        assert not span.is_recording()
    assert exported.get_finished_spans() == ()
