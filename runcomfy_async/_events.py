"""The transition events a watcher yields: frozen, pattern-matchable, one per real change.

Each event carries the job's ``request_id`` and ``observed_at``, the UTC time the client
saw the change (not the time it happened on the server, which the API does not say).
The positional field of each event is the one users match on::

    match event:
        case Queued(position):       ...
        case InProgress():           ...
        case Completed(result):      ...
        case Failed(result, error):  ...
        case Cancelled():            ...
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeAlias

import msgspec

from ._errors import JobCancelledError, JobFailedError
from ._wire import JobState, Result

__all__ = [
    "Cancelled",
    "Completed",
    "Event",
    "Failed",
    "InProgress",
    "Queued",
    "UnknownStatus",
    "outcome",
    "terminal_event",
]


class _Event(msgspec.Struct, frozen=True, kw_only=True):
    request_id: str
    observed_at: datetime


class Queued(_Event, frozen=True):
    """The job waits in the queue; yielded again whenever its position changes.

    Attributes:
        position: Its 1-based place in the queue, when the server said.
    """

    position: int | None


class InProgress(_Event, frozen=True):
    """The job is running."""


class Completed(_Event, frozen=True):
    """The job succeeded; ``result.output`` holds its files. Always the last event."""

    result: Result


class Failed(_Event, frozen=True):
    """The job failed. Always the last event.

    Attributes:
        result: The full result.
        error: The server's error, in whatever shape it sent.
    """

    result: Result
    error: Any


class Cancelled(_Event, frozen=True):
    """The job was cancelled. Always the last event."""


class UnknownStatus(_Event, frozen=True):
    """The server reported a status word the API does not document.

    The job is treated as still running and watched on; this event exists so that the
    surprise is visible instead of looped on silently.

    Attributes:
        status: The word, verbatim.
    """

    status: str


Event: TypeAlias = Queued | InProgress | Completed | Failed | Cancelled | UnknownStatus


def terminal_event(
    result: Result, request_id: str, observed_at: datetime
) -> Completed | Failed | Cancelled | None:
    """The event a finished job's result ends its watch with; None if it says unfinished."""
    if result.status is JobState.SUCCEEDED:
        return Completed(result=result, request_id=request_id, observed_at=observed_at)
    if result.status is JobState.FAILED:
        return Failed(
            result=result, error=result.error, request_id=request_id, observed_at=observed_at
        )
    if result.status is JobState.CANCELLED:
        return Cancelled(request_id=request_id, observed_at=observed_at)
    return None


def outcome(event: Event) -> Result | None:
    """The result of a terminal event (raising for failure); None for other events.

    Raises:
        JobFailedError: The event is :class:`Failed`.
        JobCancelledError: The event is :class:`Cancelled`.
    """
    if isinstance(event, Completed):
        return event.result
    if isinstance(event, Failed):
        raise JobFailedError(event.result)
    if isinstance(event, Cancelled):
        raise JobCancelledError(event.request_id)
    return None
