"""The one status-request budget all of a client's jobs share, and its poll scheduler.

:class:`~runcomfy_async.PollPolicy` (in :mod:`._config`) says how fast to poll; the pure
maths that applies it (plain backoff, learned run times, the next poll's plan) lives in
:mod:`._poll_plan`, tested without sleeping. :class:`PollScheduler`, one per client, does
the waiting: it sleeps each watcher until its poll is due, then hands out status
requests from a token bucket (``requests_per_second`` with a ``burst``), the most
overdue job first. It starts no background task — the waiter at the head of the line
keeps time for the others — so a client used without ``async with`` has nothing to
stop, and there is no ``aclose()``.
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from collections.abc import Awaitable, Callable
from typing import Final

import anyio

from ._config import DEFAULT_POLLING, PollPolicy
from ._poll_plan import RunTimes
from ._retry import Backpressure

__all__ = ["PollScheduler", "TokenBucket"]

_EPSILON: Final = 1e-9  # refill rounding must not leave a token at 0.9999999 for ever


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; pure, clock passed in."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._stamp = now

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now

    def take(self, now: float) -> bool:
        """Take one token if there is one."""
        self._refill(now)
        if self._tokens >= 1.0 - _EPSILON:
            self._tokens = max(0.0, self._tokens - 1.0)
            return True
        return False

    def refund(self) -> None:
        """Give back a token that was taken but not used."""
        self._tokens = min(self.burst, self._tokens + 1.0)

    def wait_time(self, now: float) -> float:
        """Seconds until a token is available (0 if one is)."""
        self._refill(now)
        missing = 1.0 - self._tokens
        return missing / self.rate if missing > _EPSILON else 0.0


class _Waiter:
    __slots__ = ("event", "gone", "granted", "key", "seq")

    def __init__(self, key: float, seq: int) -> None:
        self.key = key
        self.seq = seq
        self.event = anyio.Event()
        self.granted = False
        self.gone = False

    def __lt__(self, other: _Waiter) -> bool:
        return (self.key, self.seq) < (other.key, other.seq)


class PollScheduler:
    """One per client: the shared status budget and the run times learned so far.

    Args:
        policy: The polling policy.
        backpressure: The session's 429 pause; no poll is granted while it lasts.
        clock: Monotonic seconds (injectable for tests).
        sleep: Sleeps on that clock (injectable for tests).
        rand: Draws jitter in ``[0, 1)``.
    """

    def __init__(
        self,
        policy: PollPolicy = DEFAULT_POLLING,
        *,
        backpressure: Backpressure | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy
        self.run_times = RunTimes()
        self.clock = clock
        self.rand = rand
        self._backpressure = backpressure
        self._sleep = sleep
        self._bucket = TokenBucket(policy.requests_per_second, policy.burst, clock())
        self._heap: list[_Waiter] = []
        self._timekeeper: _Waiter | None = None
        self._seq = itertools.count()

    @property
    def waiting(self) -> int:
        """How many due polls are waiting for the budget."""
        return sum(1 for w in self._heap if not w.gone)

    async def turn(self, at: float, *, key: float | None = None) -> None:
        """Sleep until ``at``, then until the budget allows one status request.

        Args:
            at: When the poll is due, on :attr:`clock`.
            key: Its priority among due polls: smaller goes first (default ``at``).
        """
        delay = at - self.clock()
        if delay > 0:
            await self._sleep(delay)
        await self._acquire(at if key is None else key)

    def _paused(self) -> float:
        return self._backpressure.remaining if self._backpressure is not None else 0.0

    def _top(self) -> _Waiter | None:
        heap = self._heap
        while heap and heap[0].gone:
            heapq.heappop(heap)
        return heap[0] if heap else None

    def _dispatch(self) -> None:
        if self._paused() <= 0:
            now = self.clock()
            while (top := self._top()) is not None and self._bucket.take(now):
                heapq.heappop(self._heap)
                top.granted = True
                top.event.set()
        top = self._top()
        if top is not None and self._timekeeper is None:
            top.event.set()  # wake it to keep time for the line

    async def _acquire(self, key: float) -> None:
        if self._top() is None and self._paused() <= 0 and self._bucket.take(self.clock()):
            return
        waiter = _Waiter(key, next(self._seq))
        heapq.heappush(self._heap, waiter)
        try:
            while True:
                self._dispatch()
                if waiter.granted:
                    return
                if self._timekeeper is None:
                    self._timekeeper = waiter
                    try:
                        await self._sleep(max(self._paused(), self._bucket.wait_time(self.clock())))
                    finally:
                        self._timekeeper = None
                else:
                    waiter.event = anyio.Event()
                    await waiter.event.wait()
        except BaseException:
            # Cancelled while waiting: leave the line, and hand back a token that was
            # granted but never used, so the budget is not spent on nothing.
            if waiter.granted:
                self._bucket.refund()
            waiter.gone = True
            raise
        finally:
            self._dispatch()
