"""Submit + wait: the run's deadline, and the one cancel-on-exit.

A run submitted the job on its caller's behalf, so it alone may cancel it remotely when
the caller gives up: if the awaiting task is cancelled (a cancel scope,
``asyncio.wait_for``, a failing task group, a web client that went away), the deadline
passes, or polling fails for good, and the job was last seen queued (or not seen yet),
one shielded remote cancel is sent, bounded by ``DEFAULT_CANCEL_TIMEOUT``; its own
failure is logged, and the original exception propagates. A job seen running is left
alone: the API cannot cancel it. :meth:`Runner.cancel_on_exit` is that rule, and every
caller that abandons a job — :meth:`Runner.wait`, keyed runs, the CLI — goes through it.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Final

import anyio
import msgspec

from ._cleanup import await_briefly
from ._errors import RunComfyError, SubmitTimeoutError, WaitTimeoutError
from ._watch import Watcher, drive, is_transient
from ._wire import CancelResult, JobState

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._poll_budget import PollScheduler
    from ._routes import Routes
    from ._submit import OrphanHook, Submitter
    from ._wire import Result, SubmitResponse

__all__ = ["ExitCancel", "Runner", "check_timeout"]

#: The least time left for the wait of a ``run()`` whose submit used up its deadline.
_MIN_WAIT: Final = 0.001


def check_timeout(timeout: float | None) -> None:
    """Refuse a deadline that is not a positive number of seconds (or None).

    Raises:
        ValueError: Zero, negative, NaN or not a number.
    """
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")


class ExitCancel(msgspec.Struct, frozen=True):
    """What cancel-on-exit did for an abandoned job.

    Attributes:
        sent: Whether a remote cancel was sent (the job was last seen queued).
        answer: The server's answer; None when not sent, or when the cancel failed.
    """

    sent: bool
    answer: CancelResult | None = None


def abandons_queued(queued: bool, exc: BaseException) -> bool:
    """Whether leaving with ``exc`` abandons a job that may still be cancelled."""
    if not queued:
        return False
    if isinstance(exc, (anyio.get_cancelled_exc_class(), WaitTimeoutError)):
        return True
    # Polling gave up on a flaky connection: the caller will never see this job's
    # result, so do not let it run (and bill). Refusals (401/403/404) are left alone:
    # a cancel would be refused the same way.
    return isinstance(exc, RunComfyError) and is_transient(exc)


class Runner:
    """A session's runs: submit, then wait; cancel what the caller abandons.

    Args:
        submitter: The session's submits.
        routes: The session's routes.
        scheduler: The session's poll scheduler.
    """

    def __init__(self, submitter: Submitter, routes: Routes, scheduler: PollScheduler) -> None:
        self.submitter = submitter
        self.routes = routes
        self.scheduler = scheduler

    async def run(
        self,
        model_id: str,
        body: Mapping[str, object],
        *,
        timeout: float | None,
        cancel_on_exit: bool,
    ) -> Result:
        """Submit a job and wait for it; the deadline counts from the call.

        A submit is never cut mid-POST (see :mod:`._submit`), so the wait gets what is
        left of the deadline, and at least one poll.
        """
        started = time.monotonic()
        # Only the id is kept through the wait (not the submit's answer and its URLs).
        request_id = (await self.submit(model_id, body, timeout=timeout)).request_id
        if timeout is not None:
            timeout = max(timeout - (time.monotonic() - started), _MIN_WAIT)
        return await self.wait(request_id, model_id, timeout=timeout, cancel_on_exit=cancel_on_exit)

    async def submit(
        self,
        model_id: str,
        body: Mapping[str, object],
        *,
        timeout: float | None,
        on_orphan: OrphanHook | None = None,
    ) -> SubmitResponse:
        """Submit, giving up at the deadline (the POST then finishes as cleanup).

        Raises:
            SubmitTimeoutError: The deadline passed with the POST on the wire.
            RunComfyError: As :meth:`Submitter.submit`.
        """
        if timeout is None:
            return await self.submitter.submit(model_id, body, on_orphan=on_orphan)
        created: list[str] = []

        async def orphaned(request_id: str | None, reason: str | None) -> None:
            if request_id is not None:
                created.append(request_id)
            if on_orphan is not None:
                await on_orphan(request_id, reason)

        try:
            async with asyncio.timeout(timeout):
                return await self.submitter.submit(model_id, body, on_orphan=orphaned)
        except TimeoutError as exc:
            if isinstance(exc, RunComfyError):
                raise  # a connect or read timeout of the POST itself
            if created:
                # The answer came within the grace: the job is known (and was cancelled).
                raise WaitTimeoutError(created[0], timeout=timeout, last_status=None) from exc
            raise SubmitTimeoutError(
                model_id=model_id,
                inputs=body,
                reason=f"the {timeout:g} s deadline passed with the POST on the wire;"
                " it was left to finish, and a job it created is cancelled",
            ) from exc

    async def wait(
        self,
        request_id: str,
        model_id: str | None,
        *,
        timeout: float | None,
        cancel_on_exit: bool,
        fresh: bool = True,
    ) -> Result:
        """Wait for a job this session submitted; cancel it if abandoned while queued.

        Args:
            request_id: The job.
            model_id: The job's model, if known.
            timeout: Overall deadline in seconds; None waits as long as it takes.
            cancel_on_exit: Send the remote cancel described in the module.
            fresh: The job was submitted just now, so it cannot have started running
                before this call (the learned schedule relies on it). Pass False when
                re-attaching to an older job, say one found in a journal.

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
            self.routes,
            self.scheduler,
            request_id,
            model_id=model_id,
            timeout=timeout,
            submitted_at=self.scheduler.clock() if fresh else None,
        )
        try:
            return await drive(watcher)
        except BaseException as exc:
            if cancel_on_exit:
                queued = watcher.state in (None, JobState.IN_QUEUE)
                await self.cancel_on_exit(request_id, queued=queued, exc=exc)
            raise

    async def cancel_on_exit(
        self, request_id: str, *, queued: bool, exc: BaseException
    ) -> ExitCancel:
        """Cancel an abandoned job remotely when it may still be cancelled.

        Shielded and time-boxed: it runs while the caller's own task is being cancelled,
        and never raises over the exception that ended the wait.

        Args:
            request_id: The job.
            queued: The job was last seen queued, or not seen at all.
            exc: What ended the wait.
        """
        if not abandons_queued(queued, exc):
            return ExitCancel(sent=False)
        if not isinstance(exc, asyncio.CancelledError):
            return ExitCancel(sent=True, answer=await self.routes.cancel_abandoned(request_id))
        # A cancelled caller gets control back promptly: the cancel goes on as cleanup.
        answers: list[CancelResult | None] = []

        async def cancel() -> None:
            answers.append(await self.routes.cancel_abandoned(request_id))

        task = self.submitter.cleanups.spawn(cancel(), f"cancel of request {request_id}")
        await await_briefly(task)
        return ExitCancel(sent=True, answer=answers[0] if answers else None)
