"""The session users hold: lifecycle and wiring only.

Policy lives elsewhere — retries in ``_retry``, routes in ``_api``, polling in
``_polling``, transitions in ``_watch``, downloads in ``_download``, the journal in
``_journal`` — and :class:`Client` connects them, so each stays small and testable.
"""

from __future__ import annotations

import os
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Generator,
    Iterable,
    Mapping,
)
from typing import TYPE_CHECKING, Any, Final, overload

from ._api import Api, check_model_id, check_request_id
from ._batch import KeyedRuns, OnUncertain, check_key, check_on_uncertain
from ._config import DEFAULT_BASE_URL, DEFAULT_LIMITS, DEFAULT_TIMEOUTS, Limits, Timeouts
from ._download import DEFAULT_CONCURRENCY, DEFAULT_MAX_BYTES
from ._download import download as download_files
from ._inputs import prepare_mapping
from ._journal import Journal
from ._map import DEFAULT_MAP_CONCURRENCY, MapItem, MapOutcome, check_item, map_outcomes
from ._polling import DEFAULT_POLLING, PollPolicy, PollScheduler
from ._retry import DEFAULT_RETRY, Backpressure, RetryHook, RetryPolicy
from ._schema_check import check_inputs
from ._transport import Transport
from ._watch import run_to_result, wait, watch
from .models._base import prepare_inputs

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path
    from types import TracebackType
    from typing import Self

    from ._download import DownloadProgress
    from ._events import Event
    from ._types import CancelResult, ModelInfo, Output, Result, Status
    from .models import ModelInput

__all__ = ["TOKEN_ENV", "Client", "RequestHandle"]

TOKEN_ENV: Final = "RUNCOMFY_API_TOKEN"
#: The least time left for the wait of a ``run()`` whose submit used up its deadline.
_MIN_WAIT: Final = 0.001


def _resolve_token(token: str | None) -> str:
    value = token if token is not None else os.environ.get(TOKEN_ENV)
    if not value or not value.strip():
        raise ValueError(
            f"no RunComfy API token: pass Client(token=...) or set the {TOKEN_ENV} "
            "environment variable"
        )
    if value != value.strip() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        # A newline in a header value is header injection; refuse it outright.
        raise ValueError("the API token contains whitespace or control characters")
    return value


