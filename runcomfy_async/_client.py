"""The session users hold: lifecycle and wiring only.

Policy lives elsewhere — routes in ``_routes``, the submit in ``_submit``, polling in
``_poll_plan`` and ``_poll_budget``, transitions in ``_watch``, submit-and-wait in
``_run``, keyed runs in ``_keyed``, bulk runs in ``_map``, downloads in ``_download``,
the catalog in ``_catalog`` — and :class:`Client` connects them, so each stays small
and testable. Each method checks the session is open and hands over to one of them.
"""

from __future__ import annotations

import os
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Iterable,
    Mapping,
)
from typing import TYPE_CHECKING, overload

from ._catalog import Catalog
from ._config import (
    DEFAULT_BASE_URL,
    DEFAULT_LIMITS,
    DEFAULT_POLLING,
    DEFAULT_RETRY,
    DEFAULT_TIMEOUTS,
    TOKEN_ENV,
    Limits,
    PollPolicy,
    RetryPolicy,
    Timeouts,
    resolve_token,
)
from ._download import DEFAULT_CONCURRENCY, DEFAULT_MAX_BYTES
from ._download import download as download_files
from ._handle import RequestHandle
from ._journal import Journal
from ._keyed import KeyedRuns, OnUncertain, check_key
from ._map import DEFAULT_MAP_CONCURRENCY, MapItem, MapOutcome, map_runs
from ._poll_budget import PollScheduler
from ._prepare import prepare
from ._retry import Backpressure, RetryHook
from ._routes import Routes
from ._run import ExitCancel, Runner, check_timeout
from ._submit import Submitter
from ._transport import Transport
from ._watch import wait, watch
from ._wire import check_model_id, check_request_id

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path
    from types import TracebackType
    from typing import Self

    from ._download import DownloadProgress
    from ._events import Event
    from ._output import Output
    from ._wire import CancelResult, ModelInfo, Result, Status
    from .models import ModelInput

__all__ = ["TOKEN_ENV", "Client", "RequestHandle"]

