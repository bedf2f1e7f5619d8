"""The submit: the one POST that costs money, and the rules that keep it from costing twice.

A submit is retried only while no job can have been created (connect failures, 429);
every ambiguous failure becomes :class:`~runcomfy_async.SubmitUncertainError` carrying
the inputs, because the API has no idempotency key. A bounded number of submits are on
the wire at once (``Limits.max_submits_in_flight``), and a POST already on the wire is
never cut short by a cancellation: the job it creates would be billed and lost.
"""

from __future__ import annotations

import asyncio
import logging
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
from ._retry import is_retryable_submit, retrying
from ._routes import ROUTES, Routes, unreadable
from ._transport import Response
from ._wire import SubmitResponse, decode_submit

__all__ = ["Submitter"]

logger: Final = logging.getLogger("runcomfy_async")

_encoder: Final = msgspec.json.Encoder()


class Submitter:
    """The session's submits: bounded in flight, retried only when provably unsent.

    Args:
        routes: The session's routes.
        max_in_flight: Submit POSTs under way at once.
    """

    def __init__(self, routes: Routes, *, max_in_flight: int) -> None:
        self._routes = routes
        self._slots = anyio.CapacityLimiter(max_in_flight)

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

        async def attempt() -> Response:
            async with self._slots:
                return await self._post_to_completion(body, model_id)

        try:
            response = await retrying(
                attempt,
                policy=self._routes.retry,
                retryable=is_retryable_submit,
                backpressure=self._routes.backpressure,
                route=route,
                hook=self._routes.on_retry,
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
            ) from unreadable(exc, route=route, response=response, request_id=None)

    async def _post_to_completion(self, body: bytes, model_id: str) -> Response:
        """Send a submit POST that no cancellation can cut short once it is on the wire.

        Cancelling mid-flight could leave a billed job whose id nobody ever learns. So the
        POST runs in a task of its own (``asyncio.shield``: anyio's shields do not stop a
        native ``Task.cancel()``, which is how ``asyncio.wait_for`` and web servers cancel);
        if the caller is cancelled meanwhile, the answer is still awaited (bounded by the
        connect and read timeouts), any job it created is cancelled remotely, its id is
        logged, and the cancellation then goes on.
        """
        post = asyncio.ensure_future(self._routes.submit_once(model_id, body))
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
        await self._routes.cancel_abandoned(request_id)


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
