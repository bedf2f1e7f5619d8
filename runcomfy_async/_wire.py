"""Typed wire payloads, their reused decoders, and the one place statuses are normalised.

Every answer is decoded straight into a frozen :class:`msgspec.Struct` by a decoder built
once at import time (msgspec's advice: reuse decoders). Decoders are lax (``strict=False``)
so ``"3"`` still reads as a queue position 3, and unknown fields are ignored, because the
API is only partly documented (``runcomfy-api.md``). The API speaks two status
vocabularies (``/status``: ``completed``; ``/result``: ``succeeded``/``failed``); both map
onto :class:`JobState` here and nowhere else.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime
from functools import lru_cache
from typing import Any, Final, TypeVar

import msgspec

from ._output import Output, to_output

__all__ = [
    "CancelOutcome",
    "CancelResult",
    "JobState",
    "ModelInfo",
    "ModelPage",
    "Output",
    "Result",
    "Status",
    "SubmitResponse",
    "cap_depth",
    "check_model_id",
    "check_request_id",
    "decode_cancel",
    "decode_error_envelope",
    "decode_model_info",
    "decode_model_page",
    "decode_result",
    "decode_status",
    "decode_submit",
    "is_valid_request_id",
]


class JobState(enum.StrEnum):
    """A job's state, normalised from either status vocabulary."""

    IN_QUEUE = "in_queue"
    IN_PROGRESS = "in_progress"
    #: ``/status`` says the job is finished; only ``/result`` says how it ended.
    COMPLETED = "completed"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: A word the API documents nowhere; surfaced, and treated as still running.
    UNKNOWN = "unknown"

    @property
    def is_terminal(self) -> bool:
        """Whether the job can no longer change."""
        return self in _TERMINAL


_TERMINAL: Final = frozenset(
    {JobState.COMPLETED, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}
)

# Liberal on purpose: RunComfy's own clients accept these spellings on /status too.
_STATUS_WORDS: Final[dict[str, JobState]] = {
    "in_queue": JobState.IN_QUEUE,
    "queued": JobState.IN_QUEUE,
    "in_progress": JobState.IN_PROGRESS,
    "running": JobState.IN_PROGRESS,
    "completed": JobState.COMPLETED,
    "succeeded": JobState.SUCCEEDED,
    "failed": JobState.FAILED,
    "cancelled": JobState.CANCELLED,
    "canceled": JobState.CANCELLED,
}
# On /result the outcome is final: "completed" there can only mean success.
_RESULT_WORDS: Final[dict[str, JobState]] = {**_STATUS_WORDS, "completed": JobState.SUCCEEDED}

# Segments of letters, digits, dot, dash, underscore; slashes between (not URL-encoded).
_MODEL_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")
_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")


def is_valid_request_id(value: object) -> bool:
    """Tell whether ``value`` looks like a RunComfy request id (safe inside a URL path)."""
    return isinstance(value, str) and _REQUEST_ID.fullmatch(value) is not None


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
    if not isinstance(model_id, str) or not _is_model_id(model_id):
        raise ValueError(f"not a RunComfy model id: {model_id!r}")
    return model_id


@lru_cache(maxsize=1024)  # a session submits to a few models, thousands of times each
def _is_model_id(model_id: str) -> bool:
    return (
        len(model_id) <= 256
        and _MODEL_ID.fullmatch(model_id) is not None
        and not any(part in (".", "..") for part in model_id.split("/"))
    )


class SubmitResponse(msgspec.Struct, frozen=True):
    """The answer to a submit: the id and the URLs the server offers for it."""

    request_id: str
    status_url: str | None = None
    result_url: str | None = None
    cancel_url: str | None = None


class Status(msgspec.Struct, frozen=True):
    """One answer of ``GET /v1/requests/{id}/status``.

    Attributes:
        request_id: The job's id.
        status: The word the server used, verbatim.
        queue_position: 1-based place in the queue; only while queued.
    """

    request_id: str
    status: str
    queue_position: int | None = None
    status_url: str | None = None
    result_url: str | None = None

    @property
    def state(self) -> JobState:
        """The normalised state (``UNKNOWN`` for a word the API does not document)."""
        return _STATUS_WORDS.get(self.status.lower(), JobState.UNKNOWN)


# A hostile or broken answer may nest an error hundreds of levels deep; past this depth its
# text is not worth showing, and recursing further would hit Python's recursion limit.
_MAX_ERROR_DEPTH: Final = 16
#: Levels of a server's error structure kept; deeper parts become :data:`TOO_DEEP`, so an
#: exception holding it pickles, prints and journals (pickle and repr recurse per level).
MAX_STORED_DEPTH: Final = 32
TOO_DEEP: Final = "(nested too deeply; cut)"


