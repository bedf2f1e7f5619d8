"""Everything the command prints: JSON lines, plain lines, and rich progress when installed.

rich is an optional extra (``runcomfy-async[cli]``) and is imported lazily, only when a
progress bar or a table is about to be drawn. Without it every command still works and
prints plain lines. Progress and state changes go to stderr, results to stdout, so
``runcomfy run ... > urls.txt`` keeps only the outputs.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Protocol

import msgspec

from .._events import Cancelled, Completed, Failed, InProgress, Queued, UnknownStatus
from .._wire import JobState

if TYPE_CHECKING:
    from types import TracebackType

    from .._events import Event
    from .._wire import Result

__all__ = [
    "RICH_HINT",
    "Progress",
    "emit_json",
    "event_json",
    "event_line",
    "has_rich",
    "json_line",
    "keep_secret",
    "open_progress",
    "redact",
    "result_json",
    "say",
    "short_id",
    "state_word",
    "to_json",
    "warn",
]

RICH_HINT: Final = "(for progress bars and tables: pip install 'runcomfy-async[cli]')"

_encoder: Final = msgspec.json.Encoder()
# The tokens this process uses: never printed, even when a server's error text echoes one.
_SECRETS: Final[list[str]] = []
_REDACTED: Final = "[redacted]"

#: The one status vocabulary of every command, in text and JSON.
_WORDS: Final[dict[JobState, str]] = {
    JobState.IN_QUEUE: "queued",
    JobState.IN_PROGRESS: "running",
    JobState.COMPLETED: "succeeded",  # callers that can tell first ask /result
    JobState.SUCCEEDED: "succeeded",
    JobState.FAILED: "failed",
    JobState.CANCELLED: "cancelled",
    JobState.UNKNOWN: "unknown",
}


def state_word(state: JobState) -> str:
    """The CLI's word for a state: queued, running, succeeded, failed, cancelled (or unknown)."""
    return _WORDS[state]


def keep_secret(secret: str) -> None:
    """Never print ``secret``: every line this module writes has it replaced."""
    if secret and secret not in _SECRETS:
        _SECRETS.append(secret)


def redact(text: str) -> str:
    """``text`` with every kept secret replaced by ``[redacted]``."""
    for secret in _SECRETS:
        text = text.replace(secret, _REDACTED)
    return text


def has_rich() -> bool:
    """Tell whether rich is installed, without importing it."""
    return importlib.util.find_spec("rich") is not None


def say(text: str) -> None:
    """Print a result line on stdout."""
    print(redact(text), flush=True)


def warn(text: str) -> None:
    """Print a progress or diagnostic line on stderr."""
    print(redact(text), file=sys.stderr, flush=True)


def to_json(value: object) -> Any:
    """Turn structs, enums, datetimes and paths into plain JSON values."""
    return msgspec.to_builtins(value, enc_hook=str)


def json_line(obj: Mapping[str, object]) -> str:
    """One JSON object as one compact line, newline included."""
    return redact(_encoder.encode(to_json(obj)).decode()) + "\n"


def emit_json(obj: Mapping[str, object]) -> None:
    """Print one JSON object as one line on stdout."""
    sys.stdout.write(json_line(obj))
    sys.stdout.flush()


def short_id(request_id: str) -> str:
    """Shorten a request id for humans (the full id is in --json output)."""
    return request_id[:8]


def result_json(result: Result) -> dict[str, object]:
    """A result as a JSON object, with every output URL listed under ``urls``."""
    data: dict[str, object] = to_json(result)
    data["status"] = state_word(result.status)
    data["urls"] = list(result.output.urls) if result.output else []
    data["error_text"] = result.error_text
    return data


_EVENT_NAMES: Final = {
    Queued: "queued",
    InProgress: "running",
    Completed: "succeeded",
    Failed: "failed",
    Cancelled: "cancelled",
    UnknownStatus: "unknown",
}


def event_json(event: Event) -> dict[str, object]:
    """A transition event as a JSON object; ``event`` and ``status`` name the new state.

    An unknown word keeps the server's spelling under ``server_status``.
    """
    name = _EVENT_NAMES[type(event)]
    data: dict[str, object] = {"event": name}
    data.update(to_json(event))
    data["status"] = name
    if isinstance(event, UnknownStatus):
        data["server_status"] = event.status
    match event:
        case Completed(result=result) | Failed(result=result):
            data["result"] = result_json(result)
        case _:
            pass
    return data


def _clock(when: datetime) -> str:
    return when.astimezone().strftime("%H:%M:%S")


def event_line(event: Event) -> str:
    """A transition event as one human line."""
    head = f"{_clock(event.observed_at)}  {short_id(event.request_id)}"
    match event:
        case Queued(position=position):
            where = f" (position {position})" if position is not None else ""
            return f"{head}  queued{where}"
        case InProgress():
            return f"{head}  running"
        case Completed(result=result):
            cost = f", ${result.cost:.2f}" if result.cost is not None else ""
            count = len(result.output.urls) if result.output else 0
            return f"{head}  succeeded ({count} output file{'s' * (count != 1)}{cost})"
        case Failed(result=result):
            return f"{head}  failed: {result.error_text or 'no error given'}"
        case Cancelled():
            return f"{head}  cancelled"
        case UnknownStatus(status=status):
            return f"{head}  unexpected status {status!r} (still watching)"


class Progress(Protocol):
    """A bar for a known number of steps (jobs, files)."""

    def advance(self, label: str, steps: int = 1) -> None:
        """Record finished steps; ``label`` says which (plain output prints it)."""

    def __enter__(self) -> Progress: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class _PlainProgress:
    """Numbered lines on stderr: the fallback without rich, or without a terminal."""

    def __init__(self, description: str, total: int | None, hint: bool) -> None:
        self._description = description
        self._total = total
        self._done = 0
        self._hint = hint

    def __enter__(self) -> _PlainProgress:
        if self._hint:
            warn(RICH_HINT)
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def advance(self, label: str, steps: int = 1) -> None:
        self._done += steps
        of = f"/{self._total}" if self._total is not None else ""
        warn(f"[{self._done}{of}] {self._description}: {label}")


class _RichProgress:
    def __init__(self, description: str, total: int | None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichBar

        self._bar = RichBar(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[last]}"),
            console=Console(stderr=True),
            transient=False,
        )
        self._task = self._bar.add_task(description, total=total, last="")

    def __enter__(self) -> _RichProgress:
        self._bar.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._bar.stop()

    def advance(self, label: str, steps: int = 1) -> None:
        self._bar.update(self._task, advance=steps, last=label)


def open_progress(description: str, total: int | None, *, enabled: bool = True) -> Progress:
    """Open a progress bar on stderr: rich on a terminal, numbered lines otherwise.

    Args:
        description: What is counted, e.g. ``"jobs"``.
        total: How many steps, if known.
        enabled: False for ``--json`` runs that still want plain lines on stderr.
    """
    if enabled and has_rich() and sys.stderr.isatty():
        return _RichProgress(description, total)
    return _PlainProgress(description, total, hint=enabled and not has_rich())
