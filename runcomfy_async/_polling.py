"""When to poll a job's status next, and the one request budget all polls share.

Two halves, kept apart so the maths is tested without sleeping:

* Pure planning. :func:`backoff_interval` is the plain schedule (start fast, grow with
  jitter to a cap, reset on a transition). :class:`RunTimes` learns, within the session,
  how long each model's jobs run and how fast its queue drains; :func:`plan_next` turns
  that into the next poll: sparse while the job cannot be done yet, dense around its
  expected finish, backing off again once it is overdue. A model's first job has no
  history and gets the plain schedule.
* Waiting. :class:`PollScheduler`, one per client, sleeps each watcher until its poll is
  due, then hands out status requests from a token bucket (``requests_per_second`` with a
  ``burst``), most overdue job first. It starts no background task: the waiter at the head
  of the line keeps time for the others, so nothing needs closing.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final

import anyio
import msgspec

from ._retry import Backpressure
from ._types import JobState

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

RunComfy publishes no rate limit; its own clients poll each job every 2–5 s. 20/s keeps a
session of thousands of jobs well below anything that looks abusive while still
polling ~100 jobs near their finish every 1.5 s.
"""

_MAX_STEP: Final = 64  # growth ** step overflows a float long before anyone waits this long
_SAMPLES_KEPT: Final = 32
_DRAIN_WEIGHT: Final = 0.3
_EPSILON: Final = 1e-9  # refill rounding must not leave a token at 0.9999999 for ever


class PollPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How status polls are paced, per job and for the whole session.

    The plain schedule waits ``first_interval`` after a state change, then grows by
    ``growth`` up to ``max_interval``; each wait is shortened by a random fraction of at
    most ``jitter`` so thousands of jobs do not poll in lock-step. With ``learn`` on, a
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
        if not self.growth >= 1:
            raise ValueError(f"growth must be >= 1, got {self.growth!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter!r}")
        if not self.requests_per_second > 0:
            raise ValueError(
                f"requests_per_second must be positive, got {self.requests_per_second!r}"
            )
        for name in ("burst", "max_consecutive_failures"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


DEFAULT_POLLING: Final = PollPolicy()


# --- pure planning ------------------------------------------------------------------------


def _jittered(policy: PollPolicy, seconds: float, rand: float) -> float:
    # Only ever shortened: a cap stays a cap, and a window edge is never overshot.
    return seconds * (1.0 - policy.jitter * rand)


def backoff_interval(policy: PollPolicy, step: int, *, rand: float = 0.0) -> float:
    """Return the plain wait before the next poll.

    Args:
        policy: The policy in force.
        step: Polls since the last transition, minus one (0 right after it).
        rand: A number in ``[0, 1]``, the jitter draw (0 gives the full interval).
    """
    raw = policy.first_interval * policy.growth ** min(max(step, 0), _MAX_STEP)
    return _jittered(policy, min(policy.max_interval, raw), rand)


class RunEstimate(msgspec.Struct, frozen=True):
    """What the session has learned of a model's run time, in seconds.

    Attributes:
        low: The shortest run time to expect.
        high: The longest run time to expect.
        samples: How many finished jobs it rests on.
    """

    low: float
    high: float
    samples: int


class Plan(msgspec.Struct, frozen=True):
    """The next poll of one job.

    Attributes:
        at: When to send it, on the scheduler's clock.
        key: Its priority when the budget is short: the time the job is expected to be
            done (smaller is more overdue, so it goes first).
    """

    at: float
    key: float


def plan_next(
    policy: PollPolicy,
    now: float,
    *,
    state: JobState | None,
    step: int,
    failures: int = 0,
    retry_after: float | None = None,
    started: tuple[float, float] | None = None,
    position: int | None = None,
    estimate: RunEstimate | None = None,
    drain: float | None = None,
    rand: float = 0.0,
) -> Plan:
    """Decide when to poll a job next. Pure: no clock, no randomness of its own.

    Args:
        policy: The policy in force.
        now: The time of the last poll's answer, on the scheduler's clock.
        state: The job's last observed state (None before any answer).
        step: Polls since the last transition, minus one.
        failures: Transient failures in a row just now (0 after a good answer).
        retry_after: What a 429 asked for, in seconds.
        started: When the job started running, as bounds ``(earliest, latest)``.
        position: Its last queue position.
        estimate: The model's learned run time.
        drain: The model's learned seconds per queue position.
        rand: A number in ``[0, 1]``, the jitter draw.
    """
    if failures:
        wait = backoff_interval(policy, failures - 1, rand=rand)
        if retry_after is not None:
            wait = max(wait, min(retry_after, policy.max_retry_after))
        return Plan(now + wait, now + wait)
    if policy.learn and state is JobState.IN_PROGRESS and estimate and started:
        return _plan_learned(policy, now, started, estimate, rand)
    wait = backoff_interval(policy, step, rand=rand)
    if policy.learn and state is JobState.IN_QUEUE and drain and position and position > 1:
        # Jobs ahead of this one must leave first; no need to ask before they can have.
        ahead = min(policy.max_learned_interval, (position - 1) * drain)
        wait = max(wait, _jittered(policy, ahead, rand))
    return Plan(now + wait, now + wait)


def _plan_learned(
    policy: PollPolicy,
    now: float,
    started: tuple[float, float],
    estimate: RunEstimate,
    rand: float,
) -> Plan:
    first = started[0] + estimate.low
    last = started[1] + estimate.high
    key = (first + last) / 2
    if now < first:
        wait = _jittered(policy, min(policy.max_learned_interval, first - now), rand)
    elif now <= last:
        wait = _jittered(policy, policy.finish_interval, rand)
    else:
        # Overdue: the estimate was wrong for this job; back off with its lateness.
        cap = max(policy.max_interval, policy.finish_interval)
        wait = _jittered(policy, min(cap, max(policy.finish_interval, (now - last) / 2)), rand)
    return Plan(now + wait, key)


class RunTimes:
    """Run times and queue drain rates per model, learned from this session's jobs.

    A finished job gives its run time as bounds, because it was only seen between polls:
    it started after the last ``in_queue`` answer and before the first ``in_progress``
    one, and ended between the last running answer and the first terminal one.
    """

    def __init__(self) -> None:
        self._runs: dict[str, deque[tuple[float, float]]] = {}
        self._drain: dict[str, float] = {}

    def record_run(self, model_id: str, shortest: float, longest: float) -> None:
        """Remember that a job of ``model_id`` ran between ``shortest`` and ``longest`` s."""
        if not 0 <= shortest <= longest < math.inf:
            return
        samples = self._runs.setdefault(model_id, deque(maxlen=_SAMPLES_KEPT))
        samples.append((shortest, longest))

    def record_drain(self, model_id: str, seconds_per_position: float) -> None:
        """Fold one observed queue step into the model's drain rate (an EWMA)."""
        if not 0 < seconds_per_position < math.inf:
            return
        old = self._drain.get(model_id)
        self._drain[model_id] = (
            seconds_per_position
            if old is None
            else old + _DRAIN_WEIGHT * (seconds_per_position - old)
        )

    def drain(self, model_id: str | None) -> float | None:
        """Return the learned seconds per queue position, if any."""
        return None if model_id is None else self._drain.get(model_id)

    def estimate(self, model_id: str | None) -> RunEstimate | None:
        """Return the run time window to expect for the model's next job, if known.

        Consistent bounds (one run time fits every sample) give their intersection;
        otherwise the spread of the samples' midpoints (5th–95th percentile), padded by
        the measurement error and by an allowance that shrinks as samples accumulate.
        """
        samples = self._runs.get(model_id) if model_id is not None else None
        if not samples:
            return None
        n = len(samples)
        low = max(lo for lo, _ in samples)
        high = min(hi for _, hi in samples)
        if n >= 3 and low <= high:
            return RunEstimate(low, high, n)
        mids = sorted((lo + hi) / 2 for lo, hi in samples)
        halfwidth = sum(hi - lo for lo, hi in samples) / (2 * n)
        pad = halfwidth / 2 + 0.05 * (sum(mids) / n) / n
        lo_mid = mids[int(0.05 * n)]
        hi_mid = mids[max(0, math.ceil(0.95 * n) - 1)]
        return RunEstimate(max(0.0, lo_mid - pad), hi_mid + pad, n)


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
        if self._paused() > 0:
            return
        now = self.clock()
        while (top := self._top()) is not None and self._bucket.take(now):
            heapq.heappop(self._heap)
            top.granted = True
            top.event.set()
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
