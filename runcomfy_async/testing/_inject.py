"""Apply a fired :class:`~._faults.Fault` to one aiohttp request.

The aiohttp side of the fault plan (the plan itself, in :mod:`._faults`, is pure). Faults that
refuse (the error answers, ``echo_token`` and the redirects) do no work; ``slow``,
``reset_after``, ``malformed_json``, ``unknown_status``, ``truncate``, ``drip`` and the
reshaping kinds of :mod:`._hostile` let the real handler run first, so e.g. a submit reset after
the work *has* created its job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

import msgspec
from aiohttp import web

from ._faults import Fault, FaultKind
from ._payloads import envelope

__all__ = ["Dropped", "inject"]

_ENCODER: Final = msgspec.json.Encoder()
_REFUSALS: Final[dict[FaultKind, tuple[int, int, str]]] = {
    FaultKind.RATE_LIMIT: (429, 429001, "Too many requests; slow down."),
    FaultKind.SERVER_ERROR: (503, 503001, "The service is temporarily unavailable."),
    FaultKind.REQUEST_TIMEOUT: (408, 408001, "The request timed out."),
    FaultKind.INSUFFICIENT_BALANCE: (402, 400002, "Insufficient balance."),
    FaultKind.ERROR_IN_200: (200, 500001, "Internal error."),
}


_PRIVATE_TARGETS: Final = {
    "metadata": "http://169.254.169.254/latest/meta-data",
    "private_ip": "http://10.0.0.1/x",
}
_REDIRECTS: Final = frozenset(
    {FaultKind.REDIRECT, FaultKind.REDIRECT_PRIVATE, FaultKind.REDIRECT_HOP, FaultKind.ECHO_TOKEN}
)
_DRIP_TICK: Final = 0.05  # seconds between drip writes
_DEFAULT_DRIP_RATE: Final = 1000.0
_DEFAULT_DRIP_BOUND: Final = 10.0
Reshape = Callable[[Fault, web.StreamResponse], web.StreamResponse]


class Dropped(web.Response):
    """Marks a request whose connection was dropped: nothing reaches the client."""


def _drop(request: web.Request) -> Dropped:
    transport = request.transport
    if transport is not None:
        transport.abort()
    return Dropped()


def _body_of(response: web.StreamResponse) -> bytes:
    raw = response.body if isinstance(response, web.Response) else None
    return raw if isinstance(raw, bytes) else b""


def _json(body: object, status: int) -> web.Response:
    return web.Response(body=_ENCODER.encode(body), status=status, content_type="application/json")


def _redirect(request: web.Request, fault: Fault, storage_url: str) -> web.Response:
    """Answer a redirect fault, or ``echo_token`` (an envelope quoting the Authorization)."""
    kind = fault.kind
    if kind is FaultKind.ECHO_TOKEN:
        header = request.headers.get("Authorization", "")
        message = f"Authorization '{header}' was rejected for {request.path}."
        body = envelope(fault.error_code or 400004, message, {"authorization": header})
        return _json(body, fault.status or 401)
    status = fault.status or (302 if request.method in ("GET", "HEAD") else 307)
    if kind is FaultKind.REDIRECT_PRIVATE:
        location = fault.location or _PRIVATE_TARGETS[fault.variant or "metadata"]
    elif kind is FaultKind.REDIRECT_HOP:
        location = f"{storage_url}/moved{request.path_qs}"
    else:
        location = fault.location or f"{storage_url}{request.path_qs}"
    return web.Response(status=status, headers={"Location": location})


def _refuse(request: web.Request, fault: Fault, storage_url: str) -> web.Response:
    """Answer a fault that does no work: an error envelope or a redirect."""
    if fault.kind in _REDIRECTS:
        return _redirect(request, fault, storage_url)
    status, code, message = _REFUSALS[fault.kind]
    if fault.kind is FaultKind.SERVER_ERROR and fault.status is not None:
        status, code = fault.status, fault.status * 1000 + 1
    body = envelope(fault.error_code or code, message, f"Injected fault: {fault.kind}")
    response = _json(body, status)
    if fault.kind is FaultKind.RATE_LIMIT and fault.retry_after is not None:
        wait = fault.retry_after
        if not isinstance(wait, str):
            wait = str(int(wait)) if float(wait).is_integer() else str(wait)
        response.headers["Retry-After"] = wait
    return response


def _rewrite(response: web.StreamResponse, kind: FaultKind) -> web.Response:
    """Spoil a finished answer's body: cut the JSON in half, or swap in an unknown status."""
    raw = _body_of(response)
    if kind is FaultKind.MALFORMED_JSON:
        spoiled = raw[: len(raw) // 2] or b"{"
    else:
        body = msgspec.json.decode(raw) if raw else {}
        if isinstance(body, dict) and "status" in body:
            body["status"] = "paused"
        spoiled = _ENCODER.encode(body)
    return web.Response(body=spoiled, status=response.status, content_type="application/json")


async def _truncate(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    raw = _body_of(response)
    stream = web.StreamResponse(status=response.status, headers=response.headers)
    stream.content_length = len(raw)
    await stream.prepare(request)
    await stream.write(raw[: len(raw) // 2])
    if request.transport is not None:
        request.transport.close()  # close() flushes the half body first, unlike abort()
    return stream


async def _drip(
    request: web.Request, response: web.StreamResponse, fault: Fault, closing: asyncio.Event
) -> web.StreamResponse:
    """Send the body a few bytes at a time; drop the connection once the bound is reached."""
    raw = _body_of(response)
    if request.method == "HEAD" or not raw:
        return response
    rate = fault.rate or _DEFAULT_DRIP_RATE
    chunk = max(1, round(rate * _DRIP_TICK))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (_DEFAULT_DRIP_BOUND if fault.delay is None else fault.delay)
    stream = web.StreamResponse(status=response.status, headers=response.headers)
    stream.content_length = len(raw)
    await stream.prepare(request)
    for start in range(0, len(raw), chunk):
        if closing.is_set() or loop.time() >= deadline:
            if request.transport is not None:
                request.transport.abort()  # headers are out: cut the body short, like a stall
            return stream
        await stream.write(raw[start : start + chunk])
        if start + chunk < len(raw):
            await asyncio.sleep(min(chunk / rate, max(deadline - loop.time(), 0.0)))
    return stream


async def inject(
    fault: Fault,
    request: web.Request,
    respond: Callable[[], Awaitable[web.StreamResponse]],
    *,
    closing: asyncio.Event,
    storage_url: str,
    reshape: Reshape,
) -> web.StreamResponse:
    """Answer ``request`` with ``fault`` applied.

    Args:
        fault: The fault that fired.
        request: The request being answered.
        respond: Produces the normal answer (never raises: errors are envelopes already).
        closing: Set when the simulator closes; releases hung requests.
        storage_url: The storage origin, the default redirect target.
        reshape: Rewrites a finished answer for the kinds of :mod:`._hostile`.

    Returns:
        The answer to send; a :class:`Dropped` one when the connection was dropped.
    """
    kind = fault.kind
    if kind in _REFUSALS or kind in _REDIRECTS:
        return _refuse(request, fault, storage_url)
    if kind is FaultKind.RESET_BEFORE:
        return _drop(request)
    if kind is FaultKind.HANG:
        await closing.wait()
        return _drop(request)
    if kind is FaultKind.SLOW:
        await asyncio.sleep(1.0 if fault.delay is None else fault.delay)
    response = await respond()
    if kind is FaultKind.RESET_AFTER:
        return _drop(request)
    if kind in (FaultKind.MALFORMED_JSON, FaultKind.UNKNOWN_STATUS):
        return _rewrite(response, kind)
    if kind is FaultKind.TRUNCATE:
        return await _truncate(request, response)
    if kind is FaultKind.DRIP:
        return await _drip(request, response, fault, closing)
    return reshape(fault, response)
