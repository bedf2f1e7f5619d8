"""Cleanup that outlives a cancelled caller: tracked, logged, bounded, awaited on close.

When a caller gives up (any kind of cancellation, a deadline) while its submit POST is on
the wire, the POST's answer must still be read, its job's id recorded and the job
cancelled remotely — but the caller must get control back at once. That work runs as a
task owned by the session (:class:`CleanupTasks`): each is bounded in time, its failure
is logged, and ``Client.aclose()`` waits for all of them.

The caller waits for its own cleanup for a short grace (``DEFAULT_CANCEL_GRACE``), so
that on a healthy connection the cleanup is over when the cancellation is, and only a
hanging server leaves it running in the background.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any, Final

__all__ = [
    "DEFAULT_CANCEL_GRACE",
    "DEFAULT_CLEANUP_TIMEOUT",
    "CleanupTasks",
    "await_briefly",
    "wait_uncancelled",
]

logger: Final = logging.getLogger("runcomfy_async")

DEFAULT_CANCEL_GRACE: Final = 0.2
"""Seconds a cancelled caller waits for its own cleanup before leaving it to the session."""

DEFAULT_CLEANUP_TIMEOUT: Final = 60.0
"""Seconds one cleanup task may take (an answer to read, a cancel to send) before it is cut."""


class CleanupTasks:
    """The session's cleanup tasks."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return sum(1 for task in self._tasks if not task.done())

    def spawn(
        self,
        work: Awaitable[None],
        what: str,
        *,
        timeout: float = DEFAULT_CLEANUP_TIMEOUT,
    ) -> asyncio.Task[None]:
        """Run ``work`` as a tracked task, cut after ``timeout`` seconds; failures logged."""
        task = asyncio.get_running_loop().create_task(_bounded(work, what, timeout))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self) -> None:
        """Wait for every cleanup task (each is bounded), even while being cancelled."""
        while pending := {task for task in self._tasks if not task.done()}:
            await wait_uncancelled(*pending)


async def _bounded(work: Awaitable[None], what: str, timeout: float) -> None:
    try:
        async with asyncio.timeout(timeout):
            await work
    except TimeoutError:
        logger.error("cleanup (%s) did not finish within %g s and was cut", what, timeout)
    except Exception:
        logger.exception("cleanup (%s) failed", what)


async def wait_uncancelled(*futures: asyncio.Future[Any]) -> None:
    """Wait for ``futures`` even while being cancelled; re-raise the cancellation after.

    ``asyncio.wait`` never cancels what it waits for, so the work always completes.
    """
    cancelled: asyncio.CancelledError | None = None
    while not all(future.done() for future in futures):
        try:
            await asyncio.wait(futures)
        except asyncio.CancelledError as exc:
            cancelled = exc
    if cancelled is not None:
        raise cancelled


async def await_briefly(task: asyncio.Future[Any], grace: float = DEFAULT_CANCEL_GRACE) -> None:
    """Wait up to ``grace`` seconds for ``task``, ignoring cancellations meanwhile.

    For a caller that is being cancelled: it may see its cleanup through when that is
    quick, and leaves it running otherwise. The caller re-raises its cancellation after.
    """
    deadline = time.monotonic() + grace
    while not task.done():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            await asyncio.wait({task}, timeout=left)
        except asyncio.CancelledError:
            continue
