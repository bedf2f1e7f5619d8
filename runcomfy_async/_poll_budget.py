"""The one request budget all of a session's jobs share, and its poll scheduler.

:class:`~runcomfy_async.PollPolicy` (in :mod:`._config`) says how fast to poll; the pure
maths that applies it (plain backoff, learned run times, the next poll's plan) lives in
:mod:`._poll_plan`, tested without sleeping. :class:`PollScheduler`, one per session, does
the waiting: it sleeps each watcher until its poll is due, then hands out requests — status
polls, result fetches and cancels alike — from a token bucket whose rate
:class:`AdaptiveRate` *finds*: there is no fixed ceiling the server does not impose.

``Retry-After`` pauses every request of the session that long
(:class:`~runcomfy_async._retry.Backpressure`); the rate itself is :mod:`._rate`'s.

Due requests are served most overdue first (smallest key), and a key is never later than
``_AGING`` seconds after the request fell due, so no job starves however many newer,
more urgent ones arrive. It starts no background task — the waiter at the head of the
line keeps time for the others — so a client used without ``async with`` has nothing to
stop, and there is no ``aclose()``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
import time
import weakref
from collections.abc import Awaitable, Callable, Generator
from typing import Final, TypeVar

import anyio

from ._config import DEFAULT_POLLING, PollPolicy
from ._rate import AdaptiveRate, TokenBucket
from ._retry import Backpressure
from ._run_times import RunTimes
from ._wire import JobState

__all__ = ["AdaptiveRate", "PollScheduler", "TokenBucket"]

T = TypeVar("T")

_RUNNING: Final = frozenset({JobState.IN_PROGRESS, JobState.UNKNOWN})
_AGING: Final = 5.0  # a due request's key is never later than this after it fell due
#: Due times are rounded up to a multiple of this many seconds, so polls due within the
#: same 20 ms wake the event loop once and go out as one burst: each wake-up and each lone
#: send to a sleeping server costs far more CPU (on both sides) than the Python around it.
_TICK: Final = 0.02


class _Now:
    """An awaitable that is True at once, without yielding to the loop."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, bool]:
        return True
        yield  # a generator that ends before its first yield


_NOW: Final = _Now()


def _resolve(future: asyncio.Future[T] | None, value: T) -> None:
    """Wake whoever awaits ``future`` with ``value``, unless it is gone or already woken."""
    if future is not None and not future.done():
        future.set_result(value)


class _Waiter:
    """A request in the line. Woken (:meth:`wake`) to look again; a wake while it is not
    asleep is dropped: it looks at the line before every sleep anyway."""

    __slots__ = ("_asleep", "gated", "gone", "granted")

    def __init__(self, gated: bool) -> None:
        self._asleep: asyncio.Future[None] | None = None
        self.granted = False
        self.gone = False
        self.gated = gated  # a poll: also waits for one of the polls in flight to end

    def wake(self) -> None:
        _resolve(self._asleep, None)

    async def sleep(self) -> None:
        # One bare future a sleep: an asyncio.Event here cost an object, a deque and a
        # future for every request that waited in the line.
        self._asleep = asyncio.get_running_loop().create_future()
        try:
            await self._asleep
        finally:
            self._asleep = None


#: The line's entries: (key, arrival, waiter), ordered by the tuple (arrivals are unique,
#: so waiters themselves are never compared).
_Entry = tuple[float, int, _Waiter]


