"""The public face of the simulator: :class:`Simulator` starts, steers and inspects it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Final, Literal

from aiohttp import web

from ._catalog import Catalog
from ._faults import Fault, FaultPlan
from ._payloads import TerminalStatus
from ._ratelimit import RateLimit, TokenBucket
from ._records import RequestRecord, SimStats
from ._server import SimCore, build_api_app, build_storage_app
from ._settings import ResultStatus, check_options, result_words
from ._spec import ModelSpec, PriceUnit
from ._state import CancelRule, Clock, JobScript, JobView, World

__all__ = ["Simulator"]

_SHUTDOWN_TIMEOUT: Final = 0.25
_DEFAULT_WAIT: Final = 10.0


class Simulator:
    """A local RunComfy Model API: the API origin plus a separate storage origin.

    Use it as ``async with Simulator() as sim:`` (or ``await sim.start()`` and
    ``await sim.aclose()``), point a client at ``sim.url`` with ``sim.token``, then assert on
    ``sim.log``, ``sim.count(...)``, ``sim.job(...)`` and ``sim.stats``.

    Args:
        token: The accepted Bearer token.
        other_tokens: Further valid tokens (another account's job answers 403 / 403001).
        clock: ``"scripted"`` (jobs move one step per status poll) or ``"wall"`` (real time).
        script: The default :class:`JobScript` of new jobs.
        workers: Wall clock: how many jobs run at once; the rest queue FIFO.
        run_seconds: Wall clock: a run duration, or a ``(lo, hi)`` range drawn uniformly.
        time_scale: Wall clock: above 1 the world runs faster than real time.
        failure_rate: Wall clock: the share of jobs that fail.
        seed: Seeds every random draw (durations, failures, probabilistic faults).
        faults: The initial fault plan.
        models: Extra catalog entries (:class:`ModelSpec`), besides the seed ones; see
            :meth:`register_model`.
        unknown_models: ``"reject"`` a model id the catalog does not know (400 / 400001 on
            submit, as the real API does) or ``"accept"`` it (opaque inputs, Wan-shaped
            output, cost 0.25). ``GET /v1/models/{id}`` of an unlisted id is 400001 either way.
        terminal_status: ``/status`` word for a finished job: ``"completed"`` (as documented:
            failures show completed too) or ``"outcome"`` (succeeded / failed / cancelled).
        cancel_running: The cancel ``outcome`` for a running job: ``"not_cancellable"`` or
            ``"cancellation_requested"`` (the job completes either way).
        retention_seconds: Simulated seconds a finished job stays readable, then 404001;
            ``None`` keeps it for ever.
        result_status: The words an unfinished ``/result`` says: ``"doc"`` (``in_queue`` /
            ``in_progress``), ``"seen"`` (``pending`` / ``processing``, as some RunComfy
            answers) or a mapping from those two states to any words.
        rate_limit: Rate-limit mode: a :class:`RateLimit` token bucket (429 above it), or
            ``None``; change it later with :meth:`set_rate_limit`.
        host: The interface both origins bind to (loopback by default).
        port: The API port (0: any free port).
        storage_port: The storage port (0: any free port).
        now: The monotonic clock the world reads (tests inject a fake one for the wall clock).

    Raises:
        ValueError: On an invalid option.
    """

    def __init__(
        self,
        *,
        token: str = "test-token",
        other_tokens: Iterable[str] = ("other-token",),
        clock: Clock = "scripted",
        script: JobScript | None = None,
        workers: int = 4,
        run_seconds: float | tuple[float, float] = (5.0, 10.0),
        time_scale: float = 1.0,
        failure_rate: float = 0.0,
        seed: int = 0,
        faults: Iterable[Fault] = (),
        models: Iterable[ModelSpec] = (),
        unknown_models: Literal["accept", "reject"] = "reject",
        terminal_status: TerminalStatus = "completed",
        cancel_running: CancelRule = "not_cancellable",
        retention_seconds: float | None = None,
        result_status: ResultStatus = "doc",
        rate_limit: RateLimit | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        storage_port: int = 0,
        now: Callable[[], float] | None = None,
    ) -> None:
        check_options(token, unknown_models, terminal_status, cancel_running, retention_seconds)
        clock_now = time.monotonic if now is None else now
        world = World(
            clock=clock,
            script=script,
            workers=workers,
            run_seconds=run_seconds,
            time_scale=time_scale,
            failure_rate=failure_rate,
            seed=seed,
            retention_seconds=retention_seconds,
            cancel_running=cancel_running,
            now=clock_now,
        )
        self._token = token
        self._core = SimCore(
            world,
            FaultPlan(faults, seed=seed),
            catalog=Catalog(models),
            tokens=frozenset({token, *other_tokens}),
            unknown_models=unknown_models,
            terminal_status=terminal_status,
            result_words=result_words(result_status),
            now=clock_now,
        )
        self.set_rate_limit(rate_limit)
        self._host, self._ports = host, (port, storage_port)
        self._runners: list[web.AppRunner] = []

    def __repr__(self) -> str:
        where = self._core.base_url or "not started"
        return f"Simulator(url={where!r}, clock={self._core.world.clock!r})"

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Bind both origins and start serving.

        Raises:
            RuntimeError: If already started.
            OSError: If a port cannot be bound.
        """
        if self._runners:
            raise RuntimeError("the simulator is already started")
        core = self._core
        core.closing = asyncio.Event()
        try:
            core.base_url = await self._serve(build_api_app(core), self._ports[0])
            core.storage_url = await self._serve(build_storage_app(core), self._ports[1])
        except BaseException:
            await self.aclose()
            raise
        server = self._runners[0].server
        if server is not None:
            core.connections = lambda: len(server.connections)

    async def _serve(self, app: web.Application, port: int) -> str:
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=_SHUTDOWN_TIMEOUT
        )
        await runner.setup()
        self._runners.append(runner)
        await web.TCPSite(runner, self._host, port).start()
        bound = runner.addresses[0][1]
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{bound}"

    async def aclose(self) -> None:
        """Stop serving; hung requests are dropped, so this returns quickly. Idempotent."""
        self._core.closing.set()
        runners, self._runners = self._runners, []
        for runner in reversed(runners):
            await runner.cleanup()

    @property
    def url(self) -> str:
        """The API base URL (routes live under ``/v1`` on it)."""
        return self._started(self._core.base_url)

    @property
    def storage_url(self) -> str:
        """The storage origin's base URL: output files live here, on another port."""
        return self._started(self._core.storage_url)

    @property
    def token(self) -> str:
        """The accepted Bearer token."""
        return self._token

    @property
    def log(self) -> list[RequestRecord]:
        """Every API request in arrival order (a copy)."""
        return list(self._core.api_log.records)

    @property
    def storage_log(self) -> list[RequestRecord]:
        """Every storage request in arrival order (a copy)."""
        return list(self._core.storage_log.records)

    @property
    def stats(self) -> SimStats:
        """A snapshot of the counters."""
        core = self._core
        return SimStats(
            requests_by_route=dict(core.api_log.by_route),
            jobs_created=core.world.jobs_created,
            max_concurrent_connections=core.api_log.max_connections,
            max_in_flight=core.api_log.max_in_flight,
            faults_injected=dict(core.plan.injected),
            storage_requests=len(core.storage_log.records),
            rate_limited=core.rate_limited,
        )

    def count(
        self, route: str | None = None, *, request_id: str | None = None, method: str | None = None
    ) -> int:
        """Count API requests by route name, job and/or HTTP method."""
        return self._core.api_log.count(route, request_id=request_id, method=method)

    def add_fault(self, fault: Fault) -> None:
        """Append a fault to the plan (checked after the ones already there)."""
        self._core.plan.add(fault)

    def register_model(
        self,
        model: str | ModelSpec,
        *,
        input_schema: dict[str, Any] | None = None,
        output: object = "object",
        output_files: tuple[str, ...] = ("output.mp4",),
        count_input: str | None = None,
        base_price_usd: float = 0.05,
        price_unit: PriceUnit = "second",
        pricing_note: str = "",
        categories: Sequence[str] = (),
        display_name: str | None = None,
    ) -> ModelSpec:
        """Add a model to the catalog (replacing one with the same id), so submits accept it.

        Args:
            model: The model id, or a whole :class:`ModelSpec` (then pass no other argument).
            input_schema: Its JSON schema (422 on violations); ``None`` keeps inputs opaque.
            output: Its jobs' default ``output`` shape (see :class:`JobScript.output`).
            output_files: Its jobs' file names on storage.
            count_input: The input saying how many outputs a job makes (numbered files).
            base_price_usd: The price per ``price_unit``.
            price_unit: ``"second"`` (billed per ``duration`` input second) or ``"output"``.
            pricing_note: Free text for the catalog.
            categories: Catalog categories.
            display_name: The human name (default: the id).

        Returns:
            The registered spec.

        Raises:
            ValueError: On an invalid id or price.
        """
        if isinstance(model, ModelSpec):
            spec = model
        else:
            spec = ModelSpec(
                model_id=model,
                display_name=display_name,
                input_schema=input_schema,
                output=output,
                output_files=tuple(output_files),
                count_input=count_input,
                base_price_usd=base_price_usd,
                price_unit=price_unit,
                pricing_note=pricing_note,
                categories=tuple(categories),
            )
        self._core.catalog.add(spec)
        return spec

    def set_rate_limit(self, limit: RateLimit | None) -> None:
        """Turn rate-limit mode on with a full bucket, change it, or (``None``) turn it off.

        Raises:
            TypeError: If ``limit`` is neither a :class:`RateLimit` nor ``None``.
        """
        if limit is not None and not isinstance(limit, RateLimit):
            raise TypeError(f"expected a RateLimit or None, got {type(limit).__name__}")
        core = self._core
        core.bucket = None if limit is None else TokenBucket(limit, core.now)

    async def wait_for(
        self,
        predicate: Callable[[Sequence[RequestRecord]], bool] | None = None,
        *,
        count: int = 1,
        route: str | None = None,
        request_id: str | None = None,
        method: str | None = None,
        status: int | None = None,
        answered: bool = False,
        storage: bool = False,
        timeout: float = _DEFAULT_WAIT,
    ) -> list[RequestRecord]:
        """Wait until the request log shows something, woken by each arrival and answer.

        Either pass ``predicate`` (called with the log's records, arrival order) or describe
        the records to wait for: at least ``count`` matching every given filter. A filter on
        ``status`` (or ``answered=True``) waits for the answer, not just the arrival.

        Example::

            await sim.wait_for(count=3, route="status", request_id=rid)
            await sim.wait_for(lambda log: any(r.status == 429 for r in log))

        Args:
            predicate: A test over the whole log; overrides the filters.
            count: How many matching records to wait for.
            route: A route name (``"submit"``, ``"status"``… or ``"storage"``).
            request_id: Records about this job.
            method: The HTTP method.
            status: The HTTP status answered.
            answered: Count only records whose answer is known.
            storage: Watch the storage origin's log instead of the API's.
            timeout: Seconds to wait at most.

        Returns:
            The matching records (with ``predicate``: the whole log).

        Raises:
            TimeoutError: If it does not happen within ``timeout``.
            ValueError: If ``timeout`` or ``count`` is negative.
        """
        if timeout < 0 or count < 0:
            raise ValueError("timeout and count must be >= 0")
        log = self._core.storage_log if storage else self._core.api_log

        def matching() -> list[RequestRecord]:
            return log.select(
                route, request_id=request_id, method=method, status=status, answered=answered
            )

        def done(records: Sequence[RequestRecord]) -> bool:
            return predicate(records) if predicate is not None else len(matching()) >= count

        try:
            async with asyncio.timeout(timeout):
                await log.wait_until(done)
        except TimeoutError:
            what = "the predicate" if predicate is not None else f"{count} x {route or 'any'}"
            raise TimeoutError(f"{what} did not show in the log within {timeout} s") from None
        return list(log.records) if predicate is not None else matching()

    def script_next(self, script: JobScript, count: int = 1) -> None:
        """Use ``script`` for the next ``count`` created jobs (FIFO), then the default."""
        self._core.world.script_next(script, count)

    def advance(self, request_id: str, steps: int = 1) -> None:
        """Move a scripted-clock job on by ``steps`` without a poll.

        Raises:
            KeyError: If no such job exists.
            RuntimeError: On the wall clock.
        """
        self._known(request_id)
        self._core.world.advance(request_id, steps)

    def expire(self, request_id: str) -> None:
        """Make a job answer 404001 (and its files 404) from now on.

        Raises:
            KeyError: If no such job exists.
        """
        self._known(request_id)
        self._core.world.expire(request_id)

    def job(self, request_id: str) -> JobView:
        """Return a read-only view of a job (state, queue position, inputs, token, polls…).

        Raises:
            KeyError: If no such job exists.
        """
        self._known(request_id)
        return self._core.world.view(request_id)

    def _known(self, request_id: str) -> None:
        if not self._core.world.exists(request_id):
            raise KeyError(f"no job with request id {request_id!r}")

    def _started(self, url: str) -> str:
        if not url:
            raise RuntimeError("the simulator is not started")
        return url
