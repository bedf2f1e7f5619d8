"""The parts one client session shares, built once from its options; and its views.

One transport (the connection pool), one set of routes with its retry policy and 429
pause, one poll scheduler, one runner, one catalog cache, one spend ledger and, with a
journal, the keyed runs. :class:`~runcomfy_async.Client` holds one and hands each call
to the part it concerns.

A *view* (``client.with_options(...)``) is a Session over the same pool, catalog cache
and ledger, with its own token, timeouts, retry policy or ``include_cost``. Rate-limit
state (the 429 pause) and the poll budget belong to a token — limits are per account —
so every token gets one of each, made on first use and shared by all views holding that
token; one tenant's 429s never slow another's polls.
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING

from ._catalog import Catalog
from ._cleanup import CleanupTasks
from ._config import resolve_base_url, resolve_token
from ._journal import Journal
from ._keyed import KeyedRuns, OnUncertain, check_key
from ._otel import make_telemetry
from ._poll_budget import PollScheduler
from ._prepare import prepare
from ._retry import Backpressure
from ._run import Runner
from ._spend import PRICE_USD, SpendingSubmitter, SpendLedger, SpendRoutes, check_price
from ._transport import Transport
from ._watch import Watcher, drive, watch

if TYPE_CHECKING:
    from ._config import Limits, PollPolicy, RetryPolicy, Timeouts
    from ._events import Event
    from ._retry import RetryEvent, RetryHook
    from ._wire import Result
    from .models import ModelInput

__all__ = ["Session"]

# Submit times kept for a later wait()/watch() of the same job (oldest dropped first).
RECENT_SUBMITS = 100_000


class Session:
    """One session's shared parts. See :class:`~runcomfy_async.Client` for the options."""

    def __init__(
        self,
        *,
        token: str | None,
        base_url: str | None,
        timeouts: Timeouts,
        retry: RetryPolicy,
        polling: PollPolicy,
        limits: Limits,
        journal: str | os.PathLike[str] | None,
        include_cost: bool,
        trust_env: bool,
        on_retry: RetryHook | None,
        check_inputs: bool | None = None,
        spend_limit_usd: float | None = None,
        prices_usd: Mapping[str, float] | None = None,
        tracer_provider: object = None,
        meter_provider: object = None,
    ) -> None:
        self.ledger = SpendLedger(spend_limit_usd, prices_usd)
        self.telemetry = make_telemetry(tracer_provider, meter_provider)
        self.check_inputs = check_inputs
        self._polling, self._limits, self._on_retry = polling, limits, on_retry
        if self.telemetry is not None:
            self._on_retry = _both(self.telemetry.on_retry, on_retry)
        self._per_token: dict[str, tuple[Backpressure, PollScheduler]] = {}
        self.root: Session | None = None
        self.closed = False
        # request id -> (model id, submit time on the scheduler's clock); see fresh().
        self.recent_submits: dict[str, tuple[str, float]] = {}
        # Submits abandoned mid-POST finish here; aclose() waits for them.
        self.cleanups = CleanupTasks()
        token = resolve_token(token)
        self._assemble(
            token,
            Transport(
                token=token,
                base_url=resolve_base_url(base_url),
                timeouts=timeouts,
                limits=limits,
                trust_env=trust_env,
            ),
            retry=retry,
            include_cost=include_cost,
        )
        # The journal file is opened by its first keyed run, not here (no I/O in __init__).
        self.keyed = (
            None
            if journal is None
            else KeyedRuns(Journal(journal), self.runner, max_submits=limits.max_submits_in_flight)
        )

    def _assemble(
        self, token: str, transport: Transport, *, retry: RetryPolicy, include_cost: bool
    ) -> None:
        """Build the per-view parts over ``transport``, with ``token``'s budget and 429 state."""
        root = self.root or self
        parts = root._per_token.get(token)
        if parts is None:
            backpressure = Backpressure()
            # status, result and cancel requests of the token all draw from its budget
            limits = root._limits
            scheduler = PollScheduler(
                root._polling,
                backpressure=backpressure,
                max_polls_in_flight=min(limits.max_connections, limits.max_connections_per_host),
            )
            parts = (backpressure, scheduler)
            root._per_token[token] = parts
        self.token = token
        self.transport = transport
        if root.telemetry is not None:
            transport.on_response = root.telemetry.on_response
        self.routes = SpendRoutes(
            transport,
            retry=retry,
            backpressure=parts[0],
            include_cost=include_cost,
            on_retry=root._on_retry,
            ledger=root.ledger,
            budget=parts[1],
        )
        self.scheduler = parts[1]
        self.catalog: Catalog = Catalog(
            self.routes, shared_with=None if self.root is None else self.root.catalog
        )
        self.submitter = SpendingSubmitter(
            self.routes,
            max_in_flight=root._limits.max_submits_in_flight,
            ledger=root.ledger,
            catalog=self.catalog,
        )
        self.submitter.cleanups = root.cleanups
        self.runner = Runner(self.submitter, self.routes, self.scheduler)

    def view(
        self,
        *,
        token: str | None,
        include_cost: bool | None,
        timeouts: Timeouts | None,
        retry: RetryPolicy | None,
    ) -> Session:
        """A view over this session's pool, catalog cache and ledger, with other settings."""
        root = self.root or self
        view = object.__new__(Session)
        view.root, view.ledger, view.keyed, view.closed = root, root.ledger, None, False
        view.cleanups = root.cleanups
        view.telemetry, view.check_inputs = root.telemetry, root.check_inputs
        view._assemble(
            self.token if token is None else token,
            self.transport.derive(token=token, timeouts=timeouts),
            retry=self.routes.retry if retry is None else retry,
            include_cost=self.routes.include_cost if include_cost is None else include_cost,
        )
        return view

    async def prepare(
        self, model: str | ModelInput, inputs: Mapping[str, object] | None
    ) -> tuple[str, dict[str, object]]:
        """The model id and checked body for ``submit(model, inputs)``, as this session checks.

        Raises:
            InputValidationError: Inputs refused locally; nothing was sent.
            TypeError: A model id without inputs, or a typed input with separate inputs.
            ValueError: A malformed model id.
            APIStatusError: With ``check_inputs=True``, the catalog refused the model id.
            TransportError: With ``check_inputs=True``, the catalog did not answer.
        """
        if self.check_inputs is False and isinstance(model, str) and inputs is not None:
            return await prepare(model, inputs, builtin=False)
        return await prepare(model, inputs, self.catalog if self.check_inputs else None)

    def check_key(self, key: str | None) -> None:
        """Refuse a key this session cannot honour, before any work is done.

        Raises:
            ValueError: A key without a journal, or an empty key.
        """
        if key is not None:
            if self.root is not None:
                raise ValueError("run(key=...) goes through the client, not a with_options view")
            if self.keyed is None:
                raise ValueError("run(key=...) needs Client(journal=...)")
            check_key(key)

    async def run(
        self,
        model_id: str,
        body: dict[str, object],
        *,
        key: str | None,
        timeout: float | None,
        cancel_on_exit: bool,
        on_uncertain: OnUncertain,
        price_usd: float | None = None,
    ) -> Result:
        """Run one job: keyed over the journal when a key is given, else plainly.

        ``price_usd`` replaces the job's estimate under a spend limit.
        """
        reset = PRICE_USD.set(check_price(price_usd))
        try:
            # One coroutine, no closure: 10,000 runs in flight hold one frame less each.
            if key is None or self.keyed is None:
                call = self.runner.run(
                    model_id, body, timeout=timeout, cancel_on_exit=cancel_on_exit
                )
            else:
                call = self.keyed.run(
                    model_id,
                    body,
                    key=key,
                    timeout=timeout,
                    cancel_on_exit=cancel_on_exit,
                    on_uncertain=on_uncertain,
                )
            if self.telemetry is None or self.telemetry.idle:
                return await call
            return await self.telemetry.traced(model_id, None, call)
        finally:
            PRICE_USD.reset(reset)

    def _watcher(self, request_id: str, model_id: str | None, timeout: float | None) -> Watcher:
        """A watcher of the job, told its model and submit time if this session submitted it."""
        model_id, submitted_at = self.fresh(request_id, model_id)
        return Watcher(
            self.routes,
            self.scheduler,
            request_id,
            model_id=model_id,
            timeout=timeout,
            submitted_at=submitted_at,
        )

    async def wait(self, request_id: str, model_id: str | None, timeout: float | None) -> Result:
        """Wait for a job (``Client.wait``), in a ``runcomfy.run`` span with telemetry."""
        watcher = self._watcher(request_id, model_id, timeout)
        call = drive(watcher)  # never cancels remotely: the job may be someone else's
        if self.telemetry is None or self.telemetry.idle:
            return await call
        return await self.telemetry.traced(watcher.model_id, request_id, call)

    def watch(
        self, request_id: str, model_id: str | None, timeout: float | None
    ) -> AsyncIterator[Event]:
        """A job's transitions (``Client.watch``), learning as a wait does."""
        return watch(functools.partial(self._watcher, request_id, model_id, timeout))

    async def submit(self, model_id: str, body: dict[str, object], price_usd: float | None) -> str:
        """Submit one job (see :meth:`run` for ``price_usd``); return its request id."""
        reset = PRICE_USD.set(check_price(price_usd))
        try:
            request_id = (await self.submitter.submit(model_id, body)).request_id
        finally:
            PRICE_USD.reset(reset)
        recent = (self.root or self).recent_submits
        if len(recent) >= RECENT_SUBMITS:
            del recent[next(iter(recent))]
        recent[request_id] = (model_id, self.scheduler.clock())
        return request_id

    def fresh(self, request_id: str, model_id: str | None) -> tuple[str | None, float | None]:
        """The model and submit time of a job this session submitted, for its wait or watch.

        A wait that knows when its job was submitted bounds the job's start, so the
        model's run time is learned (and the learned schedule used) as in ``run()``; a
        handle rebuilt from a stored id, or a job from elsewhere, has neither.
        """
        known = (self.root or self).recent_submits.get(request_id)
        if known is None:
            return model_id, None
        return model_id or known[0], known[1]

    async def aclose(self) -> None:
        """Wait for the cleanup tasks (each bounded), close the pool, then the journal.

        A view's pool is its own; the cleanup tasks are the session's (a view waits too).
        """
        self.closed = True
        try:
            await self.cleanups.aclose()
        finally:
            await self.transport.aclose()
        if self.keyed is not None:
            await self.keyed.journal.aclose()


def _both(first: RetryHook, second: RetryHook | None) -> RetryHook:
    if second is None:
        return first

    def hook(event: RetryEvent) -> None:
        first(event)
        second(event)

    return hook