def cap_depth(value: Any, limit: int = MAX_STORED_DEPTH) -> Any:
    """``value`` (decoded JSON) with every part deeper than ``limit`` levels replaced."""
    if isinstance(value, dict):
        if limit <= 0:
            return TOO_DEEP
        return {k: cap_depth(v, limit - 1) for k, v in value.items()}
    if isinstance(value, list):
        if limit <= 0:
            return TOO_DEEP
        return [cap_depth(v, limit - 1) for v in value]
    return value


def _error_text(error: object, depth: int = 0) -> str | None:
    if error is None or error == "":
        return None
    if isinstance(error, str):
        return error
    if depth >= _MAX_ERROR_DEPTH:
        return "(nested too deeply to show)"
    if isinstance(error, dict):
        for key in ("error_message", "message", "error", "detail"):
            value = error.get(key)
            if isinstance(value, str) and value:
                return value
    if isinstance(error, list):
        parts = [p for p in (_error_text(e, depth + 1) for e in error) if p]
        if parts:
            return "; ".join(parts)
    try:
        return msgspec.json.encode(error).decode()
    except RecursionError:
        return "(nested too deeply to show)"


def _to_datetime(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _to_cost(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


class Result(msgspec.Struct, frozen=True):
    """One answer of ``GET /v1/requests/{id}/result``, typed.

    Attributes:
        request_id: The job's id.
        status: The normalised state: ``SUCCEEDED``, ``FAILED``, ``CANCELLED``, or still
            ``IN_QUEUE`` / ``IN_PROGRESS`` (the API answers 200 before the job ends).
        raw_status: The word the server used, verbatim.
        output: The output files; only when the job succeeded.
        error: The server's error, in whatever shape it sent; only on failure.
        created_at: When the job was created, if the server said.
        finished_at: When it finished, if the server said.
        cost: The price in USD, when asked for with ``include_cost``.
        model_id: The model, when the server said.
    """

    request_id: str
    status: JobState
    raw_status: str
    output: Output | None = None
    error: Any = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    cost: float | None = None
    model_id: str | None = None

    @property
    def error_text(self) -> str | None:
        """The error as one readable line, whatever its shape."""
        return _error_text(self.error)


class _ResultWire(msgspec.Struct, frozen=True):
    request_id: str
    status: str
    output: Any = None
    error: Any = None
    created_at: Any = None
    finished_at: Any = None
    cost: Any = None
    model_id: str | None = None


class CancelOutcome(enum.StrEnum):
    """The outcomes the API is known to give for a cancel (others are kept verbatim)."""

    CANCELLED = "cancelled"
    CANCELLATION_REQUESTED = "cancellation_requested"
    NOT_CANCELLABLE = "not_cancellable"


class CancelResult(msgspec.Struct, frozen=True):
    """The answer to a cancel.

    Attributes:
        request_id: The job's id.
        outcome: ``cancelled``, ``cancellation_requested``, ``not_cancellable``, or any
            other word the server used, verbatim.
        status: The job's status as the server reported it, if it did.
    """

    request_id: str
    outcome: str
    status: str | None = None

    @property
    def cancelled(self) -> bool:
        """Whether the job is now certainly cancelled: the outcome or the status says so.

        ``{"status": "cancelled", "outcome": "cancellation_requested"}`` is confirmed: the
        status decides (``runcomfy-api.md``, "Cancel answers").
        """
        words = (self.outcome.lower(), (self.status or "").lower())
        return any(_STATUS_WORDS.get(w) is JobState.CANCELLED for w in words)


class _CancelWire(msgspec.Struct, frozen=True):
    request_id: str | None = None
    outcome: str | None = None
    status: str | None = None


class ModelInfo(msgspec.Struct, frozen=True):
    """A model's catalog entry (``GET /v1/models/{model_id}``).

    Attributes:
        model_id: The model's id.
        display_name: Its human name.
        base_price_usd: Its base price, per ``price_unit``.
        price_unit: ``"second"`` or ``"output"``.
        input_schema: The JSON schema of its inputs, with RunComfy's ``validations``
            (empty in a catalog listing, which carries no schemas).
        kind: The catalog's ``kind`` (RunComfy lists ``"model"``).
        categories: Its catalog categories (``"video"``, ``"text-to-image"``…).
        pricing_note: The catalog's free-text note on pricing.
    """

    model_id: str
    display_name: str | None = None
    base_price_usd: float | None = None
    price_unit: str | None = None
    input_schema: dict[str, Any] = msgspec.field(default_factory=dict)
    kind: str | None = None
    categories: tuple[str, ...] = ()
    pricing_note: str | None = None


class ModelPage(msgspec.Struct, frozen=True):
    """One page of ``GET /v1/models``: its entries and the catalog's ``total``."""

    models: tuple[ModelInfo, ...] = ()
    total: int | None = None


class ErrorEnvelope(msgspec.Struct, frozen=True):
    """RunComfy's error body; the message is read from the first field that has one."""

    error_code: int | None = None
    error_message: str | None = None
    message: str | None = None
    error: Any = None
    detail: Any = None

    @property
    def text(self) -> str | None:
        """The server's message, from ``error_message`` → ``message`` → ``error`` → ``detail``."""
        for value in (self.error_message, self.message, self.error, self.detail):
            text = _error_text(value)
            if text:
                return text
        return None


_submit_decoder: Final = msgspec.json.Decoder(SubmitResponse, strict=False)
_status_decoder: Final = msgspec.json.Decoder(Status, strict=False)
_result_decoder: Final = msgspec.json.Decoder(_ResultWire, strict=False)
_cancel_decoder: Final = msgspec.json.Decoder(_CancelWire, strict=False)
_model_decoder: Final = msgspec.json.Decoder(ModelInfo, strict=False)
_page_decoder: Final = msgspec.json.Decoder(ModelPage, strict=False)
_envelope_decoder: Final = msgspec.json.Decoder(ErrorEnvelope, strict=False)
_OUTCOME_IN_TEXT: Final = re.compile(rb'"outcome"\s*:\s*"([A-Za-z_]+)"')
_T = TypeVar("_T")


def _decode(decoder: msgspec.json.Decoder[_T], body: bytes) -> _T:
    try:
        return decoder.decode(body)
    except RecursionError as exc:
        # msgspec raises RecursionError, not DecodeError, for JSON nested past the limit.
        raise msgspec.DecodeError("JSON nested too deeply") from exc


def decode_submit(body: bytes) -> SubmitResponse:
    """Decode a submit answer; raises ``msgspec.DecodeError`` / ``ValueError`` if unusable."""
    response = _decode(_submit_decoder, body)
    if not is_valid_request_id(response.request_id):
        raise ValueError(f"request_id {response.request_id!r} is not a valid id")
    return response


def decode_status(body: bytes) -> Status:
    """Decode a status answer; raises ``msgspec.DecodeError`` if unusable."""
    return _decode(_status_decoder, body)


def decode_result(body: bytes) -> Result:
    """Decode a result answer into a typed :class:`Result` with a normalised status."""
    wire = _decode(_result_decoder, body)
    state = _RESULT_WORDS.get(wire.status.lower(), JobState.UNKNOWN)
    if state is JobState.SUCCEEDED and wire.error not in (None, "") and wire.output is None:
        # "completed" (or a sloppy "succeeded") carrying an error and no output: a failure.
        state = JobState.FAILED
    return Result(
        request_id=wire.request_id,
        status=state,
        raw_status=wire.status,
        output=to_output(wire.output) if state is JobState.SUCCEEDED else None,
        error=cap_depth(wire.error),
        created_at=_to_datetime(wire.created_at),
        finished_at=_to_datetime(wire.finished_at),
        cost=_to_cost(wire.cost),
        model_id=wire.model_id,
    )


def status_of(result: Result) -> Status:
    """A /result poll's answer seen as a status (the state in /status's words)."""
    word = result.raw_status if result.status is JobState.UNKNOWN else result.status.value
    return Status(request_id=result.request_id, status=word)


def decode_cancel(body: bytes, request_id: str) -> CancelResult:
    """Decode a cancel answer, defensively: the documented example is not valid JSON."""
    try:
        wire = _decode(_cancel_decoder, body)
    except msgspec.MsgspecError:
        match = _OUTCOME_IN_TEXT.search(body)
        if match is None:
            raise
        return CancelResult(request_id=request_id, outcome=match.group(1).decode())
    outcome = wire.outcome or wire.status
    if outcome is None:
        raise ValueError("cancel answer names no outcome")
    return CancelResult(
        request_id=wire.request_id or request_id, outcome=outcome, status=wire.status
    )


def decode_model_info(body: bytes) -> ModelInfo:
    """Decode a catalog entry."""
    return _decode(_model_decoder, body)


def decode_model_page(body: bytes) -> ModelPage:
    """Decode one page of the catalog listing."""
    return _decode(_page_decoder, body)


def decode_error_envelope(body: bytes) -> ErrorEnvelope | None:
    """Decode an error body, or None when it is not a JSON object; nesting is capped."""
    try:
        envelope = _decode(_envelope_decoder, body)
    except msgspec.MsgspecError:
        return None
    if isinstance(envelope.error, dict | list) or isinstance(envelope.detail, dict | list):
        envelope = msgspec.structs.replace(
            envelope, error=cap_depth(envelope.error), detail=cap_depth(envelope.detail)
        )
    return envelope
