"""The simulator's route handlers: each turns one HTTP request into calls on the world.

Thin on purpose: state lives in :class:`~._state.World`, entries in :class:`~._catalog.Catalog`,
bodies in :mod:`._payloads`. A refusal raises :class:`~._core.ApiError`; the middleware in
:mod:`._server` writes it as RunComfy's envelope.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from typing import Final

import msgspec
from aiohttp import web

from ._assets import content_for
from ._core import CORE, ApiError, SimCore, json_response
from ._payloads import cancel_body, result_body, status_body, submit_body

__all__ = [
    "TICKET",
    "authorize",
    "cancel",
    "categories",
    "file",
    "model",
    "models",
    "result",
    "status",
    "submit",
]

# Which job a request touched, for its log record. A ContextVar rather than request storage:
# the middleware and the handler share a task, and it works on every aiohttp 3.x.
TICKET: Final[ContextVar[list[str | None]]] = ContextVar("runcomfy_sim_ticket")
_RANGE: Final = re.compile(r"bytes=(\d*)-(\d*)")


def authorize(core: SimCore, request: web.Request) -> str:
    """Return the request's valid Bearer token, or refuse with 401 / 400004."""
    header = request.headers.get("Authorization")
    if header is None:
        raise ApiError(401, 400004, "Missing Authorization header.", "Send 'Bearer <token>'.")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or token.strip() not in core.tokens:
        raise ApiError(401, 400004, "Invalid API token.", "The token is unknown or revoked.")
    return token.strip()


def _owned_job(core: SimCore, request: web.Request, token: str) -> str:
    rid = request.match_info["request_id"]
    if not core.world.live(rid):
        raise ApiError(404, 404001, f"Request {rid} was not found or has expired.")
    if core.world.owner(rid) != token:
        raise ApiError(403, 403001, f"Request {rid} belongs to another account.")
    return rid


def _note(request_id: str) -> None:
    ticket = TICKET.get(None)
    if ticket is not None:
        ticket[0] = request_id


def _json_object(raw: bytes) -> dict[str, object]:
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise ApiError(400, 400000, "The request body is not valid JSON.", str(exc)) from exc
    if not isinstance(body, dict):
        raise ApiError(400, 400000, "The request body must be a JSON object.")
    return body


async def submit(request: web.Request) -> web.StreamResponse:
    """``POST /v1/models/{model_id}``: validate, create the job, answer its URLs."""
    core = request.app[CORE]
    token = authorize(core, request)
    model_id = request.match_info["model_id"]
    inputs = _json_object(await request.read())
    if model_id not in core.catalog and core.unknown_models == "reject":
        raise ApiError(400, 400001, f"Unknown model id: {model_id}.")
    violations = core.catalog.validate(model_id, inputs)
    if violations:
        first = violations[0]
        raise ApiError(422, 422001, f"Invalid input for {model_id}: {first.message}", violations)
    rid = core.world.create(model_id, token, inputs)
    _note(rid)
    return json_response(submit_body(core.base_url, rid))


async def status(request: web.Request) -> web.StreamResponse:
    """``GET /v1/requests/{request_id}/status``: answer, then (scripted clock) step on."""
    core = request.app[CORE]
    rid = _owned_job(core, request, authorize(core, request))
    snap = core.world.poll_status(rid)
    return json_response(status_body(core.base_url, rid, snap, core.terminal_status))


async def result(request: web.Request) -> web.StreamResponse:
    """``GET /v1/requests/{request_id}/result``: 200 with the current status, output once done."""
    core = request.app[CORE]
    rid = _owned_job(core, request, authorize(core, request))
    snap = core.world.peek(rid, result=True)
    info = core.world.info(rid)
    wants_cost = request.query.get("include_cost", "").lower() in ("true", "1")
    body = result_body(
        request_id=rid,
        snap=snap,
        model_id=info.model_id,
        created_at=info.created_at,
        finished_at=info.finished_at,
        output=core.output_of(rid) if snap.state == "succeeded" else None,
        error=info.script.error,
        cost=core.cost_of(rid) if wants_cost else None,
    )
    body["status"] = core.result_words.get(body["status"], body["status"])
    return json_response(body)


async def cancel(request: web.Request) -> web.StreamResponse:
    """``POST /v1/requests/{request_id}/cancel``: RunComfy's cancel rules, 202."""
    core = request.app[CORE]
    rid = _owned_job(core, request, authorize(core, request))
    snap, outcome = core.world.cancel(rid)
    return json_response(cancel_body(rid, snap, outcome, core.terminal_status), 202)


async def model(request: web.Request) -> web.StreamResponse:
    """``GET /v1/models/{model_id}``: the catalog entry, or 400 / 400001."""
    core = request.app[CORE]
    authorize(core, request)
    model_id = request.match_info["model_id"]
    spec = core.catalog.get(model_id)
    if spec is None:
        raise ApiError(400, 400001, f"Unknown model id: {model_id}.")
    return json_response(spec.entry())


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ApiError(400, 400000, f"{name} must be an integer in [{low}, {high}].", raw)
    return value


async def models(request: web.Request) -> web.StreamResponse:
    """``GET /v1/models?search=&category=&kind=&include_schema=&limit=&offset=``, paged."""
    core = request.app[CORE]
    authorize(core, request)
    query = request.query
    page, total = core.catalog.search(
        search=query.get("search", ""),
        category=query.get("category", ""),
        kind=query.get("kind", ""),
        include_schema=query.get("include_schema", "").lower() in ("true", "1"),
        limit=_int_query(request, "limit", 20, 1, 100),
        offset=_int_query(request, "offset", 0, 0, 1_000_000),
    )
    return json_response({"models": page, "total": total})


async def categories(request: web.Request) -> web.StreamResponse:
    """``GET /v1/models/categories``: every catalog category."""
    core = request.app[CORE]
    authorize(core, request)
    return json_response({"categories": core.catalog.categories()})


async def file(request: web.Request) -> web.StreamResponse:
    """Storage ``GET``/``HEAD /files/{request_id}/{name}``: the bytes, whole or by range."""
    core = request.app[CORE]
    rid = request.match_info["request_id"]
    if not core.world.live(rid):
        raise ApiError(404, 404001, "The file was not found or has expired.")
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
        raise ApiError(416, 416000, "Range not satisfiable.", **headers)
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return web.Response(
        body=data[start : end + 1], status=206, content_type=content_type, headers=headers
    )
