"""The polling policy, and the one status-request budget all of a client's jobs share.

:class:`PollPolicy` says how fast to poll; the pure maths that applies it (plain backoff,
learned run times, the next poll's plan) lives in :mod:`._schedule`, tested without
sleeping. :class:`PollScheduler`, one per client, does the waiting: it sleeps each
watcher until its poll is due, then hands out status requests from a token bucket
(``requests_per_second`` with a ``burst``), the most overdue job first. It starts no
background task — the waiter at the head of the line keeps time for the others — so a
client used without ``async with`` has nothing to stop, and there is no ``aclose()``.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import Final

import anyio
import msgspec

from ._retry import Backpressure
from ._schedule import Plan, RunEstimate, RunTimes, backoff_interval, plan_next

# The pure maths is re-exported: importers need one polling module, not two.
__all__ = [
    "DEFAULT_POLLING",
    "DEFAULT_REQUESTS_PER_SECOND",
    "Plan",
    "PollPolicy",
    "PollScheduler",
    "RunEstimate",
    "RunTimes",
    "TokenBucket",
    "backoff_interval",
    "plan_next",
]

DEFAULT_REQUESTS_PER_SECOND: Final = 20.0
"""Status requests per second one client sends at most, all jobs together.

RunComfy publishes no rate limit; its own clients poll each job every 2–5 s. 20/s is what
ten such clients would send. It polls 30 jobs inside their finish windows every 1.5 s,
and since a learned 60 s job costs about 10 polls, it sustains ~120 such jobs at once;
larger batches are polled more sparsely (the most overdue first), never faster.
"""

_EPSILON: Final = 1e-9  # refill rounding must not leave a token at 0.9999999 for ever


class PollPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How status polls are paced, per job and for the whole session.

    The plain schedule waits ``first_interval`` after a state change, then grows by
    ``growth`` up to ``max_interval``; each wait is shortened by a random fraction of at
    most ``jitter`` so thousands of jobs do not poll in lock-step. A new queue position is
    not a transition (a long queue would otherwise be polled at the first interval for
    ever); the learned drain rate spaces those polls instead. With ``learn`` on, a
    model's observed run times replace it while a job runs: one poll every
    ``max_learned_interval`` at most while the job cannot be done yet, one every
    ``finish_interval`` through the window where it is expected to finish.

    Attributes:
        first_interval: Seconds before the second poll after a transition (the first poll
            of a watch is sent at once).
        growth: Factor the interval grows by at each poll without a transition.
        max_interval: The longest plain interval.
        jitter: The largest fraction (0–1) each wait is shortened by at random.
        requests_per_second: The session-wide status budget, all jobs together.
        burst: Status requests that may go out at once after a quiet spell.
        max_consecutive_failures: Transient poll failures (connection errors, 408, 429,
            5xx, unreadable answers) tolerated in a row before the last one is raised.
        max_retry_after: The longest ``Retry-After`` honoured on a 429; longer asks are
            capped.
        learn: Learn each model's run time and queue drain rate within the session and
            poll around the expected finish.
        finish_interval: Seconds between polls while a job is inside its expected finish
            window; it bounds the detection latency of a job that finishes there.
        max_learned_interval: The longest wait of the learned schedule before that
            window (a job that fails early is noticed within this).
    """

    first_interval: float = 0.5
    growth: float = 1.5
    max_interval: float = 5.0
    jitter: float = 0.1
    requests_per_second: float = DEFAULT_REQUESTS_PER_SECOND
    burst: int = 20
    max_consecutive_failures: int = 20
    max_retry_after: float = 60.0
    learn: bool = True
    finish_interval: float = 1.5
    max_learned_interval: float = 30.0

    def __post_init__(self) -> None:
        for name in (
            "first_interval",
            "max_interval",
            "max_retry_after",
            "finish_interval",
            "max_learned_interval",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 <= value < math.inf):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not 1 <= self.growth < math.inf:
            raise ValueError(f"growth must be a finite number >= 1, got {self.growth!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter!r}")
        if not 0 < self.requests_per_second < math.inf:
            raise ValueError(
                f"requests_per_second must be positive and finite, got {self.requests_per_second!r}"
            )
        for name in ("burst", "max_consecutive_failures"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


DEFAULT_POLLING: Final = PollPolicy()


# --- the shared budget ---------------------------------------------------------------------


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
