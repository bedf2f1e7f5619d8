"""The simulator's two thin aiohttp.web apps: the API origin and the storage origin.

Handlers only translate HTTP to calls on the pure :class:`~._state.World` and write the bodies
from :mod:`._payloads`. One middleware per origin logs every request, applies the fault plan
(:mod:`._faults`, :mod:`._inject`) and turns every failure (a refused request, an unknown
route, a wrong method, a bug) into RunComfy's error envelope, never HTML or a traceback.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Final, Literal

import msgspec
from aiohttp import web

from ._assets import content_for
from ._faults import FaultPlan
from ._inject import Dropped, inject
from ._payloads import (
    TerminalStatus,
    cancel_body,
    envelope,
    render_output,
    result_body,
    status_body,
    submit_body,
)
from ._records import RequestLog, RequestRecord
from ._schemas import CATALOG, search_catalog, validate
from ._state import World

__all__ = ["CORE", "SimCore", "build_api_app", "build_storage_app"]

_LOG: Final = logging.getLogger("runcomfy_async.testing")
_ENCODER: Final = msgspec.json.Encoder()
_MAX_BODY: Final = 64 * 1024 * 1024 + 64 * 1024  # whole request <= 64 MiB [seen], plus slack
# Which job a request touched, for its log record. A ContextVar rather than request storage:
# the middleware and the handler share a task, and it works on every aiohttp 3.x.
_TICKET: Final[ContextVar[list[str | None]]] = ContextVar("runcomfy_sim_ticket")
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SimCore:
    """What the handlers share: the world, the fault plan, the logs and the settings."""

    def __init__(
        self,
        world: World,
        plan: FaultPlan,
        *,
        tokens: frozenset[str],
        unknown_models: Literal["accept", "reject"],
        terminal_status: TerminalStatus,
    ) -> None:
        self.world = world
        self.plan = plan
        self.tokens = tokens
        self.unknown_models = unknown_models
        self.terminal_status = terminal_status
        self.api_log = RequestLog()
        self.storage_log = RequestLog()
        self.base_url = ""
        self.storage_url = ""
        self.closing = asyncio.Event()
        self.connections: Callable[[], int] = lambda: 0


CORE: Final = web.AppKey("runcomfy_sim_core", SimCore)
_ORIGIN: Final = web.AppKey("runcomfy_sim_origin", str)


class _ApiError(Exception):
    """An error answer, raised by a handler and written as an envelope."""

    def __init__(
        self, status: int, code: int, message: str, detail: object = None, **headers: str
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.detail = status, code, message, detail
        self.headers = headers


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(body=_ENCODER.encode(body), status=status, content_type="application/json")


def _error(status: int, code: int, message: str, detail: object = None) -> web.Response:
    return _json(envelope(code, message, detail), status)


def _authorize(core: SimCore, request: web.Request) -> str:
    header = request.headers.get("Authorization")
    if header is None:
        raise _ApiError(401, 400004, "Missing Authorization header.", "Send 'Bearer <token>'.")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or token.strip() not in core.tokens:
        raise _ApiError(401, 400004, "Invalid API token.", "The token is unknown or revoked.")
    return token.strip()


def _owned_job(core: SimCore, request: web.Request, token: str) -> str:
    rid = request.match_info["request_id"]
    if not core.world.live(rid):
        raise _ApiError(404, 404001, f"Request {rid} was not found or has expired.")
    if core.world.owner(rid) != token:
        raise _ApiError(403, 403001, f"Request {rid} belongs to another account.")
    return rid


def _note(request_id: str) -> None:
    ticket = _TICKET.get(None)
    if ticket is not None:
        ticket[0] = request_id


def _json_object(raw: bytes) -> dict[str, object]:
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise _ApiError(400, 400000, "The request body is not valid JSON.", str(exc)) from exc
    if not isinstance(body, dict):
        raise _ApiError(400, 400000, "The request body must be a JSON object.")
    return body


async def _submit(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE]
    token = _authorize(core, request)
    model_id = request.match_info["model_id"]
    inputs = _json_object(await request.read())
    if model_id not in CATALOG and core.unknown_models == "reject":
        raise _ApiError(400, 400001, f"Unknown model id: {model_id}.")
    violations = validate(model_id, inputs)
    if violations:
        first = violations[0]
        raise _ApiError(422, 422001, f"Invalid input for {model_id}: {first.message}", violations)
    rid = core.world.create(model_id, token, inputs)
    _note(rid)
    return _json(submit_body(core.base_url, rid))


async def _status(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE]
    rid = _owned_job(core, request, _authorize(core, request))
    snap = core.world.poll_status(rid)
    return _json(status_body(core.base_url, rid, snap, core.terminal_status))


async def _result(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE]
    rid = _owned_job(core, request, _authorize(core, request))
    snap = core.world.peek(rid, result=True)
    info = core.world.info(rid)
    script = info.script
    wants_cost = request.query.get("include_cost", "").lower() in ("true", "1")
    output = None
    if snap.state == "succeeded":
        output = render_output(script.output, script.output_files, core.storage_url, rid)
    body = result_body(
        request_id=rid,
        snap=snap,
        model_id=info.model_id,
        created_at=info.created_at,
        finished_at=info.finished_at,
        output=output,
        error=script.error,
        cost=script.cost if wants_cost else None,
    )
    return _json(body)


async def _cancel(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE]
    rid = _owned_job(core, request, _authorize(core, request))
    snap, outcome = core.world.cancel(rid)
    return _json(cancel_body(rid, snap, outcome, core.terminal_status), 202)


async def _model(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE]
    _authorize(core, request)
    model_id = request.match_info["model_id"]
    entry = CATALOG.get(model_id)
    if entry is None:
        raise _ApiError(400, 400001, f"Unknown model id: {model_id}.")
    return _json(entry)


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise _ApiError(400, 400000, f"{name} must be an integer in [{low}, {high}].", raw)
    return value


async def _models(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE]
    _authorize(core, request)
    limit = _int_query(request, "limit", 20, 1, 100)
    offset = _int_query(request, "offset", 0, 0, 1_000_000)
    page, total = search_catalog(request.query.get("search", ""), limit, offset)
    return _json({"models": page, "total": total})


_RANGE: Final = re.compile(r"bytes=(\d*)-(\d*)")


async def _file(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE]
    rid = request.match_info["request_id"]
    if not core.world.live(rid):
        raise _ApiError(404, 404001, "The file was not found or has expired.")
    data, content_type = content_for(request.match_info["name"])
    headers = {"Accept-Ranges": "bytes"}
    match = _RANGE.fullmatch(request.headers.get("Range", "").strip())
    if match is None or match.groups() == ("", ""):
        return web.Response(body=data, content_type=content_type, headers=headers)
    first, last = match.groups()
    size = len(data)
    start = int(first) if first else max(size - int(last), 0)
    end = min(int(last), size - 1) if first and last else size - 1
    if start >= size or start > end:
        headers["Content-Range"] = f"bytes */{size}"
        raise _ApiError(416, 416000, "Range not satisfiable.", **headers)
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return web.Response(
        body=data[start : end + 1], status=206, content_type=content_type, headers=headers
    )


_API_ROUTE_NAMES: Final[dict[object, str]] = {
    _submit: "submit",
    _status: "status",
    _result: "result",
    _cancel: "cancel",
    _model: "model",
    _models: "models",
}


async def _run(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Call the handler; turn refusals and unexpected bugs into envelopes."""
    try:
        return await handler(request)
    except _ApiError as exc:
        response = _error(exc.status, exc.code, exc.message, exc.detail)
        response.headers.update(exc.headers)
        return response
    except web.HTTPException as exc:
        response = _error(exc.status, exc.status * 1000, exc.reason)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception as exc:  # noqa: BLE001 - the API answers an envelope, never a traceback
        _LOG.exception("simulator handler failed on %s %s", request.method, request.path)
        return _error(500, 500001, "Internal server error.", type(exc).__name__)


