"""The submit: the one POST that costs money, and the rules that keep it from costing twice.

A submit is retried only while no job can have been created (connect failures, 429);
every ambiguous failure becomes :class:`~runcomfy_async.SubmitUncertainError` carrying
the inputs, because the API has no idempotency key. Any 2xx answer with a usable
``request_id`` is an accepted (billed) job, even if it also carries an ``error_code``.
A bounded number of submits are on the wire at once (``Limits.max_submits_in_flight``).

A POST already on the wire is never cut short by a cancellation: the job it creates
would be billed and lost. But the caller is not kept waiting for it either: when the
caller is cancelled (any kind: an anyio scope, ``Task.cancel()``, ``asyncio.timeout``,
a failing ``TaskGroup``) the POST goes on in a cleanup task owned by the session
(:mod:`._cleanup`), which reads its answer, reports the outcome to the caller's
``on_orphan`` hook (a keyed run journals the id there), logs the id and cancels the job
remotely; the caller gets control back within ``DEFAULT_CANCEL_GRACE``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Final, TypeAlias

import msgspec

from ._cleanup import CleanupTasks, await_briefly
from ._errors import (
    APIStatusError,
    RequestTimeoutError,
    RunComfyError,
    ServerError,
    SubmitUncertainError,
    TransportError,
    UnexpectedResponseError,
)
from ._retry import is_retryable_submit, retrying
from ._routes import ROUTES, Routes, unreadable
from ._transport import Response, status_error
from ._wire import SubmitResponse, decode_error_envelope, decode_submit

__all__ = ["OrphanHook", "Submitter"]

logger: Final = logging.getLogger("runcomfy_async")

_encoder: Final = msgspec.json.Encoder()

OrphanHook: TypeAlias = Callable[[str | None, str | None], Awaitable[None]]
"""Told how an abandoned POST ended: ``(request_id, None)`` a job was created,
``(None, reason)`` one may have been, ``(None, None)`` certainly none."""


class Submitter:
    """The session's submits: bounded in flight, retried only when provably unsent.

    Args:
        routes: The session's routes.
        max_in_flight: Submit POSTs under way at once.
        cleanups: The session's cleanup tasks (abandoned POSTs finish there).
    """

    def __init__(
        self, routes: Routes, *, max_in_flight: int, cleanups: CleanupTasks | None = None
    ) -> None:
        self._routes = routes
        self._slots = asyncio.Semaphore(max_in_flight)
        self.cleanups = cleanups if cleanups is not None else CleanupTasks()

    async def submit(
        self,
        model_id: str,
        inputs: Mapping[str, object],
        *,
        on_orphan: OrphanHook | None = None,
    ) -> SubmitResponse:
        """POST the inputs; retried only while no job can have been created.

        Args:
            model_id: The model.
            inputs: The checked inputs.
            on_orphan: Called (in a cleanup task) with the outcome of a submit whose
                caller was cancelled: of the POST on the wire, or ``(None, None)``
                when none was sent. Always called once if the caller is cancelled.

        Raises:
            SubmitUncertainError: The server may have created a job (timeout after
                sending, reset, 5xx, a 2xx without a usable id).
            APIStatusError: The server refused the submit (4xx), so nothing was billed.
            TransportError: The request never reached the server, after retries.
        """
        route = ROUTES["submit"]
        body = _encoder.encode(inputs)

        handed: list[bool] = []

        async def attempt() -> SubmitResponse:
            async with self._slots:
                response = await self._post_to_completion(body, model_id, on_orphan, handed)
            return _accepted(response, model_id, inputs)

        try:
            return await retrying(
                attempt,
                policy=self._routes.retry,
                retryable=is_retryable_submit,
                backpressure=self._routes.backpressure,
                route=route,
                hook=self._routes.on_retry,
            )
        except asyncio.CancelledError:
            if on_orphan is not None and not handed:
                # Cancelled with no POST on the wire (waiting for a slot, a retry's pause).
                self.cleanups.spawn(on_orphan(None, None), f"submit to {model_id}")
            raise
        except SubmitUncertainError:
            raise
        except RunComfyError as exc:
            if _certainly_not_created(exc):
                raise
            raise SubmitUncertainError(
                model_id=model_id, inputs=inputs, reason=_reason(exc)
            ) from exc

    async def _post_to_completion(
        self, body: bytes, model_id: str, on_orphan: OrphanHook | None, handed: list[bool]
    ) -> Response:
        """Send a submit POST that no cancellation can cut short once it is on the wire.

        The POST runs in a task of its own (``asyncio.shield``: anyio's shields do not
        stop a native ``Task.cancel()``). If the caller is cancelled meanwhile, the rest
        — the answer, the hook, the remote cancel — becomes a cleanup task, which the
        caller waits for only briefly before its cancellation goes on.
        """
        post = asyncio.ensure_future(self._routes.submit_once(model_id, body))
        try:
            return await asyncio.shield(post)
        except asyncio.CancelledError:
            handed.append(True)
            cleanup = self.cleanups.spawn(
                self._finish_orphan(post, model_id, on_orphan), f"submit to {model_id}"
            )
            await await_briefly(cleanup)
            raise

    async def _finish_orphan(
        self, post: asyncio.Future[Response], model_id: str, on_orphan: OrphanHook | None
    ) -> None:
        request_id: str | None = None
        reason: str | None = None
        try:
            response = await post
            request_id = decode_submit(response.body).request_id
        except RunComfyError as exc:
            if not _certainly_not_created(exc):
                reason = _reason(exc)
        except (msgspec.MsgspecError, ValueError):
            reason = "a 2xx answer without a usable request_id"
        if request_id is not None:
            logger.warning(
                "submit to %s was cancelled while on the wire; it created request %s,"
                " which is being cancelled",
                model_id,
                request_id,
            )
        elif reason is not None:
            logger.warning(
                "submit to %s was cancelled while on the wire and may have created a job: %s",
                model_id,
                reason,
            )
        try:
            if on_orphan is not None:
                await on_orphan(request_id, reason)
        finally:
            if request_id is not None:
                await self._routes.cancel_abandoned(request_id)


def _accepted(response: Response, model_id: str, inputs: Mapping[str, object]) -> SubmitResponse:
    """The job a 2xx submit answer names; its error_code, if any, only logged.

    Raises:
        APIStatusError: A 2xx carrying an ``error_code`` and no usable id (as the code
            says: a refusal, or a server error).
        SubmitUncertainError: A 2xx with neither a usable id nor an error code.
    """
    route = ROUTES["submit"]
    try:
        accepted = decode_submit(response.body)
    except (msgspec.MsgspecError, ValueError) as exc:
        envelope = decode_error_envelope(response.body)
        if envelope is not None and envelope.error_code is not None:
            raise status_error(
                status=response.status,
                envelope=envelope,
                route=route,
                request_id=None,
                retry_after=None,
            ) from None
        raise SubmitUncertainError(
            model_id=model_id,
            inputs=inputs,
            reason=f"HTTP {response.status} without a usable request_id",
        ) from unreadable(exc, route=route, response=response, request_id=None)
    if b'"error_code"' in response.body:
        envelope = decode_error_envelope(response.body)
        if envelope is not None and envelope.error_code is not None:
            logger.warning(
                "submit to %s answered HTTP %d with request %s and error_code %s;"
                " a 2xx with an id is an accepted job",
                model_id,
                response.status,
                accepted.request_id,
                envelope.error_code,
            )
    return accepted


def _certainly_not_created(exc: RunComfyError) -> bool:
    """Whether a failed submit provably created no job (so raising it as is is honest)."""
    if is_retryable_submit(exc):
        return True  # never sent, or refused with 429
    # A definite 4xx refusal. 408 is left out: the server may have read the whole body.
    return isinstance(exc, APIStatusError) and not isinstance(
        exc, ServerError | UnexpectedResponseError | RequestTimeoutError
    )


def _reason(exc: RunComfyError) -> str:
    if isinstance(exc, TransportError):
        return exc.__class__.__name__ + ": " + str(exc).split(": ", 1)[-1]
    if isinstance(exc, APIStatusError):
        return f"HTTP {exc.status}" + (f", error_code {exc.error_code}" if exc.error_code else "")
    return str(exc)
