"""The JSON bodies the simulator answers, written by hand from ``runcomfy-api.md``.

Plain dicts on purpose: nothing here is shared with the client's wire structs, so a misspelled
field cannot hide on both sides. Field names and vocabularies follow the doc exactly:

* ``/status`` says ``in_queue``, ``in_progress``, ``completed``, ``cancelled`` (a failure shows
  ``completed``; the result decides) and carries ``queue_position`` only while queued.
* ``/result`` says ``succeeded``, ``failed``, ``cancelled``, ``in_queue``, ``in_progress``.
* Errors are ``{"error_code", "error_message", "detail"}``.
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal, TypeAlias

from ._state import JobState, Snapshot

__all__ = [
    "TerminalStatus",
    "cancel_body",
    "envelope",
    "render_output",
    "result_body",
    "status_body",
    "status_word",
    "submit_body",
]

TerminalStatus: TypeAlias = Literal["completed", "outcome"]
_IMAGE_SUFFIXES: Final = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
_AUDIO_SUFFIXES: Final = (".wav", ".mp3", ".flac", ".ogg", ".m4a")
_ALL_URLS: Final = "{urls}"
_URL_AT: Final = re.compile(r"\{url(?::(\d+))?\}")
_FINISHED: Final = frozenset({"succeeded", "failed", "cancelled"})


def envelope(code: int, message: str, detail: object = None) -> dict[str, Any]:
    """Build RunComfy's error body."""
    return {"error_code": code, "error_message": message, "detail": detail}


def _urls(base: str, request_id: str) -> tuple[str, str, str]:
    root = f"{base}/v1/requests/{request_id}"
    return f"{root}/status", f"{root}/result", f"{root}/cancel"


def submit_body(base: str, request_id: str) -> dict[str, Any]:
    """Answer a submit: the id and three absolute URLs, no status (as documented)."""
    status_url, result_url, cancel_url = _urls(base, request_id)
    return {
        "request_id": request_id,
        "status_url": status_url,
        "result_url": result_url,
        "cancel_url": cancel_url,
    }


def status_word(state: JobState, terminal: TerminalStatus) -> str:
    """Map a job state to the ``/status`` vocabulary."""
    if state in ("succeeded", "failed") and terminal == "completed":
        return "completed"
    return state


def status_body(
    base: str, request_id: str, snap: Snapshot, terminal: TerminalStatus
) -> dict[str, Any]:
    """Answer ``GET /status``."""
    status_url, result_url, _ = _urls(base, request_id)
    word = snap.raw_status if snap.raw_status is not None else status_word(snap.state, terminal)
    body: dict[str, Any] = {"request_id": request_id, "status": word}
    if snap.queue_position is not None and word == "in_queue":
        body["queue_position"] = snap.queue_position
    body["status_url"] = status_url
    body["result_url"] = result_url
    return body


def render_output(output: object, files: tuple[str, ...], storage: str, request_id: str) -> object:
    """Build a succeeded job's ``output`` from its script.

    Args:
        output: ``"object"``, ``"url"``, ``"list"`` or an explicit JSON template.
        files: The job's output file names.
        storage: The storage origin's base URL.
        request_id: The job's id.

    Returns:
        ``{"video", "videos", "image", "images"}`` (keys only for the kinds present), a bare URL,
        a list of URLs, or the template with its placeholders filled in: ``"{url}"`` (the first
        file's URL), ``"{url:N}"`` (the N-th, from 0), ``"{urls}"`` (a list element or whole
        value standing for every file's URL), ``"{storage}"`` and ``"{request_id}"``.
    """
    urls = [f"{storage}/files/{request_id}/{name}" for name in files]
    if output == "url":
        return urls[0] if urls else ""
    if output == "list":
        return urls
    if output == "object":
        body: dict[str, Any] = {}
        images = [u for u in urls if u.lower().endswith(_IMAGE_SUFFIXES)]
        others = [u for u in urls if not u.lower().endswith(_IMAGE_SUFFIXES)]
        audio = [u for u in others if u.lower().endswith(_AUDIO_SUFFIXES)]
        videos = [u for u in others if u not in audio]
        for one, many, found in (("image", "images", images), ("audio", "audios", audio)):
            if found:
                body[one], body[many] = found[0], found
        if videos:
            body["video"], body["videos"] = videos[0], videos
        return body
    if output == _ALL_URLS:
        return urls
    return _substitute(output, _Fill(storage, request_id, urls))


class _Fill:
    __slots__ = ("request_id", "storage", "urls")

    def __init__(self, storage: str, request_id: str, urls: list[str]) -> None:
        self.storage, self.request_id, self.urls = storage, request_id, urls

    def text(self, value: str) -> str:
        if "{url" in value:
            value = _URL_AT.sub(self._url, value)
        return value.replace("{storage}", self.storage).replace("{request_id}", self.request_id)

    def _url(self, match: re.Match[str]) -> str:
        index = int(match.group(1) or 0)
        return self.urls[index] if index < len(self.urls) else ""


def _substitute(value: object, fill: _Fill) -> object:
    if isinstance(value, str):
        return fill.text(value)
    if isinstance(value, list | tuple):
        out: list[object] = []
        for item in value:
            if item == _ALL_URLS:
                out.extend(fill.urls)
            else:
                out.append(_substitute(item, fill))
        return out
    if isinstance(value, dict):
        return {k: _substitute(v, fill) for k, v in value.items()}
    return value


def result_body(
    *,
    request_id: str,
    snap: Snapshot,
    model_id: str,
    created_at: str,
    finished_at: str | None,
    output: object,
    error: object,
    cost: float | None,
) -> dict[str, Any]:
    """Answer ``GET /result``: 200 with the current status even while unfinished.

    ``output`` is included only when succeeded, ``error`` only when failed, ``finished_at``
    only when finished, ``cost`` only when asked for (``cost`` not ``None``) and finished.
    """
    body: dict[str, Any] = {"request_id": request_id, "status": snap.state}
    if snap.state == "succeeded":
        body["output"] = output
    elif snap.state == "failed":
        body["error"] = error
    body["created_at"] = created_at
    if snap.state in _FINISHED and finished_at is not None:
        body["finished_at"] = finished_at
        if cost is not None:
            body["cost"] = 0.0 if snap.state == "cancelled" else cost
    body["model_id"] = model_id
    return body


def cancel_body(
    request_id: str, snap: Snapshot, outcome: str, terminal: TerminalStatus
) -> dict[str, Any]:
    """Answer ``POST /cancel`` (202): the job's ``/status`` word after the attempt + outcome."""
    return {
        "request_id": request_id,
        "status": status_word(snap.state, terminal),
        "outcome": outcome,
    }
