"""The watcher: status polls in, transition events out; and wait/run built on it.

One :class:`~._watcher.Watcher` per job does one poll per step and turns the answer into
the events that are new (a repeated status yields nothing). The public
functions only drive it, so :func:`watch` never yields inside a cancel scope or task
group (anyio's rule for async generators): every scope opens and closes within a step.
Breaking out of ``async for`` therefore leaves nothing behind — no task, no waiter in the
poll scheduler, no connection — and never cancels the job remotely. Only
:func:`run_to_result`, which submitted the job on the caller's behalf, cancels a job
that is still queued when its caller gives up.

The functions take a ``timeout`` rather than leave it to ``anyio.fail_after`` around the
call, because the deadline belongs to the job, not to the call: reaching it raises
:class:`~runcomfy_async.WaitTimeoutError` naming the last status, lets a poll already due
finish, and decides whether :func:`run_to_result` cancels remotely.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import anyio

from ._api import DEFAULT_CANCEL_TIMEOUT
from ._errors import JobCancelledError, JobFailedError, RunComfyError, WaitTimeoutError
from ._events import Cancelled, Completed, Event, Failed
from ._types import JobState
from ._watcher import DEFAULT_LAST_POLL_GRACE, Watcher, is_transient

if TYPE_CHECKING:
    from ._api import Api
    from ._polling import PollScheduler
    from ._types import Result

__all__ = [
    "DEFAULT_CANCEL_TIMEOUT",
    "DEFAULT_LAST_POLL_GRACE",
    "run_to_result",
    "wait",
    "watch",
]


def _outcome(event: Event) -> Result | None:
    """The result of a terminal event (raising for failure); None for other events."""
    if isinstance(event, Completed):
        return event.result
    if isinstance(event, Failed):
        raise JobFailedError(event.result)
    if isinstance(event, Cancelled):
        raise JobCancelledError(event.request_id)
    return None


async def _drive(watcher: Watcher) -> Result:
    while True:
        for event in await watcher.step():
            result = _outcome(event)
            if result is not None:
                return result


async def watch(
    api: Api,
    scheduler: PollScheduler,
    request_id: str,
    *,
    model_id: str | None = None,
    timeout: float | None = None,
    submitted_at: float | None = None,
) -> AsyncIterator[Event]:
    """Yield a job's transitions until, and including, the terminal one.

    ``Queued`` comes again whenever the position changes, ``UnknownStatus`` once per new
    word (the job is then treated as still running), and exactly one of ``Completed``,
    ``Failed`` or ``Cancelled`` ends it. Transient poll failures are absorbed by backoff.
    Leaving the loop early is safe and never cancels the job remotely.

    Args:
        api: The session's routes.
        scheduler: The session's poll scheduler.
        request_id: The job.
        model_id: The job's model, if known: polling learns its run time.
        timeout: Overall deadline in seconds; None waits as long as it takes.
        submitted_at: When the job was submitted, on the scheduler's clock, if known
            (say, by a handle fresh from submit); it lets the learned schedule start at
            once when the first answer is already ``in_progress``.

    Raises:
        WaitTimeoutError: The deadline passed (also a ``TimeoutError``).
        NotFoundError: Unknown or expired id (404001); raised at once.
        AuthenticationError: The token was refused; raised at once.
        PermissionDeniedError: Someone else's request; raised at once.
        TransportError: Polls kept failing (``max_consecutive_failures`` in a row).
        APIStatusError: Polls kept failing, or another error answer.
    """
    watcher = Watcher(
        api,
        scheduler,
        request_id,
        model_id=model_id,
        timeout=timeout,
        submitted_at=submitted_at,
    )
    while not watcher.done:
        events = await watcher.step()
        # Yielded here, outside every cancel scope the step opened.
        for event in events:
            yield event


async def wait(
    api: Api,
    scheduler: PollScheduler,
    request_id: str,
    *,
    model_id: str | None = None,
    timeout: float | None = None,
    submitted_at: float | None = None,
) -> Result:
    """Wait for a job to finish and return its result. Never cancels remotely.

    Args:
        api: The session's routes.
        scheduler: The session's poll scheduler.
        request_id: The job.
        model_id: The job's model, if known.
        timeout: Overall deadline in seconds; None waits as long as it takes.
        submitted_at: When the job was submitted, on the scheduler's clock, if known.

    Raises:
        JobFailedError: The job failed; its result and error are attached.
        JobCancelledError: The job was cancelled.
        WaitTimeoutError: The deadline passed (also a ``TimeoutError``).
        NotFoundError: Unknown or expired id (404001).
        AuthenticationError: The token was refused.
        PermissionDeniedError: Someone else's request.
        TransportError: Polls kept failing.
        APIStatusError: Polls kept failing, or another error answer.
    """
    return await _drive(
        Watcher(
            api,
            scheduler,
            request_id,
            model_id=model_id,
            timeout=timeout,
            submitted_at=submitted_at,
        )
    )


async def run_to_result(
    api: Api,
    scheduler: PollScheduler,
    request_id: str,
    *,
    model_id: str | None = None,
    timeout: float | None = None,
    cancel_on_exit: bool = True,
    fresh: bool = True,
) -> Result:
    """Wait for a job just submitted; cancel it remotely if abandoned while queued.

    When the awaiting task is cancelled (a cancel scope, ``asyncio.wait_for``, a failing
    task group, a web client that went away), the deadline passes, or polling fails for
    good, and the job was last seen queued (or not seen yet), one shielded remote cancel
    is sent, bounded by :data:`DEFAULT_CANCEL_TIMEOUT`; its own failure is logged, and
    the original exception propagates. A job seen running is left alone: the API cannot
    cancel it. (A second, native ``Task.cancel()`` during that cancel still interrupts
    it: anyio's shield covers cancel scopes only.)

    Args:
        api: The session's routes.
        scheduler: The session's poll scheduler.
        request_id: The job, fresh from submit.
        model_id: The job's model, if known.
        timeout: Overall deadline in seconds; None waits as long as it takes.
        cancel_on_exit: Send the remote cancel described above.
        fresh: The job was submitted just now, so it cannot have started running before
            this call (the learned schedule relies on it). Pass False when re-attaching
            to an older job, say one found in a journal.

    Raises:
        JobFailedError: The job failed.
        JobCancelledError: The job was cancelled.
        WaitTimeoutError: The deadline passed.
        NotFoundError: Unknown or expired id.
        AuthenticationError: The token was refused.
        PermissionDeniedError: Someone else's request.
        TransportError: Polls kept failing.
        APIStatusError: Polls kept failing, or another error answer.
    """
    watcher = Watcher(
        api,
        scheduler,
        request_id,
        model_id=model_id,
        timeout=timeout,
        submitted_at=scheduler.clock() if fresh else None,
    )
    try:
        return await _drive(watcher)
    except BaseException as exc:
        if cancel_on_exit and _abandons_queued(watcher, exc):
            await api.cancel_abandoned(request_id)
        raise


def _abandons_queued(watcher: Watcher, exc: BaseException) -> bool:
    if watcher.state not in (None, JobState.IN_QUEUE):
        return False
    if isinstance(exc, (anyio.get_cancelled_exc_class(), WaitTimeoutError)):
        return True
    # Polling gave up on a flaky connection: the caller will never see this job's
    # result, so do not let it run (and bill). Refusals (401/403/404) are left alone:
    # a cancel would be refused the same way.
    return isinstance(exc, RunComfyError) and is_transient(exc)