class PollScheduler:
    """One per session: the shared request budget and the run times learned so far.

    Args:
        policy: The polling policy.
        backpressure: The session's 429 pause; no request is granted while it lasts.
        clock: Monotonic seconds (injectable for tests).
        sleep: Sleeps on that clock (injectable for tests).
        rand: Draws jitter in ``[0, 1)``.
        tick: Due times are rounded up to a multiple of this (seconds); by default 20 ms
            on the real clock and none on an injected one.
        max_polls_in_flight: Polls (:meth:`turn`) granted and not yet :meth:`done`, at
            most: the session's connections to the API host. More would wait inside
            aiohttp's pool, first come first served and each holding a whole request
            (thousands of them at a big batch's end); here they wait in the line, most
            overdue first, for a few hundred bytes each. None: no bound.
    """

    def __init__(
        self,
        policy: PollPolicy = DEFAULT_POLLING,
        *,
        backpressure: Backpressure | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        rand: Callable[[], float] = random.random,
        tick: float | None = None,
        max_polls_in_flight: int | None = None,
    ) -> None:
        self.policy = policy
        self._max_polls = math.inf if max_polls_in_flight is None else max_polls_in_flight
        self.polls_in_flight = 0
        self._tick = (_TICK if clock is time.monotonic else 0.0) if tick is None else tick
        self.run_times = RunTimes()
        self.clock = clock
        self.rand = rand
        self.backpressure = backpressure if backpressure is not None else Backpressure(clock)
        # anyio.sleep on asyncio (aiohttp's only loop) is asyncio.sleep two coroutine
        # frames deeper: every sleeping job of a big batch would hold those frames.
        self._real_clock = sleep is anyio.sleep
        self._sleep = asyncio.sleep if self._real_clock else sleep
        self.rate = AdaptiveRate(policy, clock())
        self._bucket = self.rate.bucket
        self._heap: list[_Entry] = []
        self._timekeeper: _Waiter | None = None
        self._seq = itertools.count()
        self._cold: dict[tuple[str, bool], weakref.WeakSet[object]] = {}
        self._learned: dict[str, set[asyncio.Future[bool]]] = {}  # sleepers, by model
        self._leaders: dict[str, tuple[weakref.ref[object], float]] = {}
        self.result_polls = True  # cleared if /result refuses to answer an unfinished job

    @property
    def waiting(self) -> int:
        """How many due requests are waiting for the budget."""
        return sum(1 for _, _, w in self._heap if not w.gone)

    # --- what the answers teach --------------------------------------------------------

    def answered(self) -> None:
        """A budgeted request was answered (anything but 429): the rate may grow."""
        now = self.clock()
        self.rate.answered(now, binding=bool(self._heap) or self._bucket.tokens < 1.0)

    def refused(self, sent: float, retry_after: float | None) -> None:
        """A budgeted request sent at ``sent`` was answered 429 (with ``Retry-After``)."""
        self.rate.refused(sent, self.clock())
        if retry_after is not None:
            self.backpressure.pause(min(max(retry_after, 0.0), self.policy.max_retry_after))

    # --- cold peers and learning wake-ups ------------------------------------------------

    def learning_model(self, model_id: str | None, state: JobState | None) -> str | None:
        """The model whose first run time (for a running job) or drain rate (for a queued
        one) would re-plan a job in ``state``, if any."""
        if not self.policy.learn:
            return None
        if state in _RUNNING and self.run_times.estimate(model_id) is None:
            return model_id
        if state is JobState.IN_QUEUE and self.run_times.drain(model_id) is None:
            return model_id
        return None

    def cold_peers(self, model_id: str | None, watcher: object, state: JobState | None) -> int:
        """Count ``watcher`` among the model's running jobs with no run time learned (or
        its queued ones with no drain rate), or not, by ``state``; return how many."""
        cold = self.learning_model(model_id, state) is not None
        if model_id is None:
            return 1
        key = (model_id, state is JobState.IN_QUEUE)
        peers = self._cold.get(key)
        if not cold:
            if peers is not None:
                peers.discard(watcher)
            return 1
        if peers is None:
            peers = self._cold[key] = weakref.WeakSet()
        peers.add(watcher)
        return len(peers)

    def cold_leader(self, model_id: str | None, watcher: object, start: float) -> bool:
        """Whether ``watcher`` leads its model's running jobs with no run time learned:
        the earliest started (``start``) of them, whose finish is likely the batch's first."""
        if model_id is None:
            return False
        peers = self._cold.get((model_id, False))
        if peers is None or watcher not in peers:
            return False
        held = self._leaders.get(model_id)
        if held is not None:
            other = held[0]()
            if other is watcher:
                return True
            if other is not None and other in peers and held[1] <= start:
                return False
        self._leaders[model_id] = (weakref.ref(watcher), start)
        return True

    def record_run(self, model_id: str, shortest: float, longest: float) -> None:
        """Learn a run time, and wake the model's unlearned jobs to re-plan with it."""
        if not self.policy.learn:
            return
        self.run_times.record_run(model_id, shortest, longest)
        self._wake_learners(model_id)

    def record_drain(self, model_id: str, seconds_per_position: float, positions: int = 1) -> None:
        """Learn a queue drain; the model's first wakes its queued jobs to re-plan."""
        if not self.policy.learn:
            return
        first = self.run_times.drain(model_id) is None
        self.run_times.record_drain(model_id, seconds_per_position, positions)
        if first:
            self._wake_learners(model_id)

    def _wake_learners(self, model_id: str) -> None:
        """The model learned: its sleeping jobs wake to re-plan (their sleeps return False)."""
        for sleeper in self._learned.pop(model_id, ()):
            _resolve(sleeper, False)

    def sleep_until(self, at: float, model_id: str | None = None) -> Awaitable[bool]:
        """Sleep until ``at``; with a model, return False early when it learns a run time.

        Not a coroutine itself: a job of a learned model sleeps in one ``asyncio.sleep``
        with no frame of this method around it (a big batch holds thousands of them).
        """
        if self._tick:
            at = math.ceil(at / self._tick) * self._tick
        delay = at - self.clock()
        if delay <= 0:
            return _NOW
        if model_id is None:
            return asyncio.sleep(delay, True) if self._real_clock else self._slept(delay)
        return self._sleep_or_learn(delay, model_id)

    async def _slept(self, delay: float) -> bool:
        await self._sleep(delay)
        return True

    async def _sleep_or_learn(self, delay: float, model_id: str) -> bool:
        # One future, resolved by a timer (True) or by the model's learning (False): an
        # anyio cancel scope here cost a cancellation's delivery on every sleep.
        woken: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        sleepers = self._learned.setdefault(model_id, set())
        sleepers.add(woken)
        try:
            if self._real_clock:
                timer = asyncio.get_running_loop().call_later(delay, _resolve, woken, True)
                try:
                    return await woken
                finally:
                    timer.cancel()
            async with anyio.create_task_group() as tg:

                async def sleeper() -> None:
                    await self._sleep(delay)
                    _resolve(woken, True)

                tg.start_soon(sleeper)
                slept = await woken
                tg.cancel_scope.cancel()
            return slept
        finally:
            sleepers.discard(woken)

    # --- the line ----------------------------------------------------------------------

    async def turn(self, at: float, *, key: float | None = None) -> None:
        """Sleep until ``at``, then until the budget allows one request.

        Args:
            at: When the request is due, on :attr:`clock`.
            key: Its priority among due requests: smaller goes first (default ``at``).
        """
        await self.sleep_until(at)
        await self.acquire(at if key is None else min(key, at + _AGING), poll=True)

    def done(self) -> None:
        """A poll granted by :meth:`turn` was answered, failed or given up."""
        self.polls_in_flight -= 1
        if self._heap:
            self._dispatch()

    def _paused(self) -> float:
        return self.backpressure.remaining

    def _top(self) -> _Waiter | None:
        heap = self._heap
        while heap and heap[0][2].gone:
            heapq.heappop(heap)
        return heap[0][2] if heap else None

    def _dispatch(self) -> None:
        top = self._top()
        if top is not None and self._paused() <= 0:
            now, heap = self.clock(), self._heap
            while not (top.gated and self.polls_in_flight >= self._max_polls):
                if not self._bucket.take(now):
                    break
                heapq.heappop(heap)
                top.granted = True
                if top.gated:
                    self.polls_in_flight += 1
                top.wake()
                if (top := self._top()) is None:
                    return
        if top is not None and self._timekeeper is None:
            top.wake()  # to keep time for the line

    def _gated(self, waiter: _Waiter) -> bool:
        """Whether ``waiter`` is a poll held back by the polls in flight."""
        return waiter.gated and self.polls_in_flight >= self._max_polls

    async def acquire(self, key: float | None = None, *, poll: bool = False) -> None:
        """Wait until the budget allows one request now (``key``: smaller goes first).

        ``poll``: a status or result poll, bounded by ``max_polls_in_flight`` too; the
        caller reports its end with :meth:`done`.
        """
        if key is None:
            key = self.clock()
        free = not poll or self.polls_in_flight < self._max_polls
        if free and self._top() is None and self._paused() <= 0 and self._bucket.take(self.clock()):
            if poll:
                self.polls_in_flight += 1
            return
        waiter = _Waiter(poll)
        heapq.heappush(self._heap, (key, next(self._seq), waiter))
        try:
            while True:
                self._dispatch()
                if waiter.granted:
                    return
                top = self._top()
                if self._timekeeper is None and not (top is not None and self._gated(top)):
                    self._timekeeper = waiter
                    try:
                        await self._sleep(max(self._paused(), self._bucket.wait_time(self.clock())))
                    finally:
                        self._timekeeper = None
                else:
                    await waiter.sleep()
        except BaseException:
            # Cancelled while waiting: leave the line, and hand back a token that was
            # granted but never used, so the budget is not spent on nothing.
            if waiter.granted:
                self._bucket.refund()
                if poll:
                    self.polls_in_flight -= 1
            waiter.gone = True
            raise
        finally:
            self._dispatch()