class RequestHandle:
    """One submitted job: its id, its model, and the calls about it.

    A handle holds no state but the id, so it can be rebuilt at any time with
    :meth:`Client.handle` (say, in a web server that stored the id). ``await handle``
    is ``await handle.wait()``.
    """

    __slots__ = ("_client", "model_id", "request_id")

    def __init__(self, client: Client, request_id: str, model_id: str | None = None) -> None:
        self._client = client
        self.request_id = request_id
        self.model_id = model_id

    def __repr__(self) -> str:
        return f"RequestHandle(request_id={self.request_id!r}, model_id={self.model_id!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RequestHandle):
            return NotImplemented
        return (self.request_id, self.model_id) == (other.request_id, other.model_id)

    def __hash__(self) -> int:
        return hash((self.request_id, self.model_id))

    async def status(self) -> Status:
        """Fetch the job's status once. See :meth:`Client.status`."""
        return await self._client.status(self.request_id)

    async def result(self, *, include_cost: bool | None = None) -> Result:
        """Fetch the job's result once, without waiting. See :meth:`Client.result`."""
        return await self._client.result(self.request_id, include_cost=include_cost)

    async def cancel(self) -> CancelResult:
        """Ask the server to cancel the job. See :meth:`Client.cancel`."""
        return await self._client.cancel(self.request_id)

    def watch(self, *, timeout: float | None = None) -> AsyncIterator[Event]:
        """Yield the job's transitions. See :meth:`Client.watch`."""
        return self._client.watch(self.request_id, timeout=timeout, model_id=self.model_id)

    async def wait(self, *, timeout: float | None = None) -> Result:
        """Wait for the job's result. See :meth:`Client.wait`."""
        return await self._client.wait(self.request_id, timeout=timeout, model_id=self.model_id)

    def __await__(self) -> Generator[Any, None, Result]:
        return self.wait().__await__()


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
            token=_resolve_token(token),
            base_url=base_url,
            timeouts=timeouts,
            limits=limits,
            trust_env=trust_env,
        )
        self._backpressure = Backpressure()
        self._api = Api(
            self._transport,
            retry=retry,
            backpressure=self._backpressure,
            max_submits_in_flight=limits.max_submits_in_flight,
            include_cost=include_cost,
            on_retry=on_retry,
        )
        self._scheduler = PollScheduler(polling, backpressure=self._backpressure)
        self._journal_path = journal
        self._catalog: dict[str, ModelInfo] = {}
        # The journal file is opened by its first keyed run, not here (no I/O in __init__).
        self._keyed = (
            None
            if journal is None
            else KeyedRuns(
                Journal(journal),
                self._api,
                self._scheduler,
                max_submits=limits.max_submits_in_flight,
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
        model_id, body = await self._prepare(model, inputs)
        response = await self._api.submit(model_id, body)
        return RequestHandle(self, response.request_id, model_id)

    async def _prepare(
        self, model: str | ModelInput, inputs: Mapping[str, object] | None
    ) -> tuple[str, dict[str, object]]:
        if isinstance(model, str):
            if inputs is None:
                raise TypeError("submit(model_id, inputs): inputs are required with a model id")
            return check_model_id(model), await prepare_mapping(inputs)
        if inputs is not None:
            raise TypeError("submit(typed_input) takes no separate inputs")
        return check_model_id(model.model_id), await prepare_inputs(model)

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
        return await self._api.status(check_request_id(request_id))

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
        return await self._api.result(check_request_id(request_id), include_cost=include_cost)

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
        return await self._api.cancel(check_request_id(request_id))

    async def model_info(self, model_id: str) -> ModelInfo:
        """Fetch a model's catalog entry: display name, price, input schema.

        Raises:
            BadRequestError: Unknown model.
            NotFoundError: Unknown model.
            TransportError: No answer, after retries.
            APIStatusError: Another error answer.
        """
        self._check_open()
        return await self._api.model_info(check_model_id(model_id))

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
        info = self._catalog.get(model_id)
        if info is None:
            info = self._catalog[model_id] = await self.model_info(model_id)
        await check_inputs(inputs, info)

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
            retry=self._api.retry,
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
        _check_timeout(timeout)
        return watch(
            self._api,
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
        _check_timeout(timeout)
        return await wait(
            self._api,
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
        _check_timeout(timeout)
        if key is not None:
            if self._keyed is None:
                raise ValueError("run(key=...) needs Client(journal=...)")
            model_id, body = await self._prepare(model, inputs)
            return await self._keyed.run(
                model_id,
                body,
                key=check_key(key),
                timeout=timeout,
                cancel_on_exit=cancel_on_exit,
                on_uncertain=on_uncertain,
            )
        started = time.monotonic()
        handle = await self.submit(model, inputs)  # type: ignore[arg-type]
        if timeout is not None:
            # The deadline counts from the call; a submit is never cut mid-POST (see
            # Api.submit), so the wait gets what is left, and at least one poll.
            timeout = max(timeout - (time.monotonic() - started), _MIN_WAIT)
        return await run_to_result(
            self._api,
            self._scheduler,
            handle.request_id,
            model_id=handle.model_id,
            timeout=timeout,
            cancel_on_exit=cancel_on_exit,
        )

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
        _check_timeout(timeout)
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive integer, got {concurrency!r}")
        if keys is not None and self._keyed is None:
            raise ValueError("map(keys=...) needs Client(journal=...)")
        check_on_uncertain(on_uncertain)
        model_id = check_model_id(model) if isinstance(model, str) else None
        items = inputs if isinstance(model, str) else model
        if items is None or (model_id is None and inputs is not None):
            raise TypeError("call map(model_id, inputs) or map(typed_inputs)")

        async def run_one(item: MapItem, key: str | None) -> Result:
            if isinstance(item, Mapping):
                assert model_id is not None  # check_item() saw to it
                return await self.run(
                    model_id,
                    item,
                    timeout=timeout,
                    key=key,
                    cancel_on_exit=cancel_on_exit,
                    on_uncertain=on_uncertain,
                )
            return await self.run(
                item,
                timeout=timeout,
                key=key,
                cancel_on_exit=cancel_on_exit,
                on_uncertain=on_uncertain,
            )

        return map_outcomes(
            run_one,
            items,
            keys=keys,
            concurrency=concurrency,
            check=lambda item: check_item(model_id, item),
        )


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
