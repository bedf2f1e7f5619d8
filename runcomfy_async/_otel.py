"""OpenTelemetry: one ``runcomfy.run`` span per ``run()``/``wait()``, and the client's metrics.

Active when ``opentelemetry-api`` is importable (``pip install 'runcomfy-async[otel]'``),
through the global tracer and meter providers or the ones given to ``Client``. Without it
:func:`make_telemetry` returns None and every hook is one ``is None`` test: nothing else
runs. HTTP-level spans are left to ``opentelemetry-instrumentation-aiohttp-client``; its
spans nest under ``runcomfy.run`` when both are on.

A run's facts (request id, polls, retries, when the job left the queue) are collected in
a :class:`RunFacts` held in a context variable for the run's task: the submit, the
status polls and the retry hook — all in that task or tasks it spawned — add to it.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ._errors import JobCancelledError, JobFailedError, WaitTimeoutError
from ._wire import JobState

if TYPE_CHECKING:
    from ._retry import RetryEvent
    from ._wire import Result, Status

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace as otel_trace

    try:
        from opentelemetry.metrics import _internal as _METERS_SLOT
    except ImportError:  # a future API without that module: the public call only
        _METERS_SLOT = None  # type: ignore[assignment]
except ImportError:  # the extra is not installed: no telemetry, no cost
    _METERS_SLOT = None  # type: ignore[assignment]
    otel_context = None  # type: ignore[assignment]
    otel_metrics = None  # type: ignore[assignment]
    otel_trace = None  # type: ignore[assignment]

__all__ = ["FACTS", "RunFacts", "Telemetry", "make_telemetry"]

T = TypeVar("T")
_SCOPE: Final = "runcomfy_async"
_QUEUED: Final = (JobState.IN_QUEUE,)


class RunFacts:
    """What one ``run()``/``wait()`` learned, for its span."""

    __slots__ = ("left_queue", "polls", "request_id", "retries", "submitted")

    def __init__(self, request_id: str | None) -> None:
        self.request_id = request_id
        self.polls = 0
        self.retries = 0
        self.submitted = time.monotonic()  # the submit's answer replaces it, for a run
        self.left_queue: float | None = None

    def saw(self, status: Status) -> None:
        """A status poll answered."""
        self.polls += 1
        if self.left_queue is None and status.state not in _QUEUED:
            self.left_queue = time.monotonic()


#: The facts of the run under way in this task, when telemetry is on.
FACTS: Final[contextvars.ContextVar[RunFacts | None]] = contextvars.ContextVar(
    "runcomfy_run_facts", default=None
)


def _outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "succeeded"
    if isinstance(exc, JobFailedError):
        return "failed"
    if isinstance(exc, JobCancelledError | asyncio.CancelledError):
        return "cancelled"
    if isinstance(exc, WaitTimeoutError | TimeoutError):
        return "timeout"
    return "error"


class Telemetry:
    """A client's tracer and instruments (shared by its views)."""

    def __init__(self, tracer_provider: Any, meter_provider: Any) -> None:
        assert otel_trace is not None and otel_metrics is not None
        self._trace = otel_trace
        tracers = tracer_provider or otel_trace.get_tracer_provider()
        self.tracer = tracers.get_tracer(_SCOPE)
        self._idle_tracers = tracer_provider is None and type(tracers).__name__ == (
            "ProxyTracerProvider"
        )
        provider = meter_provider or otel_metrics.get_meter_provider()
        meter = provider.get_meter(_SCOPE)
        # The API's stand-in until an SDK's provider is set: metrics sent to it go nowhere,
        # so the per-request hook skips them (and its label dict) while it is in place.
        idle = meter_provider is None and type(provider).__name__ == "_ProxyMeterProvider"
        self._idle_meters: object = provider if idle else None
        self.jobs = meter.create_counter("runcomfy.jobs", unit="{job}", description="Jobs ended")
        self.requests = meter.create_counter(
            "runcomfy.requests", unit="{request}", description="API requests by route and status"
        )
        self.retries = meter.create_counter("runcomfy.retries", unit="{retry}")
        self.rate_limited = meter.create_counter(
            "runcomfy.rate_limited", unit="{response}", description="429 answers"
        )
        self.queue_time = meter.create_histogram("runcomfy.queue_time", unit="s")
        self.run_time = meter.create_histogram("runcomfy.run_time", unit="s")
        self.spend = meter.create_counter("runcomfy.spend", unit="USD")

    @property
    def idle(self) -> bool:
        """Neither provider given nor set globally (yet): spans and metrics go nowhere.

        A run then skips its span and facts altogether. Read on each run, so a provider
        set after the client was made is used from the next run on.
        """
        return (
            self._idle_tracers
            and self._idle_meters is not None
            and getattr(otel_trace, "_TRACER_PROVIDER", self) is None
            and getattr(_METERS_SLOT, "_METER_PROVIDER", self) is None
        )

    def on_response(self, route: str, status: int) -> None:
        """Every API answer (``status`` 0: none arrived)."""
        idle = self._idle_meters
        # The global slot read directly (get_meter_provider() reads the environment on
        # each call while nothing is set); any doubt falls back to the public call.
        if idle is not None and (
            getattr(_METERS_SLOT, "_METER_PROVIDER", idle) is None
            or otel_metrics.get_meter_provider() is idle
        ):
            return
        self.requests.add(1, {"runcomfy.route": route, "http.response.status_code": status})
        if status == 429:
            self.rate_limited.add(1, {"runcomfy.route": route})

    def on_retry(self, event: RetryEvent) -> None:
        self.retries.add(1, {"runcomfy.route": event.route})
        facts = FACTS.get()
        if facts is not None:
            facts.retries += 1

    async def traced(
        self, model_id: str | None, request_id: str | None, call: Awaitable[Result]
    ) -> Result:
        """Await ``call`` (a run or a wait) in one ``runcomfy.run`` span.

        A span with an invalid context (no tracer provider set: the API's no-op tracer)
        is not made current — it would parent nothing — so an untraced run pays for no
        context manager or context switch, only its metrics.
        """
        facts = RunFacts(request_id)
        reset = FACTS.set(facts)
        result: Result | None = None
        error: BaseException | None = None
        span = self.tracer.start_span("runcomfy.run")
        token = None
        if span.get_span_context().is_valid:
            token = otel_context.attach(self._trace.set_span_in_context(span))
        try:
            result = await call
            return result
        except BaseException as exc:
            error = exc
            raise
        finally:
            FACTS.reset(reset)
            try:
                self._end(span, facts, model_id, result, error)
            finally:
                span.end()
                if token is not None:
                    otel_context.detach(token)

    def _end(
        self,
        span: Any,
        facts: RunFacts,
        model_id: str | None,
        result: Result | None,
        error: BaseException | None,
    ) -> None:
        now = time.monotonic()
        outcome = _outcome(error)
        model_id = model_id or (result.model_id if result is not None else None)
        cost = (
            result.cost
            if result is not None
            else getattr(getattr(error, "result", None), "cost", None)
        )
        request_id = facts.request_id or getattr(error, "request_id", None)
        attributes: dict[str, Any] = {
            "runcomfy.outcome": outcome,
            "runcomfy.polls": facts.polls,
            "runcomfy.retries": facts.retries,
        }
        if model_id:
            attributes["runcomfy.model_id"] = model_id
        if request_id:
            attributes["runcomfy.request_id"] = request_id
        labels = {"runcomfy.model_id": model_id or "", "runcomfy.outcome": outcome}
        left = facts.left_queue
        if left is not None:
            queued, running = left - facts.submitted, now - left
            attributes["runcomfy.queue_seconds"] = queued
            attributes["runcomfy.run_seconds"] = running
            self.queue_time.record(queued, {"runcomfy.model_id": model_id or ""})
            self.run_time.record(running, {"runcomfy.model_id": model_id or ""})
        if cost is not None:
            attributes["runcomfy.cost_usd"] = cost
            self.spend.add(cost, {"runcomfy.model_id": model_id or ""})
        span.set_attributes(attributes)
        if error is not None and not isinstance(error, asyncio.CancelledError):
            span.record_exception(error)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, str(error)))
        self.jobs.add(1, labels)


def make_telemetry(tracer_provider: Any = None, meter_provider: Any = None) -> Telemetry | None:
    """The client's telemetry, or None without ``opentelemetry-api`` (then nothing is paid).

    Raises:
        ImportError: Providers were given but ``opentelemetry-api`` is not installed.
    """
    if otel_trace is None:
        if tracer_provider is not None or meter_provider is not None:
            raise ImportError(
                "tracer_provider/meter_provider need opentelemetry-api: "
                "pip install 'runcomfy-async[otel]'"
            )
        return None
    return Telemetry(tracer_provider, meter_provider)
