"""The API's routes: build each request, pick its retry class, decode its answer.

One method per route. Reads and cancel retry on anything transient; the submit POST is
sent once here, and :mod:`._submit` decides whether it may be sent again. The status
poll is offered twice: :meth:`Routes.status` retries like any read,
:meth:`Routes.poll_status` makes a single attempt, because the poll scheduler is itself
the retry loop for polls and must account every request against the shared budget.
:meth:`Routes.poll_result` is the same single attempt on ``/result``, which answers the
current state while a job is unfinished, so the poll that sees the end carries the output.
Result fetches and cancels draw from the session's budget too (``budget``): every
attempt waits its turn and reports its answer, so a 429 on any of them teaches it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import partial
from typing import Final, TypeVar

import anyio
import msgspec

from ._config import RetryPolicy
from ._errors import (
    RunComfyError,
    UnexpectedResponseError,
)
from ._retry import Backpressure, Budget, RetryHook, is_retryable_read, retrying
from ._transport import Response, Transport
from ._wire import (
    CancelResult,
    ModelInfo,
    ModelPage,
    Result,
    Status,
    decode_cancel,
    decode_model_info,
    decode_model_page,
    decode_result,
    decode_status,
)

__all__ = ["DEFAULT_CANCEL_TIMEOUT", "ROUTES", "Routes", "unreadable"]

ROUTES: Final = {
    "submit": "POST /v1/models/{model_id}",
    "status": "GET /v1/requests/{id}/status",
    "result": "GET /v1/requests/{id}/result",
    "cancel": "POST /v1/requests/{id}/cancel",
    "model": "GET /v1/models/{model_id}",
    "models": "GET /v1/models",
}

logger: Final = logging.getLogger("runcomfy_async")

#: Seconds a cancel of an abandoned job may take, retries included.
DEFAULT_CANCEL_TIMEOUT: Final = 5.0

_encoder: Final = msgspec.json.Encoder()
_Answer = TypeVar("_Answer", Status, Result, CancelResult)


def unreadable(
    exc: Exception, *, route: str, response: Response, request_id: str | None
) -> UnexpectedResponseError:
    return UnexpectedResponseError(
        route=route,
        status=response.status,
        request_id=request_id,
        error_message=f"unreadable answer: {exc}",
    )


def _mine(answer: _Answer, *, route: str, response: Response, request_id: str) -> _Answer:
    """``answer`` if it is about ``request_id``; an answer for another job is not ours."""
    if answer.request_id == request_id:
        return answer
    # Never taken as this job's: a keyed run would journal another job's result under
    # its key. Polls count it as a transient failure, like an unreadable answer.
    raise UnexpectedResponseError(
        route=route,
        status=response.status,
        request_id=request_id,
        error_message=f"the answer is for another request ({answer.request_id[:128]!r})",
    )


def _decoded(
    decode: Callable[[bytes], _Answer], response: Response, route: str, request_id: str
) -> _Answer:
    """Decode a job's answer; unreadable, or about another job, is ``UnexpectedResponseError``."""
    try:
        answer = decode(response.body)
    except (msgspec.MsgspecError, ValueError) as exc:
        raise unreadable(exc, route=route, response=response, request_id=request_id) from exc
    return _mine(answer, route=route, response=response, request_id=request_id)


