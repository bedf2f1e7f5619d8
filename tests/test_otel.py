"""OpenTelemetry: a runcomfy.run span per run()/wait(), and metrics, via in-memory exporters."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from runcomfy_async import Client, JobFailedError, PollPolicy, WaitTimeoutError
from runcomfy_async.testing import Fault, JobScript, Simulator

from .conftest import FAST_RETRY, GOOD_INPUTS, WAN25

pytestmark = pytest.mark.anyio

FAST_POLL = PollPolicy(first_interval=0.0, max_interval=0.0, requests_per_second=1e4, burst=100)


@dataclass
class Otel:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def finished(self) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name == "runcomfy.run"]

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        data = self.metrics.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        for point in metric.data.data_points:
                            value = getattr(point, "value", None)
                            found.append((dict(point.attributes), value or point))
        return found


@pytest.fixture
def otel() -> Iterator[Otel]:
    """SDK providers with in-memory span and metric exporters."""
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Otel(spans, reader, tracer_provider, meter_provider)
    meter_provider.shutdown()
    tracer_provider.shutdown()


@pytest.fixture
async def client(sim: Simulator, otel: Otel) -> AsyncIterator[Client]:
    """A client reporting to the in-memory providers."""
    async with Client(
        token=sim.token,
        base_url=sim.url,
        retry=FAST_RETRY,
        polling=FAST_POLL,
        include_cost=True,
        tracer_provider=otel.tracer_provider,
        meter_provider=otel.meter_provider,
    ) as c:
        yield c


async def test_run_is_one_span_with_the_attributes(client: Client, otel: Otel) -> None:
    """A succeeded run(): one runcomfy.run span with id, outcome, times, polls and cost."""
    result = await client.run(WAN25, GOOD_INPUTS)
    (span,) = otel.finished()
    attrs = dict(span.attributes or {})
    assert attrs["runcomfy.model_id"] == WAN25
    assert attrs["runcomfy.request_id"] == result.request_id
    assert attrs["runcomfy.outcome"] == "succeeded"
    assert attrs["runcomfy.polls"] >= 2 and attrs["runcomfy.retries"] == 0
    assert attrs["runcomfy.queue_seconds"] >= 0 and attrs["runcomfy.run_seconds"] >= 0
    assert attrs["runcomfy.cost_usd"] == pytest.approx(0.25)
    assert span.status.status_code is StatusCode.UNSET


async def test_failed_run_sets_the_span_status(client: Client, sim: Simulator, otel: Otel) -> None:
    """A failed job: outcome failed, span status ERROR, the exception recorded."""
    sim.script_next(JobScript(queue_polls=0, run_polls=0, outcome="failed"))
    with pytest.raises(JobFailedError):
        await client.run(WAN25, GOOD_INPUTS)
    (span,) = otel.finished()
    assert span.attributes is not None and span.attributes["runcomfy.outcome"] == "failed"
    assert span.status.status_code is StatusCode.ERROR
    assert any(e.name == "exception" for e in span.events)
    assert sim.token not in str(span.status.description) + str(span.events)


async def test_wait_and_timeout_and_cancel_outcomes(
    client: Client, sim: Simulator, otel: Otel
) -> None:
    """wait() is a span too; a deadline gives outcome timeout, a cancelled task cancelled."""
    sim.script_next(JobScript(queue_polls=0, run_polls=0))
    handle = await client.submit(WAN25, GOOD_INPUTS)
    await client.wait(handle.request_id)
    sim.script_next(JobScript(queue_polls=10_000), count=2)
    with pytest.raises(WaitTimeoutError):
        await client.run(WAN25, GOOD_INPUTS, timeout=0.05)
    task = asyncio.create_task(client.run(WAN25, GOOD_INPUTS))
    await sim.wait_for(route="status", count=sim.count("status") + 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    outcomes = [s.attributes["runcomfy.outcome"] for s in otel.finished() if s.attributes]
    assert outcomes == ["succeeded", "timeout", "cancelled"]
    assert otel.finished()[0].attributes["runcomfy.request_id"] == handle.request_id  # type: ignore[index]


async def test_metrics_jobs_requests_retries_429s_times_spend(
    client: Client, sim: Simulator, otel: Otel
) -> None:
    """Jobs by model and outcome, requests by route and status, retries, 429s, histograms, spend."""
    sim.add_fault(Fault("rate_limit", route="status", retry_after=0))
    sim.add_fault(Fault("server_error", route="result"))
    await client.run(WAN25, GOOD_INPUTS)
    jobs = otel.points("runcomfy.jobs")
    assert jobs == [({"runcomfy.model_id": WAN25, "runcomfy.outcome": "succeeded"}, 1)]
    requests = {
        (a["runcomfy.route"], a["http.response.status_code"]): v
        for a, v in otel.points("runcomfy.requests")
    }
    assert requests[("POST /v1/models/{model_id}", 200)] == 1
    assert requests[("GET /v1/requests/{id}/status", 429)] == 1
    assert requests[("GET /v1/requests/{id}/result", 503)] == 1
    assert sum(v for _, v in otel.points("runcomfy.rate_limited")) == 1
    assert sum(v for _, v in otel.points("runcomfy.retries")) >= 1
    assert [v for _, v in otel.points("runcomfy.spend")] == [pytest.approx(0.25)]
    (queue,) = otel.points("runcomfy.queue_time")
    assert queue[0] == {"runcomfy.model_id": WAN25} and queue[1].count == 1
    assert len(otel.points("runcomfy.run_time")) == 1
    (span,) = otel.finished()
    assert span.attributes is not None and span.attributes["runcomfy.retries"] >= 1


async def test_global_providers_are_used_by_default(sim: Simulator) -> None:
    """Without providers given, the client reports to OpenTelemetry's global ones — also
    one set after the client was made (a run before it had nowhere to report, and cost
    nothing: no span was started)."""
    from opentelemetry import trace

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    try:
        async with Client(token=sim.token, base_url=sim.url, polling=FAST_POLL) as c:
            assert c._s.telemetry is not None and c._s.telemetry.idle
            sim.script_next(JobScript(queue_polls=0, run_polls=0))
            await c.run(WAN25, GOOD_INPUTS)
            trace._TRACER_PROVIDER_SET_ONCE._done = False  # tests only: reset the global once
            trace.set_tracer_provider(provider)
            assert not c._s.telemetry.idle
            sim.script_next(JobScript(queue_polls=0, run_polls=0))
            await c.run(WAN25, GOOD_INPUTS)
        assert [s.name for s in spans.get_finished_spans()] == ["runcomfy.run"]
    finally:
        trace._TRACER_PROVIDER_SET_ONCE._done = False
        trace._TRACER_PROVIDER = None


def test_without_opentelemetry_the_client_works() -> None:
    """With opentelemetry hidden, import and a run work, and providers are refused clearly."""
    code = r"""
import asyncio, builtins, sys
real = builtins.__import__
def hide(name, *a, **k):
    if name.startswith("opentelemetry"):
        raise ImportError(name)
    return real(name, *a, **k)
builtins.__import__ = hide
from runcomfy_async import Client
from runcomfy_async.testing import JobScript, Simulator
assert not any(m.startswith("opentelemetry") for m in sys.modules)
async def main():
    async with Simulator() as sim:
        sim.script_next(JobScript(queue_polls=0, run_polls=0))
        async with Client(token=sim.token, base_url=sim.url) as c:
            assert c._s.telemetry is None
            r = await c.run("wan-ai/wan-2-5/image-to-video",
                {"prompt": "a fox", "img_url": "https://example.com/f.png"})
            print(r.status.value)
        try:
            Client(token=sim.token, base_url=sim.url, tracer_provider=object())
        except ImportError as exc:
            print("refused", "otel" in str(exc))
asyncio.run(main())
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.split() == ["succeeded", "refused", "True"]
