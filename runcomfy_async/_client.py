"""The session users hold: lifecycle and wiring only.

Policy lives in the modules :class:`~runcomfy_async._session.Session` builds (routes,
submit, polling, watch, run, keyed runs, map, downloads, catalog, input checks); each
method checks the session is open and hands over to one of them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, overload

from ._config import DEFAULT_LIMITS, DEFAULT_POLLING, DEFAULT_RETRY, DEFAULT_TIMEOUTS
from ._download import DEFAULT_CONCURRENCY, DEFAULT_MAX_BYTES
from ._download import download as download_files
from ._handle import RequestHandle
from ._keyed import OnUncertain
from ._map import DEFAULT_MAP_CONCURRENCY, MapItem, MapOutcome, map_runs
from ._retry import RetryHook
from ._run import check_timeout
from ._session import Session
from ._spend import stop_at_limit
from ._views import ClientViews
from ._wire import check_request_id

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from ._config import Limits, PollPolicy, RetryPolicy, Timeouts
    from ._download import DownloadProgress
    from ._events import Event
    from ._output import Output
    from ._wire import CancelResult, ModelInfo, Result, Status
    from .models import ModelInput

__all__ = ["Client"]


class Client(ClientViews):
    """An async session with RunComfy's Model API.

    Safe to share across thousands of concurrent tasks: connections, in-flight submits
    and the status poll rate are bounded per session. ``async with Client() as c:``.

    Args:
        token: The API token (default: ``$RUNCOMFY_API_TOKEN``, else the file named by
            ``$RUNCOMFY_API_TOKEN_FILE``); never shown, sent only to ``base_url``'s host.
        base_url: The API origin (default: ``$RUNCOMFY_BASE_URL``, else RunComfy's).
            Plain ``http://`` is refused except to loopback.
        timeouts: Per-attempt HTTP timeouts (not the overall deadline of a wait).
        retry: How reads, cancels and provably-unsent submits are retried.
        polling: How status polls are paced and shared across jobs.
        limits: Connection pool size and the number of submits in flight.
        journal: Path of an SQLite file that makes keyed ``run``/``map`` crash-safe.
        include_cost: Ask for ``cost`` on every result.
        trust_env: Honour ``HTTP(S)_PROXY`` / ``NO_PROXY`` from the environment.
        on_retry: Called before every retry wait, for metrics.
        check_inputs: ``None``: dicts for the seed models get their typed class's checks;
            ``True``: other models' too, by catalog schema; ``False``: none for dicts.
        spend_limit_usd: Refuse (``SpendLimitError``) a submit whose estimated price
            would take ``spent_usd`` past this; ``prices_usd``: USD per job by model id.
        tracer_provider: For the ``runcomfy.run`` spans (default: OpenTelemetry's global
            one, when ``opentelemetry-api`` is installed); ``meter_provider``: metrics.

    Raises:
        ValueError: No token, or a ``base_url`` that is not https (or loopback http).
    """

    def __init__(
        self,
        token: str | None = None,
        *,
        base_url: str | None = None,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        retry: RetryPolicy = DEFAULT_RETRY,
        polling: PollPolicy = DEFAULT_POLLING,
        limits: Limits = DEFAULT_LIMITS,
        journal: str | os.PathLike[str] | None = None,
        include_cost: bool = False,
        trust_env: bool = True,
        on_retry: RetryHook | None = None,
        check_inputs: bool | None = None,
        spend_limit_usd: float | None = None,
        prices_usd: Mapping[str, float] | None = None,
        tracer_provider: object = None,
        meter_provider: object = None,
    ) -> None:
        self._s = Session(
            token=token,
            base_url=base_url,
            timeouts=timeouts,
            retry=retry,
            polling=polling,
            limits=limits,
            journal=journal,
            include_cost=include_cost,
            trust_env=trust_env,
            on_retry=on_retry,
            check_inputs=check_inputs,
            spend_limit_usd=spend_limit_usd,
            prices_usd=prices_usd,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
        )
        self._closed = False

    @overload
    async def submit(
        self, model: ModelInput, inputs: None = None, *, price_usd: float | None = None
    ) -> RequestHandle: ...

    @overload
    async def submit(
        self, model: str, inputs: Mapping[str, object], *, price_usd: float | None = None
    ) -> RequestHandle: ...

    async def submit(
        self,
        model: str | ModelInput,
        inputs: Mapping[str, object] | None = None,
        *,
        price_usd: float | None = None,
    ) -> RequestHandle:
        """Submit one job (one POST) and return its handle.

        Args:
            model: A model id such as ``"wan-ai/wan-2-5/image-to-video"``, or a typed
                input from :mod:`runcomfy_async.models` (then ``inputs`` is omitted).
            inputs: The model's inputs, for a model id. ``Path`` or ``bytes`` values are
                checked and sent as ``data:`` URIs.
            price_usd: The job's price under ``spend_limit_usd``, instead of the estimate.

        Raises:
            InputValidationError: Inputs refused locally; nothing was sent.
            SpendLimitError: Over ``spend_limit_usd``, or no price known; nothing was sent.
            SubmitUncertainError: The server may have created a job; not retried.
            APIStatusError: Refused, so nothing was created: ``BadRequestError`` (unknown
                model, 400001), ``AuthenticationError``, ``InsufficientBalanceError``,
                ``PermissionDeniedError``, ``InvalidInputError`` (422), ``RateLimitError``
                (after retries), or another 4xx.
            ConnectError: The server could not be reached (nothing was sent); also
                ``ConnectTimeoutError``.
        """
        self._check_open()
        model_id, body = await self._s.prepare(model, inputs)
        return RequestHandle(self, await self._s.submit(model_id, body, price_usd), model_id)

    def handle(self, request_id: str, *, model_id: str | None = None) -> RequestHandle:
        """Rebuild a handle from a stored request id, with no I/O (ValueError if malformed)."""
        return RequestHandle(self, check_request_id(request_id), model_id)

    async def status(self, request_id: str) -> Status:
        """Fetch a job's status once (retrying transient failures).

        Raises:
            NotFoundError: Unknown or expired id (404001); ``PermissionDeniedError`` for
                someone else's (403001), ``AuthenticationError`` for a bad token.
            TransportError: No answer, after retries; ``APIStatusError`` for another.
        """
        self._check_open()
        return await self._s.routes.status(check_request_id(request_id))

    async def result(self, request_id: str, *, include_cost: bool | None = None) -> Result:
        """Fetch a job's result once, without waiting (it may still be running).

        ``include_cost`` asks for ``cost``; it defaults to the client's ``include_cost``.

        Raises:
            NotFoundError: Unknown or expired id (404001); ``PermissionDeniedError`` for
                someone else's (403001), ``AuthenticationError`` for a bad token.
            TransportError: No answer, after retries; ``APIStatusError`` for another.
        """
        self._check_open()
        return await self._s.routes.result(check_request_id(request_id), include_cost=include_cost)

    async def cancel(self, request_id: str) -> CancelResult:
        """Ask the server to cancel a job; only queued jobs can be cancelled.

        Cancelling a finished job is a no-op, not an error.

        Raises:
            NotFoundError: Unknown or expired id (404001); ``PermissionDeniedError`` for
                someone else's (403001), ``AuthenticationError`` for a bad token.
            TransportError: No answer, after retries; ``APIStatusError`` for another.
        """
        self._check_open()
        return await self._s.routes.cancel(check_request_id(request_id))

    async def model_info(self, model_id: str) -> ModelInfo:
        """Fetch a model's catalog entry (price, input schema), once per session.

        Raises:
            BadRequestError: Unknown model (400001; some hosts answer ``NotFoundError``).
            TransportError: No answer, after retries; ``APIStatusError`` for another.
        """
        self._check_open()
        return await self._s.catalog.info(model_id)

    def list_models(
        self, *, search: str | None = None, category: str | None = None
    ) -> AsyncIterator[ModelInfo]:
        """Iterate the catalog's entries (no schemas), paging by itself; filters optional.

        Raises:
            APIStatusError: The catalog refused; ``TransportError``: no answer.
        """
        self._check_open()
        return self._s.catalog.list_models(search=search, category=category)

    async def check_inputs(self, model_id: str, inputs: Mapping[str, object]) -> None:
        """Check a plain mapping against the model's catalog schema, before paying.

        The schema (fetched once per session) is applied locally, ``validations`` too.

        Raises:
            InputValidationError: A value breaks the schema (field, value and rule named).
            BadRequestError: Unknown model (400001; some hosts answer ``NotFoundError``).
            TransportError: No answer, after retries; ``APIStatusError`` for another.
        """
        self._check_open()
        await self._s.catalog.check_inputs(model_id, inputs)

    async def download(
        self,
        result: Result | Output | str | Sequence[str],
        dest: str | os.PathLike[str],
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
        overwrite: bool = False,
        progress: DownloadProgress | None = None,
    ) -> list[Path]:
        """Download a job's output files into the directory ``dest``: all of them, or none.

        Files stream to temporary files, renamed into place once all arrived whole (no
        partial file is left); storage never gets the token; retries resume with Range.

        Args:
            result: A succeeded :class:`Result` (every ``output.urls``), an
                :class:`Output`, or URLs (``https``; plain ``http`` only to loopback).
            dest: The directory, created when missing. Names come from each URL's last
                path segment (else its output key), made safe; ``-2`` … for duplicates.
            concurrency: Files downloaded at once.
            max_bytes: Per-file size cap (default 2 GiB); ``None`` for none.
            overwrite: Replace existing files (else an existing one is an error).
            progress: Called as ``progress(url, done, total)`` as bytes arrive.

        Returns:
            The written paths, absolute, in the URLs' order.

        Raises:
            ValueError: A result that did not succeed or has no output.
            DownloadRefusedError: A URL or redirect hop not https to a public host (nor
                http to loopback), or over 5 redirects; nothing was sent there.
            DownloadTooLargeError: A file is larger than ``max_bytes``.
            NotFoundError: Storage answered 404 (an expired link); ``APIStatusError``
                for another error answer (403, 429, 5xx after retries).
            TransportError: The connection failed, broke, timed out or stayed under the
                floor rate (``Timeouts.download_min_rate``), after retries.
            FileExistsError: A target file exists and ``overwrite`` is False.
            OSError: ``dest`` or a file in it could not be written.
        """
        self._check_open()
        return await download_files(
            self._s.transport,
            result,
            dest,
            concurrency=concurrency,
            max_bytes=max_bytes,
            overwrite=overwrite,
            progress=progress,
            retry=self._s.routes.retry,
        )

    def watch(
        self, request_id: str, *, timeout: float | None = None, model_id: str | None = None
    ) -> AsyncIterator[Event]:
        """Yield a job's state transitions until, and including, the terminal one.

        Only real changes are yielded. Leaving the loop early is safe and never cancels
        the job remotely. ``timeout`` is the overall deadline in seconds (None: no limit);
        ``model_id``, if known, lets polling learn the model's run time.

        Raises:
            WaitTimeoutError: The deadline passed (also a ``TimeoutError``).
            NotFoundError: Unknown or expired id; ``PermissionDeniedError``: someone else's.
            TransportError: Polling kept failing (``APIStatusError`` for an error answer).
        """
        self._check_open()
        check_timeout(timeout)
        return self._s.watch(check_request_id(request_id), model_id, timeout)

    async def wait(
        self, request_id: str, *, timeout: float | None = None, model_id: str | None = None
    ) -> Result:
        """Wait for a job to finish and return its result. Never cancels remotely.

        Raises:
            JobFailedError: The job failed; the error and result are attached.
            JobCancelledError: The job was cancelled.
            WaitTimeoutError: The deadline passed (also a ``TimeoutError``).
            NotFoundError: Unknown or expired id; ``PermissionDeniedError``: someone else's.
            TransportError: Polling kept failing (``APIStatusError`` for an error answer).
        """
        self._check_open()
        check_timeout(timeout)
        return await self._s.wait(check_request_id(request_id), model_id, timeout)

    @overload
    async def run(
        self,
        model: ModelInput,
        inputs: None = None,
        *,
        timeout: float | None = None,
        key: str | None = None,
        cancel_on_exit: bool = True,
        on_uncertain: OnUncertain = "raise",
        price_usd: float | None = None,
    ) -> Result: ...

    @overload
    async def run(
        self,
        model: str,
        inputs: Mapping[str, object],
        *,
        timeout: float | None = None,
        key: str | None = None,
        cancel_on_exit: bool = True,
        on_uncertain: OnUncertain = "raise",
        price_usd: float | None = None,
    ) -> Result: ...

    async def run(
        self,
        model: str | ModelInput,
        inputs: Mapping[str, object] | None = None,
        *,
        timeout: float | None = None,
        key: str | None = None,
        cancel_on_exit: bool = True,
        on_uncertain: OnUncertain = "raise",
        price_usd: float | None = None,
    ) -> Result:
        """Submit a job and wait for its result.

        If the awaiting task is cancelled, or the deadline passes, while the job is
        still queued, one shielded, time-boxed remote cancel is sent first (unless
        ``cancel_on_exit`` is False).

        Args:
            model: A model id or a typed input.
            inputs: The inputs, with a model id.
            timeout: Overall deadline in seconds, counted from the call. A submit on
                the wire is never cut short; the wait gets whatever time is left.
            key: With a journal, makes the call resumable: a rerun with the same key
                re-attaches to its job (no new POST) or returns its stored result (no
                request); a key whose submit may have created a job is never
                submitted again silently (see ``on_uncertain``).
            cancel_on_exit: Cancel a still-queued job when the wait is abandoned.
            on_uncertain: For a key journaled as possibly submitted: ``"raise"``
                :class:`UncertainKeyError`, or ``"resubmit"`` (it may then run twice).
            price_usd: The job's price under ``spend_limit_usd`` (see :meth:`submit`).

        Raises:
            InputValidationError: Inputs refused locally; nothing was sent.
            SubmitUncertainError: The submit may have created a job; not retried. With
                a key, an ``UncertainKeyError`` naming it.
            KeyConflictError: The key is journaled with another model or other inputs.
            JournalError: The journal could not be read or written.
            JobFailedError: The job failed (a keyed rerun re-raises the stored failure).
            JobCancelledError: The job was cancelled.
            WaitTimeoutError: The deadline passed.
            APIStatusError: An error answer (see :meth:`submit` for the classes).
            TransportError: No answer, after retries.
            ValueError: A key without ``Client(journal=...)``, or an empty key.
        """
        self._check_open()
        check_timeout(timeout)
        self._s.check_key(key)
        model_id, body = await self._s.prepare(model, inputs)
        return await self._s.run(
            model_id,
            body,
            key=key,
            timeout=timeout,
            cancel_on_exit=cancel_on_exit,
            on_uncertain=on_uncertain,
            price_usd=price_usd,
        )

    def map(
        self,
        model: str | Iterable[MapItem] | AsyncIterable[MapItem],
        inputs: Iterable[MapItem] | AsyncIterable[MapItem] | None = None,
        *,
        concurrency: int = DEFAULT_MAP_CONCURRENCY,
        keys: Iterable[str] | None = None,
        timeout: float | None = None,
        cancel_on_exit: bool = True,
        on_uncertain: OnUncertain = "raise",
    ) -> AsyncGenerator[MapOutcome, None]:
        """Run many jobs, ``concurrency`` at a time, yielding each outcome as it completes.

        ``map(model_id, inputs)`` takes mappings for one model, ``map(typed_inputs)``
        typed inputs; either a plain or an async iterable, pulled lazily. Each item ends
        as a :class:`MapOutcome` (``index``, ``key``, ``result`` or ``error``): one
        failing item never stops the others. Once ``spend_limit_usd`` refuses an item,
        no later one is submitted: each ends carrying a ``SpendLimitError``. Leaving
        the loop early stops submitting and cancels the items under way (queued jobs
        remotely, unless ``cancel_on_exit`` is False); ``contextlib.aclosing`` waits.

        Args:
            model: A model id, or the typed inputs (then ``inputs`` is omitted).
            inputs: The inputs for a model id.
            concurrency: Items in flight at once (submitted, not yet finished).
            keys: One journal key per item, making the batch resumable (see :meth:`run`).
            timeout: Each item's deadline in seconds (see :meth:`run`).
            cancel_on_exit: Cancel a still-queued job whose wait is abandoned.
            on_uncertain: For keys journaled as possibly submitted (see :meth:`run`).

        Raises:
            ValueError: At once: a bad option, or ``keys`` without a journal. From the
                iterator: fewer keys than inputs, an empty key, or a typed input for a
                model other than ``model``.
            TypeError: At once: neither ``map(model_id, inputs)`` nor
                ``map(typed_inputs)``. From the iterator: a mapping with no model id.
        """
        self._check_open()
        return map_runs(
            stop_at_limit(self.run, self._s.ledger),
            model,
            inputs,
            concurrency=concurrency,
            keys=keys,
            timeout=timeout,
            cancel_on_exit=cancel_on_exit,
            on_uncertain=on_uncertain,
            journaled=self._s.keyed is not None,
        )