class Routes:
    """The API's calls, over one transport, with the session's retry policy."""

    def __init__(
        self,
        transport: Transport,
        *,
        retry: RetryPolicy,
        backpressure: Backpressure,
        include_cost: bool = False,
        on_retry: RetryHook | None = None,
        budget: Budget | None = None,
    ) -> None:
        self.transport = transport
        self.budget = budget
        self.retry = retry
        self.backpressure = backpressure
        self.include_cost = include_cost
        self.on_retry = on_retry

    async def _read(
        self,
        method: str,
        path: str,
        *,
        route: str,
        request_id: str | None,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        budgeted: bool = False,
    ) -> Response:
        """One idempotent call (a read, or a cancel), retried on anything transient."""
        attempt = partial(
            self.transport.request,
            method,
            path,
            route=route,
            request_id=request_id,
            params=params,
            body=body,
        )
        return await retrying(
            attempt,
            policy=self.retry,
            retryable=is_retryable_read,
            backpressure=self.backpressure,
            route=route,
            request_id=request_id,
            hook=self.on_retry,
            budget=self.budget if budgeted else None,
        )

    async def cancel_abandoned(self, request_id: str) -> CancelResult | None:
        """Cancel a job nobody will collect: shielded, time-boxed, failures only logged.

        Used when the caller's own task is being cancelled, so it must neither be
        interrupted by that cancellation nor raise over it.

        Returns:
            The server's answer, or None when the cancel failed or timed out.
        """
        answer: CancelResult | None = None
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
        return answer

    async def submit_once(self, model_id: str, body: bytes) -> Response:
        """POST a submit once: no retry, no shield (see :mod:`._submit` for both).

        Every 2xx is returned, even with an ``error_code``: the submitter decides.
        """
        return await self.transport.request(
            "POST", f"/v1/models/{model_id}", route=ROUTES["submit"], body=body, accept_2xx=True
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
        if self.backpressure.remaining > 0:
            await self.backpressure.wait()
        response = await self.transport.request(
            "GET", f"/v1/requests/{request_id}/status", route=route, request_id=request_id
        )
        status = self._decode_status(response, route, request_id)
        self._polled(request_id, status)
        return status

    async def poll_result(self, request_id: str, *, include_cost: bool | None = None) -> Result:
        """GET the result once as a poll (it answers the state while unfinished); no retry."""
        route = ROUTES["result"]
        with_cost = self._with_cost(request_id, include_cost)
        if self.backpressure.remaining > 0:
            await self.backpressure.wait()
        response = await self.transport.request(
            "GET",
            f"/v1/requests/{request_id}/result",
            route=route,
            request_id=request_id,
            params={"include_cost": "true"} if with_cost else None,
        )
        result = self._decode_result(response, route, request_id)
        self._polled(request_id, result)
        return result

    # Hooks for a subclass (the spend ledger), plain calls: a poll holds no extra frame.

    def _with_cost(self, request_id: str, include_cost: bool | None) -> bool:
        """Whether a result fetch of the job asks for its cost."""
        return self.include_cost if include_cost is None else include_cost

    def _polled(self, request_id: str, answer: Status | Result) -> None:
        """A status or result poll of the job was answered."""

    def _decode_result(self, response: Response, route: str, request_id: str) -> Result:
        return _decoded(decode_result, response, route, request_id)

    def _decode_status(self, response: Response, route: str, request_id: str) -> Status:
        return _decoded(decode_status, response, route, request_id)

    async def result(self, request_id: str, *, include_cost: bool | None = None) -> Result:
        """GET the result (no waiting), retrying transient failures."""
        route = ROUTES["result"]
        with_cost = self._with_cost(request_id, include_cost)
        response = await self._read(
            "GET",
            f"/v1/requests/{request_id}/result",
            route=route,
            request_id=request_id,
            params={"include_cost": "true"} if with_cost else None,
            budgeted=True,
        )
        return self._decode_result(response, route, request_id)

    async def cancel(self, request_id: str) -> CancelResult:
        """POST a cancel; retried like a read, since cancelling twice is harmless."""
        route = ROUTES["cancel"]
        response = await self._read(
            "POST",
            f"/v1/requests/{request_id}/cancel",
            route=route,
            request_id=request_id,
            body=b"{}",
            budgeted=True,
        )
        return _decoded(partial(decode_cancel, request_id=request_id), response, route, request_id)

    async def list_models(self, params: Mapping[str, str]) -> ModelPage:
        """GET one page of the catalog listing."""
        route = ROUTES["models"]
        response = await self._read(
            "GET", "/v1/models", route=route, request_id=None, params=params
        )
        try:
            return decode_model_page(response.body)
        except msgspec.MsgspecError as exc:
            raise unreadable(exc, route=route, response=response, request_id=None) from exc

    async def model_info(self, model_id: str) -> ModelInfo:
        """GET a model's catalog entry."""
        route = ROUTES["model"]
        response = await self._read("GET", f"/v1/models/{model_id}", route=route, request_id=None)
        try:
            return decode_model_info(response.body)
        except msgspec.MsgspecError as exc:
            raise unreadable(exc, route=route, response=response, request_id=None) from exc
