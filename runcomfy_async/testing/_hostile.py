"""Hostile and odd answers: the body-shaping fault kinds, applied to a finished answer.

``wrong_id``, ``flap``, ``deep_error``, ``cancel_shape`` and ``success_with_error_code`` let the
real handler do its work first (a submit creates and bills its job), then rewrite the 2xx JSON
object it answered. ``flap`` only *applies* to a finished job (see :func:`applies`), so polls
of unfinished jobs spend none of its budget.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

import msgspec
from aiohttp import web

from ._core import SimCore
from ._faults import Fault, FaultKind

__all__ = ["RESHAPED", "applies", "reshape"]

RESHAPED: Final = frozenset(
    {
        FaultKind.WRONG_ID,
        FaultKind.FLAP,
        FaultKind.DEEP_ERROR,
        FaultKind.CANCEL_SHAPE,
        FaultKind.SUCCESS_WITH_ERROR_CODE,
    }
)
"""The kinds :func:`reshape` handles."""

_ENCODER: Final = msgspec.json.Encoder()
_FINISHED: Final = frozenset({"succeeded", "failed", "cancelled"})
_MISSING: Final = object()
_DEEP: Final = "\x00runcomfy-sim-deep-error\x00"
_DEEP_LEAF: Final = b'"The generation failed."'
_DEFAULT_DEPTH: Final = 500


def applies(core: SimCore, request: web.Request, fault: Fault) -> bool:
    """Tell whether ``fault``, about to fire on ``request``, has anything to do there."""
    if fault.kind is not FaultKind.FLAP:
        return True
    rid = request.match_info.get("request_id")
    if rid is None or not core.world.live(rid) or core.world.peek(rid).state not in _FINISHED:
        return False
    if fault.variant == "stuck":
        return True
    key = (id(fault), rid)
    seen = core.flaps.get(key, 0)
    core.flaps[key] = seen + 1
    return seen % 2 == 0


def _swap(value: object, old: str, new: str) -> Any:
    """Replace one request id by another everywhere in a JSON value (ids are JSON-safe)."""
    text = _ENCODER.encode(value).decode()
    return msgspec.json.decode(text.replace(old, new) if old else text)


def _wrong_id(core: SimCore, body: dict[str, Any]) -> bytes:
    rid = str(body.get("request_id", ""))
    other = core.world.other_job(rid) or str(uuid.uuid4())
    output = body.pop("output", _MISSING)
    swapped: dict[str, Any] = _swap(body, rid, other)
    if output is not _MISSING:
        known = core.world.exists(other)
        swapped["output"] = core.output_of(other) if known else _swap(output, rid, other)
    return _ENCODER.encode(swapped)


def _deep_error(body: dict[str, Any], depth: int) -> bytes:
    body.pop("output", None)
    body["status"] = "failed"
    body["error"] = _DEEP
    raw = _ENCODER.encode(body)
    nested = b'{"error":' * depth + _DEEP_LEAF + b"}" * depth
    return raw.replace(_ENCODER.encode(_DEEP), nested)


def _cancel_shape(body: dict[str, Any], variant: str | None) -> bytes:
    if variant == "no_outcome":
        body.pop("outcome", None)
    elif variant == "invalid_json":
        return _ENCODER.encode(body)[:-1] + b",}"  # a trailing comma, as in the doc's example
    else:
        body["status"], body["outcome"] = "cancelled", "cancellation_requested"
    return _ENCODER.encode(body)


def _reshape_body(core: SimCore, fault: Fault, body: dict[str, Any]) -> bytes:
    kind = fault.kind
    if kind is FaultKind.WRONG_ID:
        return _wrong_id(core, body)
    if kind is FaultKind.FLAP:
        for key in ("output", "error", "finished_at", "cost"):
            body.pop(key, None)
        body["status"], body["queue_position"] = "in_queue", 1
        return _ENCODER.encode(body)
    if kind is FaultKind.DEEP_ERROR:
        return _deep_error(body, fault.depth or _DEFAULT_DEPTH)
    if kind is FaultKind.CANCEL_SHAPE:
        return _cancel_shape(body, fault.variant)
    body["error_code"] = fault.error_code or 500001
    body["error_message"] = "Internal error while answering; the request was accepted."
    return _ENCODER.encode(body)


def reshape(core: SimCore, fault: Fault, response: web.StreamResponse) -> web.StreamResponse:
    """Rewrite a 2xx JSON-object answer as ``fault`` says; anything else passes untouched."""
    raw = response.body if isinstance(response, web.Response) else None
    if fault.kind not in RESHAPED or not isinstance(raw, bytes) or not raw:
        return response
    if not 200 <= response.status < 300:
        return response
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return response
    if not isinstance(body, dict):
        return response
    spoiled = _reshape_body(core, fault, body)
    return web.Response(body=spoiled, status=response.status, content_type="application/json")