class Client:
    """An async session with RunComfy's Model API.

    Safe to share across thousands of concurrent tasks: connections, in-flight submits
    and the rate of status polls are bounded per session. Use it as
    ``async with Client() as client:`` or close it with ``await client.aclose()``.

    Args:
        token: The API token; defaults to the ``RUNCOMFY_API_TOKEN`` environment variable.
            It is never shown in a repr, a log line or an error, and is sent only to
            ``base_url``'s host.
        base_url: The API origin. Plain ``http://`` is refused except to loopback.
        timeouts: Per-attempt HTTP timeouts (not the overall deadline of a wait).
        retry: How reads, cancels and provably-unsent submits are retried.
        polling: How status polls are paced and shared across jobs.
        limits: Connection pool size and the number of submits in flight.
        journal: Path of an SQLite file that makes keyed ``run``/``map`` crash-safe.
        include_cost: Ask for ``cost`` on every result.
        trust_env: Honour ``HTTP(S)_PROXY`` / ``NO_PROXY`` from the environment.
        on_retry: Called before every retry wait, for metrics.

    Raises:
        ValueError: No token, or a ``base_url`` that is not https (or loopback http).
    """

    def __init__(
        self,
        token: str | None = None,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        retry: RetryPolicy = DEFAULT_RETRY,
        polling: PollPolicy = DEFAULT_POLLING,
        limits: Limits = DEFAULT_LIMITS,
        journal: str | os.PathLike[str] | None = None,
        include_cost: bool = False,
        trust_env: bool = True,
        on_retry: RetryHook | None = None,
    ) -> None:
        self._transport = Transport(
            token=resolve_token(token),
            base_url=base_url,
            timeouts=timeouts,
            limits=limits,
            trust_env=trust_env,
        )
        self._routes = Routes(
            self._transport,
            retry=retry,
            backpressure=Backpressure(),
            include_cost=include_cost,
            on_retry=on_retry,
        )
        self._scheduler = PollScheduler(polling, backpressure=self._routes.backpressure)
        self._runner = Runner(
            Submitter(self._routes, max_in_flight=limits.max_submits_in_flight),
            self._routes,
            self._scheduler,
        )
        self._catalog = Catalog(self._routes)
        # The journal file is opened by its first keyed run, not here (no I/O in __init__).
        self._keyed = (
            None
            if journal is None
            else KeyedRuns(
                Journal(journal), self._runner, max_submits=limits.max_submits_in_flight
            )
        )
        self._closed = False

    @property
    def base_url(self) -> str:
        """The API origin calls go to."""
        return self._transport.base_url

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Client base_url={self.base_url!r} {state}>"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool and the journal; idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._transport.aclose()
        if self._keyed is not None:
            await self._keyed.journal.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the client is closed")

    # --- one call each -----------------------------------------------------------------

    @overload
    async def submit(self, model: ModelInput, inputs: None = None) -> RequestHandle: ...

    @overload
    async def submit(self, model: str, inputs: Mapping[str, object]) -> RequestHandle: ...

    async def submit(
        self, model: str | ModelInput, inputs: Mapping[str, object] | None = None
    ) -> RequestHandle:
        """Submit one job (one POST) and return its handle.

        Args:
            model: A model id such as ``"wan-ai/wan-2-5/image-to-video"``, or a typed
                input from :mod:`runcomfy_async.models` (then ``inputs`` is omitted).
            inputs: The model's inputs, for a model id. ``Path`` or ``bytes`` values are
                checked and sent as ``data:`` URIs.

        Raises:
            InputValidationError: Inputs refused locally; nothing was sent.
            SubmitUncertainError: The server may have created a job; not retried.
            BadRequestError: Unknown model (400 / 400001).
            AuthenticationError: Bad token (401 / 400004).
            InsufficientBalanceError: No balance (402 / 400002).
            PermissionDeniedError: Not allowed (403).
            InvalidInputError: The server refused the inputs (422).
            RateLimitError: Still rate-limited after retries (nothing was created).
            ConnectError: The server could not be reached (nothing was sent).
            ConnectTimeoutError: Connecting timed out (nothing was sent).
            APIStatusError: Another refusal (4xx).
        """
        self._check_open()
        model_id, body = await prepare(model, inputs)
        response = await self._runner.submitter.submit(model_id, body)
        return RequestHandle(self, response.request_id, model_id)

    def handle(self, request_id: str, *, model_id: str | None = None) -> RequestHandle:
        """Rebuild a handle from a stored request id, with no I/O.

        Raises:
            ValueError: ``request_id`` is not a well-formed id.
        """
        return RequestHandle(self, check_request_id(request_id), model_id)

    async def status(self, request_id: str) -> Status:
        """Fetch a job's status once (retrying transient failures).

        Raises:
            NotFoundError: Unknown or expired id (404001).
            PermissionDeniedError: Someone else's request (403001).
            AuthenticationError: Bad token.
            TransportError: No answer, after retries.
            APIStatusError: Another error answer, after retries where they apply.
        """
        self._check_open()
        return await self._routes.status(check_request_id(request_id))

    async def result(self, request_id: str, *, include_cost: bool | None = None) -> Result:
        """Fetch a job's result once, without waiting (it may still be running).

        Args:
            request_id: The job.
            include_cost: Ask for ``cost``; defaults to the client's ``include_cost``.

        Raises:
            NotFoundError: Unknown or expired id (404001).
            PermissionDeniedError: Someone else's request (403001).
            AuthenticationError: Bad token.
            TransportError: No answer, after retries.
            APIStatusError: Another error answer, after retries where they apply.
        """
        self._check_open()
        return await self._routes.result(
            check_request_id(request_id), include_cost=include_cost
        )

    async def cancel(self, request_id: str) -> CancelResult:
        """Ask the server to cancel a job; only queued jobs can be cancelled.

        Cancelling a finished job is a no-op, not an error.

        Raises:
            NotFoundError: Unknown or expired id (404001).
            PermissionDeniedError: Someone else's request (403001).
            TransportError: No answer, after retries.
            APIStatusError: Another error answer.
        """
        self._check_open()
        return await self._routes.cancel(check_request_id(request_id))

    async def model_info(self, model_id: str) -> ModelInfo:
        """Fetch a model's catalog entry: display name, price, input schema.

        Raises:
            BadRequestError: Unknown model.
            NotFoundError: Unknown model.
            TransportError: No answer, after retries.
            APIStatusError: Another error answer.
        """
        self._check_open()
        return await self._routes.model_info(check_model_id(model_id))

    async def check_inputs(self, model_id: str, inputs: Mapping[str, object]) -> None:
        """Check a plain mapping against the model's catalog schema, before paying.

        Opt-in, for models without a typed input class: the schema (fetched once per
        model per session) is applied locally — required fields, types, enums, lengths,
        ranges, and RunComfy's ``validations`` such as pixel sizes of local files.

        Raises:
            InputValidationError: A value breaks the schema (field, value and rule named).
            BadRequestError: Unknown model.
            NotFoundError: Unknown model.
            TransportError: No answer, after retries.
            APIStatusError: Another error answer.
        """
        self._check_open()
        await self._catalog.check_inputs(model_id, inputs)

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

        Each file streams to a hidden temporary file in ``dest`` and is renamed into place
        only when every file has arrived whole; on any failure or cancellation the other
        downloads are cancelled, no partial file is left, and the first failure is raised.
        No ``Authorization`` header is ever sent to storage. Transient failures are retried
        with the client's retry policy, resuming with ``Range`` where the server allows.

        Args:
            result: A succeeded :class:`Result` (every ``output.urls``, in order), an
                :class:`Output`, one URL or a sequence of URLs. URLs must be ``https``
                (plain ``http`` only to loopback).
            dest: The directory; created with its parents when missing. File names come
                from the URL's last path segment, made safe (no traversal, no hidden or
                device names), with ``-2``, ``-3`` … for duplicates and an extension from
                the Content-Type when the name has none.
            concurrency: Files downloaded at once (default 4).
            max_bytes: Per-file size cap (default 2 GiB); ``None`` for none.
            overwrite: Replace existing files; by default an existing file is an error
                and nothing is written.
            progress: Called as ``progress(url, done, total)`` on the event loop as bytes
                arrive; ``total`` is ``None`` when the server did not say.

        Returns:
            The written paths, absolute, in the order of the URLs.

        Raises:
            ValueError: A result that did not succeed or has no output; a non-https URL.
            DownloadTooLargeError: A file is larger than ``max_bytes``.
            NotFoundError: Storage answered 404 (an expired or unknown link).
            PermissionDeniedError: Storage answered 403 (an expired signed link, say).
            RateLimitError: Storage kept answering 429, after retries.
            ServerError: Storage kept answering 5xx, after retries.
            APIStatusError: Another error answer from storage.
            TransportError: The connection failed, broke or timed out, after retries.
            FileExistsError: A target file exists and ``overwrite`` is False.
            OSError: ``dest`` or a file in it could not be written.
        """
        self._check_open()
        return await download_files(
            self._transport,
            result,
            dest,
            concurrency=concurrency,
            max_bytes=max_bytes,
            overwrite=overwrite,
            progress=progress,
            retry=self._routes.retry,
        )

    # --- waiting -----------------------------------------------------------------------

    def watch(
        self, request_id: str, *, timeout: float | None = None, model_id: str | None = None
    ) -> AsyncIterator[Event]:
        """Yield a job's state transitions until, and including, the terminal one.

        Only real changes are yielded (a repeated status is not). Leaving the loop
        early is safe and never cancels the job remotely.

        Args:
            request_id: The job.
            timeout: Overall deadline in seconds; ``None`` waits as long as it takes.
            model_id: The job's model, if known: it lets polling learn run times.

        Raises:
            WaitTimeoutError: The deadline passed (also a ``TimeoutError``).
            NotFoundError: Unknown or expired id.
            PermissionDeniedError: Someone else's request.
            TransportError: Polling kept failing.
            APIStatusError: Polling kept failing.
        """
        self._check_open()
        check_timeout(timeout)
        return watch(
            self._routes,
            self._scheduler,
            check_request_id(request_id),
            model_id=model_id,
            timeout=timeout,
        )

    async def wait(
        self, request_id: str, *, timeout: float | None = None, model_id: str | None = None
    ) -> Result:
        """Wait for a job to finish and return its result. Never cancels remotely.

        Raises:
            JobFailedError: The job failed; the error and result are attached.
            JobCancelledError: The job was cancelled.
            WaitTimeoutError: The deadline passed (also a ``TimeoutError``).
            NotFoundError: Unknown or expired id.
            PermissionDeniedError: Someone else's request.
            TransportError: Polling kept failing.
            APIStatusError: Polling kept failing.
        """
        self._check_open()
        check_timeout(timeout)
        return await wait(
            self._routes,
            self._scheduler,
            check_request_id(request_id),
            model_id=model_id,
            timeout=timeout,
        )

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
    ) -> Result:
        """Submit a job and wait for its result.

        If the awaiting task is cancelled, or the deadline passes, while the job is
        still queued, one shielded, time-boxed remote cancel is sent before the
        cancellation (or ``WaitTimeoutError``) propagates — unless ``cancel_on_exit``
        is False.

        Args:
            model: A model id or a typed input.
            inputs: The inputs, with a model id.
            timeout: Overall deadline in seconds, counted from the call. A submit on
                the wire is never cut short; the wait gets whatever time is left.
            key: With a journal, makes the call resumable: the intent is recorded
                before the POST and the request id after it, so a rerun with the same
                key re-attaches to the job (no new POST), or returns its stored result
                (no request at all). A key whose earlier submit may have created a job
                is never submitted again silently (see ``on_uncertain``).
            cancel_on_exit: Cancel a still-queued job when the wait is abandoned.
            on_uncertain: For a key journaled as possibly submitted (the process
                stopped mid-submit, or the POST failed ambiguously): ``"raise"``
                :class:`UncertainKeyError`, or ``"resubmit"`` it, accepting that the
                job may then exist twice.

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
        model_id, body = await prepare(model, inputs)
        if key is None:
            return await self._runner.run(
                model_id, body, timeout=timeout, cancel_on_exit=cancel_on_exit
            )
        if self._keyed is None:
            raise ValueError("run(key=...) needs Client(journal=...)")
        return await self._keyed.run(
            model_id,
            body,
            key=check_key(key),
            timeout=timeout,
            cancel_on_exit=cancel_on_exit,
            on_uncertain=on_uncertain,
        )

    async def _cancel_on_exit(
        self, request_id: str, *, queued: bool, exc: BaseException
    ) -> ExitCancel:
        """The session's cancel-on-exit, for the CLI, which drives ``watch()`` itself."""
        return await self._runner.cancel_on_exit(request_id, queued=queued, exc=exc)

    @overload
    def map(
        self,
        model: str,
        inputs: Iterable[Mapping[str, object]] | AsyncIterable[Mapping[str, object]],
        *,
        concurrency: int = DEFAULT_MAP_CONCURRENCY,
        keys: Iterable[str] | None = None,
        timeout: float | None = None,
        cancel_on_exit: bool = True,
        on_uncertain: OnUncertain = "raise",
    ) -> AsyncGenerator[MapOutcome, None]: ...

    @overload
    def map(
        self,
        model: Iterable[ModelInput] | AsyncIterable[ModelInput],
        inputs: None = None,
        *,
        concurrency: int = DEFAULT_MAP_CONCURRENCY,
        keys: Iterable[str] | None = None,
        timeout: float | None = None,
        cancel_on_exit: bool = True,
        on_uncertain: OnUncertain = "raise",
    ) -> AsyncGenerator[MapOutcome, None]: ...

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

        ``map(model_id, inputs)`` takes mappings for one model; ``map(typed_inputs)``
        takes typed inputs (each knows its model). Either may be a plain or an async
        iterable, pulled lazily. Every item ends as a :class:`MapOutcome` carrying its
        ``index`` (and ``key``) with a ``result`` or an ``error``: one failing item never
        stops the others. Leaving the loop early stops submitting and cancels the items
        under way (their queued jobs remotely, unless ``cancel_on_exit`` is False);
        wrap the loop in ``contextlib.aclosing`` to have that finish before moving on::

            async with aclosing(client.map(MODEL, inputs, keys=ids)) as outcomes:
                async for outcome in outcomes:
                    ...

        Args:
            model: A model id, or the typed inputs (then ``inputs`` is omitted).
            inputs: The inputs for a model id.
            concurrency: Items in flight at once (submitted, not yet finished).
            keys: One journal key per item, in order, making the batch resumable (see
                :meth:`run`); needs ``Client(journal=...)``.
            timeout: Each item's deadline in seconds (see :meth:`run`).
            cancel_on_exit: Cancel a still-queued job whose wait is abandoned.
            on_uncertain: For keys journaled as possibly submitted (see :meth:`run`).

        Returns:
            An async generator of outcomes, in completion order.

        Raises:
            ValueError: At once: a bad option, or ``keys`` without a journal. From the
                iterator: fewer keys than inputs, an empty key, or a typed input for a
                model other than ``model``.
            TypeError: At once: neither ``map(model_id, inputs)`` nor
                ``map(typed_inputs)``. From the iterator: a mapping with no model id.
        """
        self._check_open()
        return map_runs(
            self.run,
            model,
            inputs,
            concurrency=concurrency,
            keys=keys,
            timeout=timeout,
            cancel_on_exit=cancel_on_exit,
            on_uncertain=on_uncertain,
            journaled=self._keyed is not None,
        )