def _record(request: web.Request, route: str, body: bytes | None) -> RequestRecord:
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
        fault=None,
        t=time.monotonic(),
        body=body,
    )


@web.middleware
async def _middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    core = request.app[CORE]
    api = request.app[_ORIGIN] == "api"
    route = _API_ROUTE_NAMES.get(request.match_info.handler, "other") if api else "storage"
    log = core.api_log if api else core.storage_log
    early: web.StreamResponse | None = None
    body = None
    if request.method == "POST":
        try:
            body = await request.read()
        except web.HTTPException as exc:  # 413: larger than any RunComfy request
            early = _error(exc.status, exc.status * 1000, exc.reason)
    index = log.begin(_record(request, route, body), core.connections() if api else 0)
    fault = None if early is not None else core.plan.match(route)
    status: int | None = None
    ticket: list[str | None] = [None]
    reset = _TICKET.set(ticket)
    try:
        # Not `early or ...`: a StreamResponse is a mapping, and an empty one is falsy.
        if early is not None:
            response = early
        elif fault is None:
            response = await _run(request, handler)
        else:
            respond = functools.partial(_run, request, handler)
            response = await inject(
                fault, request, respond, closing=core.closing, storage_url=core.storage_url
            )
        status = None if isinstance(response, Dropped) else response.status
        return response
    finally:
        _TICKET.reset(reset)
        log.end(
            index,
            status=status,
            fault=None if fault is None else fault.kind.value,
            request_id=ticket[0],
        )


def _app(core: SimCore, origin: str) -> web.Application:
    app = web.Application(middlewares=[_middleware], client_max_size=_MAX_BODY)
    app[CORE] = core
    app[_ORIGIN] = origin
    return app


def build_api_app(core: SimCore) -> web.Application:
    """Build the API origin: the routes of ``runcomfy-api.md`` under ``/v1``."""
    app = _app(core, "api")
    router = app.router
    router.add_post("/v1/models/{model_id:.+}", _submit)
    router.add_get("/v1/models/{model_id:.+}", _model, allow_head=False)
    router.add_get("/v1/models", _models, allow_head=False)
    router.add_get("/v1/requests/{request_id}/status", _status, allow_head=False)
    router.add_get("/v1/requests/{request_id}/result", _result, allow_head=False)
    router.add_post("/v1/requests/{request_id}/cancel", _cancel)
    return app


def build_storage_app(core: SimCore) -> web.Application:
    """Build the storage origin: ``GET``/``HEAD /files/{request_id}/{name}``, no auth."""
    app = _app(core, "storage")
    app.router.add_get("/files/{request_id}/{name:.+}", _file)
    return app
