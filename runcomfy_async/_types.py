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
from typing import Any, Final, TypeVar

import msgspec

__all__ = [
    "CancelOutcome",
    "CancelResult",
    "JobState",
    "ModelInfo",
    "Output",
    "Result",
    "Status",
    "SubmitResponse",
    "decode_cancel",
    "decode_error_envelope",
    "decode_model_info",
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

_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")


def is_valid_request_id(value: object) -> bool:
    """Tell whether ``value`` looks like a RunComfy request id (safe inside a URL path)."""
    return isinstance(value, str) and _REQUEST_ID.fullmatch(value) is not None


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


_VIDEO_EXT: Final = (".mp4", ".webm", ".mov", ".mkv", ".gif", ".avi")
_IMAGE_EXT: Final = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class Output(msgspec.Struct, frozen=True):
    """A job's output files, whatever shape the server sent them in.

    The Wan models answer ``{"image", "video", "images", "videos"}`` (all optional); the
    API prose also allows a bare URL or a list of URLs, which are sorted into the same
    fields by file extension (anything unrecognised lands in ``other``).
    """

    image: str | None = None
    video: str | None = None
    images: tuple[str, ...] = ()
    videos: tuple[str, ...] = ()
    other: tuple[str, ...] = ()

    @property
    def urls(self) -> tuple[str, ...]:
        """Every output URL once, in order: image, video, images, videos, other."""
        seen: dict[str, None] = {}
        for url in (self.image, self.video, *self.images, *self.videos, *self.other):
            if url:
                seen.setdefault(url, None)
        return tuple(seen)


class _OutputObject(msgspec.Struct, frozen=True):
    image: str | None = None
    video: str | None = None
    images: list[str] | None = None
    videos: list[str] | None = None


def _output_from_urls(urls: list[str]) -> Output:
    images, videos, other = [], [], []
    for url in urls:
        path = url.split("?", 1)[0].lower()
        if path.endswith(_VIDEO_EXT):
            videos.append(url)
        elif path.endswith(_IMAGE_EXT):
            images.append(url)
        else:
            other.append(url)
    return Output(
        image=images[0] if images else None,
        video=videos[0] if videos else None,
        images=tuple(images),
        videos=tuple(videos),
        other=tuple(other),
    )


def _to_output(raw: object) -> Output | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return _output_from_urls([raw])
    if isinstance(raw, list):
        return _output_from_urls([u for u in raw if isinstance(u, str)])
    if isinstance(raw, dict):
        try:
            obj = msgspec.convert(raw, _OutputObject, strict=False)
        except msgspec.ValidationError:
            # An object with odd value types: keep whatever strings it holds.
            return _output_from_urls([v for v in raw.values() if isinstance(v, str)])
        return Output(
            image=obj.image,
            video=obj.video,
            images=tuple(obj.images or ()),
            videos=tuple(obj.videos or ()),
        )
    return None


# A hostile or broken answer may nest an error hundreds of levels deep; past this depth its
# text is not worth showing, and recursing further would hit Python's recursion limit.
_MAX_ERROR_DEPTH: Final = 16


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
        """Whether the job is now certainly cancelled."""
        return self.outcome == CancelOutcome.CANCELLED


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
        input_schema: The JSON schema of its inputs, with RunComfy's ``validations``.
    """

    model_id: str
    display_name: str | None = None
    base_price_usd: float | None = None
    price_unit: str | None = None
    input_schema: dict[str, Any] = msgspec.field(default_factory=dict)


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
        output=_to_output(wire.output) if state is JobState.SUCCEEDED else None,
        error=wire.error,
        created_at=_to_datetime(wire.created_at),
        finished_at=_to_datetime(wire.finished_at),
        cost=_to_cost(wire.cost),
        model_id=wire.model_id,
    )


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


def decode_error_envelope(body: bytes) -> ErrorEnvelope | None:
    """Decode an error body, or None when it is not a JSON object."""
    try:
        return _decode(_envelope_decoder, body)
    except msgspec.MsgspecError:
        return None
