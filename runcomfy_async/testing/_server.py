"""The simulator's two thin aiohttp.web apps: the API origin and the storage origin.

Handlers (:mod:`._handlers`) only translate HTTP to calls on the pure :class:`~._state.World`.
One middleware per origin logs every request, applies the rate limit (:mod:`._ratelimit`) and
the fault plan (:mod:`._faults`, :mod:`._inject`, :mod:`._hostile`) and turns every failure (a
refused request, an unknown route, a wrong method, a bug) into RunComfy's error envelope, never
HTML or a traceback.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from . import _handlers as h
from ._core import CORE, ORIGIN, ApiError, SimCore, error_response
from ._faults import Fault
from ._hostile import applies, reshape
from ._inject import Dropped, inject
from ._records import RequestRecord

__all__ = ["CORE", "SimCore", "build_api_app", "build_storage_app"]

_LOG: Final = logging.getLogger("runcomfy_async.testing")
_MAX_BODY: Final = 64 * 1024 * 1024 + 64 * 1024  # whole request <= 64 MiB [seen], plus slack
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_API_ROUTE_NAMES: Final[dict[object, str]] = {
    h.submit: "submit",
    h.status: "status",
    h.result: "result",
    h.cancel: "cancel",
    h.model: "model",
    h.models: "models",
    h.categories: "categories",
}


async def _run(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Call the handler; turn refusals and unexpected bugs into envelopes."""
    try:
        return await handler(request)
    except ApiError as exc:
        response = error_response(exc.status, exc.code, exc.message, exc.detail)
        response.headers.update(exc.headers)
        return response
    except web.HTTPException as exc:
        response = error_response(exc.status, exc.status * 1000, exc.reason)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception as exc:  # noqa: BLE001 - the API answers an envelope, never a traceback
        _LOG.exception("simulator handler failed on %s %s", request.method, request.path)
        return error_response(500, 500001, "Internal server error.", type(exc).__name__)


def _record(
    request: web.Request, route: str, body: bytes | None, fault: str | None
) -> RequestRecord:
    info = request.match_info
    return RequestRecord(
        method=request.method,
        route=route,
        path=request.path,
        query=dict(request.query),
        request_id=info.get("request_id"),
        model_id=info.get("model_id"),
        authorization=request.headers.get("Authorization"),
        headers=request.headers,
        status=None,
        fault=fault,
        t=time.monotonic(),
        body=body,
    )


def _rate_limited(core: SimCore, route: str) -> web.Response | None:
    """Take a token for ``route``; a 429 envelope when the bucket is empty."""
    bucket = core.bucket
    if bucket is None or not bucket.applies(route):
        return None
    wait = bucket.take()
    if wait is None:
        return None
    core.rate_limited += 1
    response = error_response(429, 429001, "Rate limit exceeded; slow down.", "rate_limit mode")
    header = bucket.retry_after(wait)
    if header is not None:
        response.headers["Retry-After"] = header
    return response


async def _inject(
    core: SimCore, request: web.Request, handler: _Handler, fault: Fault
) -> web.StreamResponse:
    return await inject(
        fault,
        request,
        functools.partial(_run, request, handler),
        closing=core.closing,
        storage_url=core.storage_url,
        reshape=functools.partial(reshape, core),
    )


@web.middleware
async def _middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    core = request.app[CORE]
    api = request.app[ORIGIN] == "api"
    route = _API_ROUTE_NAMES.get(request.match_info.handler, "other") if api else "storage"
    log = core.api_log if api else core.storage_log
    early: web.StreamResponse | None = None
    body = None
    if request.method == "POST":
        try:
            body = await request.read()
        except web.HTTPException as exc:  # 413: larger than any RunComfy request
            early = error_response(exc.status, exc.status * 1000, exc.reason)
    # Decided before any await, so a request cancelled while hanging is still logged right.
    limited = _rate_limited(core, route) if api and early is None else None
    fault = None
    if early is None and limited is None:
        fault = core.plan.match(route, functools.partial(applies, core, request))
    kind = None if fault is None else fault.kind.value
    index = log.begin(_record(request, route, body, kind), core.connections() if api else 0)
    status: int | None = None
    ticket: list[str | None] = [None]
    reset = h.TICKET.set(ticket)
    try:
        # Not `early or ...`: a StreamResponse is a mapping, and an empty one is falsy.
        if early is not None:
            response = early
        elif limited is not None:
            response = limited
        elif fault is None:
            response = await _run(request, handler)
        else:
            response = await _inject(core, request, handler, fault)
        status = None if isinstance(response, Dropped) else response.status
        return response
    finally:
        h.TICKET.reset(reset)
        log.end(
            index,
            status=status,
            fault=kind,
            request_id=ticket[0],
            rate_limited=limited is not None,
        )


def _app(core: SimCore, origin: str) -> web.Application:
    app = web.Application(middlewares=[_middleware], client_max_size=_MAX_BODY)
    app[CORE] = core
    app[ORIGIN] = origin
    return app


def build_api_app(core: SimCore) -> web.Application:
    """Build the API origin: the routes of ``runcomfy-api.md`` under ``/v1``."""
    app = _app(core, "api")
    router = app.router
    # Before the model route: model ids span segments, and this path is no model.
    router.add_get("/v1/models/categories", h.categories, allow_head=False)
    router.add_post("/v1/models/{model_id:.+}", h.submit)
    router.add_get("/v1/models/{model_id:.+}", h.model, allow_head=False)
    router.add_get("/v1/models", h.models, allow_head=False)
    router.add_get("/v1/requests/{request_id}/status", h.status, allow_head=False)
    router.add_get("/v1/requests/{request_id}/result", h.result, allow_head=False)
    router.add_post("/v1/requests/{request_id}/cancel", h.cancel)
    return app


def build_storage_app(core: SimCore) -> web.Application:
    """Build the storage origin: ``GET``/``HEAD /files/{request_id}/{name}``, no auth.

    ``/moved/files/...`` serves the same files: the target of ``redirect_hop``.
    """
    app = _app(core, "storage")
    app.router.add_get("/files/{request_id}/{name:.+}", h.file)
    app.router.add_get("/moved/files/{request_id}/{name:.+}", h.file)
    return app
