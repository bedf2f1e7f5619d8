"""The API's routes: build each request, pick its retry class, decode its answer.

One method per route. Reads and cancel retry on anything transient; a submit retries
only when no job can have been created, and turns every ambiguous failure into
:class:`~runcomfy_async.SubmitUncertainError` carrying the inputs. The status poll is
offered twice: :meth:`Api.status` retries like any read, :meth:`Api.poll_status` makes a
single attempt, because the poll scheduler is itself the retry loop for polls and must
account every request against the shared budget.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from typing import Final

import anyio
import msgspec

from ._errors import (
    APIStatusError,
    RequestTimeoutError,
    RunComfyError,
    ServerError,
    SubmitUncertainError,
    TransportError,
    UnexpectedResponseError,
)
from ._retry import (
    Backpressure,
    RetryHook,
    RetryPolicy,
    is_retryable_read,
    is_retryable_submit,
    retrying,
)
from ._transport import Response, Transport
from ._types import (
    CancelResult,
    ModelInfo,
    Result,
    Status,
    SubmitResponse,
    decode_cancel,
    decode_model_info,
    decode_result,
    decode_status,
    decode_submit,
    is_valid_request_id,
)

__all__ = ["DEFAULT_CANCEL_TIMEOUT", "ROUTES", "Api", "check_model_id", "check_request_id"]

ROUTES: Final = {
    "submit": "POST /v1/models/{model_id}",
    "status": "GET /v1/requests/{id}/status",
    "result": "GET /v1/requests/{id}/result",
    "cancel": "POST /v1/requests/{id}/cancel",
    "model": "GET /v1/models/{model_id}",
}

logger: Final = logging.getLogger("runcomfy_async")

#: Seconds a cancel of an abandoned job may take, retries included.
DEFAULT_CANCEL_TIMEOUT: Final = 5.0

# Segments of letters, digits, dot, dash, underscore; slashes between (not URL-encoded).
_MODEL_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")
_encoder: Final = msgspec.json.Encoder()


def check_request_id(request_id: object) -> str:
    """Return ``request_id`` if it is safe to put in a URL path.

    Raises:
        ValueError: Not a string of 1–128 letters, digits, ``-`` or ``_``; this also
            refuses ``/``, ``..`` and control characters.
    """
    if not is_valid_request_id(request_id):
        raise ValueError(f"not a RunComfy request id: {request_id!r}")
    assert isinstance(request_id, str)
    return request_id


def check_model_id(model_id: object) -> str:
    """Return ``model_id`` if it is a well-formed model path like ``wan-ai/wan-2-5/i2v``.

    Raises:
        ValueError: Empty, too long, or holding characters or segments (``..``) that
            could change the URL.
    """
    if (
        not isinstance(model_id, str)
        or len(model_id) > 256
        or not _MODEL_ID.fullmatch(model_id)
        or any(part in (".", "..") for part in model_id.split("/"))
    ):
        raise ValueError(f"not a RunComfy model id: {model_id!r}")
    return model_id


def _unreadable(
    exc: Exception, *, route: str, response: Response, request_id: str | None
) -> UnexpectedResponseError:
    return UnexpectedResponseError(
        route=route,
        status=response.status,
        request_id=request_id,
        error_message=f"unreadable answer: {exc}",
    )


class Api:
    """The five calls, over one transport, with the session's retry policy."""

    def __init__(
        self,
        transport: Transport,
        *,
        retry: RetryPolicy,
        backpressure: Backpressure,
        max_submits_in_flight: int,
        include_cost: bool = False,
        on_retry: RetryHook | None = None,
    ) -> None:
        self.transport = transport
        self.retry = retry
        self.backpressure = backpressure
        self.include_cost = include_cost
        self._on_retry = on_retry
        self._submit_slots = anyio.CapacityLimiter(max_submits_in_flight)

    async def _read(
        self,
        method: str,
        path: str,
        *,
        route: str,
        request_id: str | None,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> Response:
        """One idempotent call (a read, or a cancel), retried on anything transient."""

        async def attempt() -> Response:
            return await self.transport.request(
                method, path, route=route, request_id=request_id, params=params, body=body
            )

        return await retrying(
            attempt,
            policy=self.retry,
            retryable=is_retryable_read,
            backpressure=self.backpressure,
            route=route,
            request_id=request_id,
            hook=self._on_retry,
        )

    async def submit(self, model_id: str, inputs: Mapping[str, object]) -> SubmitResponse:
        """POST the inputs; retried only while no job can have been created.

        Raises:
            SubmitUncertainError: The server may have created a job (timeout after
                sending, reset, 5xx, an unusable 2xx).
            APIStatusError: The server refused the submit (4xx), so nothing was billed.
            TransportError: The request never reached the server, after retries.
        """
        route = ROUTES["submit"]
        body = _encoder.encode(inputs)
        path = f"/v1/models/{model_id}"

        async def attempt() -> Response:
            async with self._submit_slots:
                return await self._post_to_completion(path, body, model_id)

        try:
            response = await retrying(
                attempt,
                policy=self.retry,
                retryable=is_retryable_submit,
                backpressure=self.backpressure,
                route=route,
                hook=self._on_retry,
            )
        except RunComfyError as exc:
            if _certainly_not_created(exc):
                raise
            raise SubmitUncertainError(
                model_id=model_id, inputs=inputs, reason=_reason(exc)
            ) from exc
        try:
            return decode_submit(response.body)
        except (msgspec.MsgspecError, ValueError) as exc:
            raise SubmitUncertainError(
                model_id=model_id,
                inputs=inputs,
                reason=f"HTTP {response.status} without a usable request_id",
            ) from _unreadable(exc, route=route, response=response, request_id=None)

    async def _post_to_completion(self, path: str, body: bytes, model_id: str) -> Response:
        """Send a submit POST that no cancellation can cut short once it is on the wire.

        Cancelling mid-flight could leave a billed job whose id nobody ever learns. So the
        POST runs in a task of its own (``asyncio.shield``: anyio's shields do not stop a
        native ``Task.cancel()``, which is how ``asyncio.wait_for`` and web servers cancel);
        if the caller is cancelled meanwhile, the answer is still awaited (bounded by the
        connect and read timeouts), any job it created is cancelled remotely, its id is
        logged, and the cancellation then goes on.
        """
        post = asyncio.ensure_future(
            self.transport.request("POST", path, route=ROUTES["submit"], body=body)
        )
        try:
            return await asyncio.shield(post)
        except asyncio.CancelledError:
            with anyio.CancelScope(shield=True):
                await self._cancel_orphan(post, model_id)
            raise

    async def _cancel_orphan(self, post: asyncio.Future[Response], model_id: str) -> None:
        try:
            response = await post
            request_id = decode_submit(response.body).request_id
        except (RunComfyError, msgspec.MsgspecError, ValueError):
            return  # no usable id: nothing we could cancel
        logger.warning(
            "submit to %s was cancelled while on the wire; it created request %s",
            model_id,
            request_id,
        )
        await self.cancel_abandoned(request_id)

    async def cancel_abandoned(self, request_id: str) -> None:
        """Cancel a job nobody will collect: shielded, time-boxed, failures only logged.

        Used when the caller's own task is being cancelled, so it must neither be
        interrupted by that cancellation nor raise over it.
        """
        with anyio.move_on_after(DEFAULT_CANCEL_TIMEOUT, shield=True) as scope:
            try:
                answer = await self.cancel(request_id)
            except RunComfyError as exc:
                logger.warning("could not cancel abandoned request %s: %s", request_id, exc)
            else:
                logger.info("cancelled abandoned request %s: %s", request_id, answer.outcome)
        if scope.cancelled_caught:
            logger.warning(
                "cancel of abandoned request %s timed out after %g s",
                request_id,
                DEFAULT_CANCEL_TIMEOUT,
            )

    async def status(self, request_id: str) -> Status:
        """GET the status, retrying transient failures."""
        route = ROUTES["status"]
        response = await self._read(
            "GET", f"/v1/requests/{request_id}/status", route=route, request_id=request_id
        )
        return self._decode_status(response, route, request_id)

    async def poll_status(self, request_id: str) -> Status:
        """GET the status once, after any session-wide 429 pause; no retry."""
        route = ROUTES["status"]
        await self.backpressure.wait()
        response = await self.transport.request(
            "GET", f"/v1/requests/{request_id}/status", route=route, request_id=request_id
        )
        return self._decode_status(response, route, request_id)

    def _decode_status(self, response: Response, route: str, request_id: str) -> Status:
        try:
            return decode_status(response.body)
        except msgspec.MsgspecError as exc:
            raise _unreadable(exc, route=route, response=response, request_id=request_id) from exc

    async def result(self, request_id: str, *, include_cost: bool | None = None) -> Result:
        """GET the result (no waiting), retrying transient failures."""
        route = ROUTES["result"]
        with_cost = self.include_cost if include_cost is None else include_cost
        response = await self._read(
            "GET",
            f"/v1/requests/{request_id}/result",
            route=route,
            request_id=request_id,
            params={"include_cost": "true"} if with_cost else None,
        )
        try:
            return decode_result(response.body)
        except msgspec.MsgspecError as exc:
            raise _unreadable(exc, route=route, response=response, request_id=request_id) from exc

    async def cancel(self, request_id: str) -> CancelResult:
        """POST a cancel; retried like a read, since cancelling twice is harmless."""
        route = ROUTES["cancel"]
        response = await self._read(
            "POST",
            f"/v1/requests/{request_id}/cancel",
            route=route,
            request_id=request_id,
            body=b"{}",
        )
        try:
            return decode_cancel(response.body, request_id)
        except (msgspec.MsgspecError, ValueError) as exc:
            raise _unreadable(exc, route=route, response=response, request_id=request_id) from exc

    async def model_info(self, model_id: str) -> ModelInfo:
        """GET a model's catalog entry."""
        route = ROUTES["model"]
        response = await self._read("GET", f"/v1/models/{model_id}", route=route, request_id=None)
        try:
            return decode_model_info(response.body)
        except msgspec.MsgspecError as exc:
            raise _unreadable(exc, route=route, response=response, request_id=None) from exc


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
