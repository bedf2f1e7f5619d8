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

from ._wire import Result

__all__ = [
    "Cancelled",
    "Completed",
    "Event",
    "Failed",
    "InProgress",
    "Queued",
    "UnknownStatus",
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
