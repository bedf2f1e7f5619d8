"""Read deadlines for status and result polls: one timer for all of a session's polls.

aiohttp's ``sock_read`` timeout re-arms an event-loop timer at every send and every chunk
an answer brings (a handle pushed on the loop's heap, compared in Python, then cancelled):
about 7 % of a poll's CPU, on the requests a big batch makes most. A poll instead takes a
place in a line here — deadlines of one length come in the order polls start — and one
timer, armed for the oldest live deadline, cancels the polls still unanswered at theirs;
the transport turns that cancellation into :class:`~runcomfy_async.ReadTimeoutError`.

A poll's deadline counts from when it starts (waiting for a pooled connection included)
to its whole answer: for a poll, which is retried, that is the same protection, and a
server dripping an answer byte by byte no longer holds it. Submits and cancels keep
aiohttp's between-bytes timeout: there, when a timeout strikes decides whether a job may
have been created.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["Deadline", "Deadlines"]


class Deadline:
    """One poll's place in the line, until its answer is read (or it failed)."""

    __slots__ = ("at", "cancelling", "fired", "task")

    def __init__(self, at: float, task: asyncio.Task[object]) -> None:
        self.at = at
        self.task: asyncio.Task[object] | None = task  # None once the poll is over
        self.cancelling = task.cancelling()  # cancellations already asked of it
        self.fired = False

    def expired(self) -> bool:
        """Whether the cancellation the poll is seeing is this deadline's (and only its):
        then the caller raises a read timeout instead. This deadline's own cancellation is
        taken back either way; a caller's, asked for too, stands."""
        task = self.task
        if not self.fired or task is None:
            return False
        self.fired = False
        return task.uncancel() <= self.cancelling

    def close(self) -> None:
        """The poll is over: its place holds nothing (not even the task) until dropped. A
        cancellation this deadline asked for that never reached the caller (swallowed on
        the way) is taken back, so the task is not left counted as cancelling."""
        task, self.task = self.task, None
        if self.fired and task is not None:
            self.fired = False
            task.uncancel()


class Deadlines:
    """The line of polls of one deadline length, and its one timer."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._line: deque[Deadline] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def arm(self) -> Deadline | None:
        """Start the current task's deadline (None outside a task: no deadline)."""
        task = asyncio.current_task()
        if task is None:
            return None
        line, loop = self._line, task.get_loop()
        while line and line[0].task is None:  # polls over since: their places go
            line.popleft()
        deadline = Deadline(loop.time() + self.seconds, task)
        line.append(deadline)
        if self._timer is None:
            self._timer = loop.call_at(deadline.at, self._expire, loop)
        return deadline

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        line, now = self._line, loop.time()
        while line and (line[0].task is None or line[0].at <= now):
            deadline = line.popleft()
            if deadline.task is not None:
                deadline.fired = True
                deadline.task.cancel()
        if line:
            self._timer = loop.call_at(line[0].at, self._expire, loop)
